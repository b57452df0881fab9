"""Per-client call plumbing shared by the async and sync clients.

Every call gets a request id: the caller's `request_id=` or a fresh random one. It is sent as
`x-request-id` (the gateway adopts it and echoes it as `homa-request-id`), so the id is known even
when the gateway is never reached. After each call, successful or not, its `CallInfo` becomes the
client's `last_call` *in the current context*: a ContextVar, so concurrent asyncio tasks and
threads sharing one client each see their own last call.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from homa_client._version import __version__
from homa_client.errors import rpc_error_metadata
from homa_client.results import CallInfo

if TYPE_CHECKING:
    from homa_client.oauth import TokenProvider

DEFAULT_TARGET = "localhost:50051"
REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"

_MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # the largest message size a gateway may be configured for

MetadataInput = Mapping[str, str] | Sequence[tuple[str, str]]
ChannelOptions = Sequence[tuple[str, Any]]


def new_request_id() -> str:
    """A random 128-bit request id as 32 hex characters (the gateway's own format)."""
    return uuid.uuid4().hex


def channel_options(options: ChannelOptions | None) -> list[tuple[str, Any]]:
    """Default channel options (message size limits, user agent), overridden key by key by `options`."""
    merged: dict[str, Any] = {
        "grpc.max_receive_message_length": _MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": _MAX_MESSAGE_BYTES,
        "grpc.primary_user_agent": f"homa-client-python/{__version__}",
    }
    merged.update(dict(options or ()))
    return list(merged.items())


def _pairs(metadata: MetadataInput | None) -> list[tuple[str, str]]:
    items: Iterable[tuple[str, str]] = metadata.items() if isinstance(metadata, Mapping) else metadata or ()
    # gRPC metadata keys are lower case; normalise rather than fail inside the transport.
    return [(key.lower(), value) for key, value in items]


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call options every client method takes as keywords.

    Attributes:
        timeout: deadline in seconds (None = the client's default).
        request_id: id sent as `x-request-id` (None = a fresh random id).
        metadata: extra gRPC metadata for this call.
    """

    timeout: float | None = None
    request_id: str | None = None
    metadata: MetadataInput | None = None


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """What one call is sent with."""

    request_id: str
    timeout: float | None
    metadata: tuple[tuple[str, str], ...]
    token: str | None = None  # the provider's bearer token sent with the call, if any

    def with_token(self, token: str) -> PreparedCall:
        """This call with `authorization: Bearer <token>` added."""
        return PreparedCall(
            self.request_id, self.timeout, (*self.metadata, (AUTHORIZATION_HEADER, f"Bearer {token}")), token
        )


class CallSettings:
    """Metadata, deadlines and last-call bookkeeping of one client.

    With a `token_provider`, `prepare` leaves the authorization out: the async client adds it with
    `prepare_async` (or `authorize_async` for streams), the blocking one with `prepare_sync`.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        metadata: MetadataInput | None,
        timeout: float | None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no deadline)")
        if api_key and token_provider is not None:
            raise ValueError("api_key and token_provider are mutually exclusive")
        self._base = _pairs(metadata)
        if api_key:
            self._base.append((AUTHORIZATION_HEADER, f"Bearer {api_key}"))
        self.token_provider = token_provider
        self.default_timeout = timeout
        self._last_call: ContextVar[CallInfo | None] = ContextVar(f"homa_last_call_{id(self)}", default=None)

    def prepare(self, options: CallOptions) -> PreparedCall:
        """Request id, deadline and metadata (client metadata, credentials, per-call extras, id) of a call."""
        request_id = options.request_id or new_request_id()
        timeout = options.timeout if options.timeout is not None else self.default_timeout
        metadata = (*self._base, *_pairs(options.metadata), (REQUEST_ID_HEADER, request_id))
        return PreparedCall(request_id, timeout, metadata)

    def prepare_sync(self, options: CallOptions) -> PreparedCall:
        """`prepare`, plus the provider's token (fetched blocking when needed)."""
        prepared = self.prepare(options)
        if self.token_provider is None:
            return prepared
        return prepared.with_token(self.token_provider.token_sync())

    async def prepare_async(self, options: CallOptions) -> PreparedCall:
        """`prepare`, plus the provider's token (fetched when needed)."""
        return await self.authorize_async(self.prepare(options))

    async def authorize_async(self, prepared: PreparedCall) -> PreparedCall:
        """`prepared` with the provider's token added (unchanged without a provider)."""
        if self.token_provider is None:
            return prepared
        return prepared.with_token(await self.token_provider.token())

    def record(self, info: CallInfo) -> CallInfo:
        """Remember `info` as the current context's last call."""
        self._last_call.set(info)
        return info

    @property
    def last_call(self) -> CallInfo | None:
        """The last finished call of the current context (task or thread), or None."""
        return self._last_call.get()

    def record_error(self, exc: grpc.RpcError, request_id: str) -> CallInfo:
        """Record the metadata of a failed call."""
        return self.record(
            CallInfo.from_metadata(
                request_id,
                exc.code(),
                rpc_error_metadata(exc, "initial_metadata"),
                rpc_error_metadata(exc, "trailing_metadata"),
            )
        )


class DeferredCall:
    """A grpc.aio streaming call opened on first use, so a token can be awaited before it starts.

    The async client's `stream()` and `converse()` are not coroutines; with a `token_provider`
    they return at once and the RPC starts at the first read or write, after the token is ready.
    Only the call methods the stream wrappers use are provided.
    """

    def __init__(self, open_call: Callable[[], Awaitable[Any]]) -> None:
        self._open = open_call
        self._call: Any = None
        self._cancelled = False

    async def _get(self) -> Any:
        if self._call is None:
            if self._cancelled:
                raise RuntimeError("the call was cancelled before it started")
            self._call = await self._open()
        return self._call

    async def read(self) -> Any:
        return await (await self._get()).read()

    async def write(self, request: Any) -> None:
        await (await self._get()).write(request)

    async def done_writing(self) -> None:
        await (await self._get()).done_writing()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await (await self._get()).code()
        return code

    async def initial_metadata(self) -> Any:
        return await (await self._get()).initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await (await self._get()).trailing_metadata()

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._call.cancel()) if self._call is not None else True
