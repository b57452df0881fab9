"""`AsyncHomaClient` (grpc.aio) and `HomaClient` (blocking): typed access to a Homa gateway.

    async with AsyncHomaClient("localhost:50051", api_key=key) as client:
        response = await client.chat.complete(ChatRequestBuilder("mock/echo").user("hi"))
        print(text_of(response.message), client.last_call.request_id)

Both clients share their options:
    target: "host:port" of the gateway (any gRPC target string).
    credentials: `grpc.ChannelCredentials` for TLS (e.g. `grpc.ssl_channel_credentials()`); None
        means a plaintext channel.
    api_key: sent on every call as `authorization: Bearer <key>` metadata.
    token_provider: instead of `api_key`, a `TokenProvider` such as `oauth.ClientCredentials`:
        its token is sent as `authorization: Bearer <token>`, fetched and refreshed as needed. A
        unary call answered UNAUTHENTICATED / INVALID_CREDENTIALS is retried once with a new
        token; streams are not retried.
    metadata: extra metadata sent on every call.
    timeout: default deadline in seconds for each call (None = no deadline); methods take
        `timeout=` to override it.
    options: gRPC channel options, merged over the client defaults (256 MiB message limits, user
        agent).
    channel: use this channel instead of opening one (target/credentials/options are then
        ignored, and `close()` leaves it open: its owner closes it).

`last_call` is the `CallInfo` (request id, provider, model, attempts, overhead) of the last call
finished in the current asyncio task or thread. Errors are `HomaError` subclasses.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpc
from grpc import aio

from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa_client.admin import Admin, AsyncAdmin
from homa_client.chat import AsyncChat, Chat
from homa_client.invocation import (
    DEFAULT_TARGET,
    CallSettings,
    ChannelOptions,
    MetadataInput,
    channel_options,
)
from homa_client.oauth import TokenProvider
from homa_client.results import CallInfo


class AsyncHomaClient:
    """Async client of a Homa gateway; see the module docstring for the options.

    The channel is opened on the first call (or `channel` access) and is bound to the event loop
    running then, so the client may be created anywhere but must be used from one event loop.
    Use it as an async context manager, or call `close()` when done.

    Attributes:
        chat: ChatService calls (`AsyncChat`).
        admin: AdminService catalogue calls (`AsyncAdmin`).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        metadata: MetadataInput | None = None,
        timeout: float | None = None,
        options: ChannelOptions | None = None,
        channel: aio.Channel | None = None,
    ) -> None:
        self.target = target
        self._settings = CallSettings(
            api_key=api_key, metadata=metadata, timeout=timeout, token_provider=token_provider
        )
        self._credentials = credentials
        self._options = channel_options(options)
        self._owns_channel = channel is None
        self._channel = channel
        self._chat_stub: chat_grpc.ChatServiceAsyncStub | None = None
        self._admin_stub: admin_grpc.AdminServiceAsyncStub | None = None
        self.chat = AsyncChat(self._chat, self._settings)
        self.admin = AsyncAdmin(self._admin, self._settings)

    @property
    def channel(self) -> aio.Channel:
        """The underlying channel (for other stubs, e.g. health checks); opened on first access."""
        if self._channel is None:
            if self._credentials is None:
                self._channel = aio.insecure_channel(self.target, options=self._options)
            else:
                self._channel = aio.secure_channel(self.target, self._credentials, options=self._options)
        return self._channel

    def _chat(self) -> chat_grpc.ChatServiceAsyncStub:
        if self._chat_stub is None:
            self._chat_stub = chat_grpc.ChatServiceStub(self.channel)
        return self._chat_stub

    def _admin(self) -> admin_grpc.AdminServiceAsyncStub:
        if self._admin_stub is None:
            self._admin_stub = admin_grpc.AdminServiceStub(self.channel)
        return self._admin_stub

    @property
    def last_call(self) -> CallInfo | None:
        """`CallInfo` of the last call finished in the current task, or None."""
        return self._settings.last_call

    async def close(self, grace: float | None = None) -> None:
        """Close the channel (when this client opened it); calls in flight are cancelled after `grace`.

        The client can be used again afterwards: a new channel is opened on the next call.
        """
        if self._owns_channel and self._channel is not None:
            channel, self._channel = self._channel, None
            self._chat_stub = self._admin_stub = None
            await channel.close(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class HomaClient:
    """Blocking client of a Homa gateway, with the same methods as `AsyncHomaClient`.

    Safe to share between threads. Use it as a context manager, or call `close()` when done.

    Attributes:
        chat: ChatService calls (`Chat`); `chat.stream()` returns a plain iterator.
        admin: AdminService catalogue calls (`Admin`).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        metadata: MetadataInput | None = None,
        timeout: float | None = None,
        options: ChannelOptions | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target
        self._settings = CallSettings(
            api_key=api_key, metadata=metadata, timeout=timeout, token_provider=token_provider
        )
        self._owns_channel = channel is None
        if channel is None:
            merged = channel_options(options)
            if credentials is None:
                channel = grpc.insecure_channel(target, options=merged)
            else:
                channel = grpc.secure_channel(target, credentials, options=merged)
        self._channel = channel
        self.chat = Chat(chat_grpc.ChatServiceStub(channel), self._settings)
        self.admin = Admin(admin_grpc.AdminServiceStub(channel), self._settings)

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel (for other stubs, e.g. health checks)."""
        return self._channel

    @property
    def last_call(self) -> CallInfo | None:
        """`CallInfo` of the last call finished in the current thread, or None."""
        return self._settings.last_call

    def close(self) -> None:
        """Close the channel (when this client opened it); calls in flight are cancelled."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
