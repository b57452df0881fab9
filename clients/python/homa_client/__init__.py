"""Homa Python client: async and blocking clients, request builders and typed errors.

    from homa_client import AsyncHomaClient, ChatRequestBuilder

    async with AsyncHomaClient("localhost:50051") as client:
        result = await client.chat.collect(ChatRequestBuilder("mock/echo").user("Hello"))
        print(result.text)

See docs/client.md.
"""

from homa_client._version import __version__
from homa_client.admin import Admin, AsyncAdmin
from homa_client.builders import (
    ChatRequestBuilder,
    ImageInput,
    assistant_message,
    developer_message,
    image_part,
    system_message,
    text_part,
    tool,
    tool_call,
    tool_choice,
    tool_result,
    tool_result_message,
    user_message,
)
from homa_client.chat import AsyncChat, Chat
from homa_client.client import AsyncHomaClient, HomaClient
from homa_client.conversation import AsyncConversation, Conversation
from homa_client.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    HomaError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    QuotaViolation,
    RateLimitError,
    RequestCancelledError,
    UnauthenticatedError,
    UnavailableError,
    UnexpectedStatusError,
    UnimplementedError,
    error_from_status,
    from_rpc_error,
)
from homa_client.invocation import DEFAULT_TARGET, new_request_id
from homa_client.oauth import (
    TOKEN_ENDPOINT_ERROR,
    TOKEN_ENDPOINT_UNAVAILABLE,
    ClientCredentials,
    TokenProvider,
)
from homa_client.results import CallInfo, ChatResult, StreamAssembler, Turn, text_of, tool_calls_of
from homa_client.streams import AsyncChatStream, ChatStream

__all__ = [
    "DEFAULT_TARGET",
    "TOKEN_ENDPOINT_ERROR",
    "TOKEN_ENDPOINT_UNAVAILABLE",
    "Admin",
    "AlreadyExistsError",
    "AsyncAdmin",
    "AsyncChat",
    "AsyncChatStream",
    "AsyncConversation",
    "AsyncHomaClient",
    "CallInfo",
    "Chat",
    "ChatRequestBuilder",
    "ChatResult",
    "ChatStream",
    "ClientCredentials",
    "Conversation",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "HomaClient",
    "HomaError",
    "ImageInput",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaViolation",
    "RateLimitError",
    "RequestCancelledError",
    "StreamAssembler",
    "TokenProvider",
    "Turn",
    "UnauthenticatedError",
    "UnavailableError",
    "UnexpectedStatusError",
    "UnimplementedError",
    "__version__",
    "assistant_message",
    "developer_message",
    "error_from_status",
    "from_rpc_error",
    "image_part",
    "new_request_id",
    "system_message",
    "text_of",
    "text_part",
    "tool",
    "tool_call",
    "tool_calls_of",
    "tool_choice",
    "tool_result",
    "tool_result_message",
    "user_message",
]
