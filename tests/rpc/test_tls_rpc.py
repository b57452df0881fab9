"""Server TLS and client-certificate identity (mode `mtls`), through a real in-process server.

A throwaway CA, server and client certificates are generated per test (tests/tls_pki.py); the
server listens on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.admin.v1 import admin_service_pb2_grpc as admin_grpc
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.app import Gateway, start, stop
from homa_server.auth.principal import Principal
from homa_server.observability.call_state import current_call
from homa_server.rpc.server import BuiltServer
from homa_server.settings import Settings, SettingsError
from tests.conftest import make_settings, status_details
from tests.rpc.test_auth_rpc import hs_token
from tests.tls_pki import Authority, Issued
from tests.unit.auth import AUDIENCE, HMAC_SECRET, ISSUER

IDENTITIES = {
    "svc-chat.example": {"tenant": "acme", "scopes": ["chat:write"]},
    "svc-admin": {"tenant": "ops", "scopes": ["admin:read", "chat:write"]},
}

JWT = {
    "auth.jwt.issuer": ISSUER,
    "auth.jwt.audiences": [AUDIENCE],
    "auth.jwt.algorithms": ["HS256"],
    "auth.jwt.shared_secret": HMAC_SECRET.decode(),
}


@dataclass
class Pki:
    ca: Authority
    server: Issued
    chat_client: Issued  # SAN svc-chat.example (mapped), CN other-cn
    admin_client: Issued  # no SAN, CN svc-admin (mapped)
    unmapped_client: Issued  # SAN and CN unknown
    foreign_ca: Authority
    foreign_client: Issued  # CN svc-admin, issued by another CA


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = Authority(tmp_path / "ca")
    foreign = Authority(tmp_path / "foreign", name="Someone Else's CA")
    return Pki(
        ca=ca,
        server=ca.server_cert(),
        chat_client=ca.issue("chat", "other-cn", dns=("svc-chat.example",)),
        admin_client=ca.issue("admin", "svc-admin"),
        unmapped_client=ca.issue("stranger", "stranger", dns=("stranger.example",)),
        foreign_ca=foreign,
        foreign_client=foreign.issue("foreign", "svc-admin"),
    )


def tls_overrides(pki: Pki, client_auth: str = "require") -> dict[str, Any]:
    return {
        "server.tls": {
            "cert_file": str(pki.server.cert_file),
            "key_file": str(pki.server.key_file),
            "client_ca_file": str(pki.ca.cert_file),
            "client_auth": client_auth,
        }
    }


def mtls_settings(pki: Pki, **extra: Any) -> Settings:
    return make_settings(
        **tls_overrides(pki), **{"auth.mode": "mtls", "auth.mtls.identities": IDENTITIES, **extra}
    )


@dataclass
class TlsServer:
    gateway: Gateway
    built: BuiltServer
    pki: Pki

    def channel(self, client: Issued | None = None, *, roots: bytes | None = None) -> aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=roots or self.pki.ca.cert_pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )
        return aio.secure_channel(f"127.0.0.1:{self.built.port}", credentials)


@pytest.fixture
async def serve_tls(pki: Pki) -> AsyncIterator[Any]:
    started: list[TlsServer] = []

    async def serve(settings: Settings) -> TlsServer:
        gateway, built = await start(settings)
        server = TlsServer(gateway, built, pki)
        started.append(server)
        return server

    try:
        yield serve
    finally:
        for server in started:
            await stop(server.gateway, server.built, 0)


def _chat() -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="mock/echo")
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text="hello over mTLS")
    return request


def _reason(error: aio.AioRpcError) -> str:
    return str(status_details(error)["ErrorInfo"].reason)


async def test_mapped_client_certificate_reaches_chat_with_its_principal(
    pki: Pki, serve_tls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    seen: list[Principal | None] = []
    dispatcher = server.gateway.dispatcher
    original = dispatcher.complete

    async def spy(*args: Any, **kwargs: Any) -> Any:
        state = current_call.get(None)
        seen.append(state.principal if state is not None else None)
        return await original(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "complete", spy)
    async with server.channel(pki.chat_client) as channel:
        answer = await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
        assert answer.route.model
        with pytest.raises(aio.AioRpcError) as info:
            await admin_grpc.AdminServiceStub(channel).ListModels(admin_pb2.ListModelsRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _reason(info.value) == "PERMISSION_DENIED"
    assert len(seen) == 1
    assert seen[0] is not None
    principal = seen[0]
    assert (principal.subject, principal.tenant, principal.method) == ("svc-chat.example", "acme", "mtls")
    assert principal.scopes == frozenset({"chat:write"})


async def test_common_name_identity_with_admin_scope(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(pki.admin_client) as channel:
        answer = await admin_grpc.AdminServiceStub(channel).ListModels(
            admin_pb2.ListModelsRequest(), timeout=10
        )
        assert len(answer.models) > 0


async def test_unmapped_subject_is_invalid_credentials(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(pki.unmapped_client) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _reason(info.value) == "INVALID_CREDENTIALS"
    assert info.value.details() == "invalid credentials"


async def test_client_without_certificate_fails_the_handshake(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(None) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_fails_the_handshake(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(pki.foreign_client) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_that_does_not_trust_the_server_fails(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(pki.admin_client, roots=pki.foreign_ca.cert_pem) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_cannot_talk_to_a_tls_server(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with aio.insecure_channel(f"127.0.0.1:{server.built.port}") as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_server_tls_without_client_auth_and_jwt_bearer(pki: Pki, serve_tls: Any) -> None:
    tls = {"server.tls": {"cert_file": str(pki.server.cert_file), "key_file": str(pki.server.key_file)}}
    settings = make_settings(**tls, **JWT, **{"auth.mode": "jwt"})
    server: TlsServer = await serve_tls(settings)
    async with server.channel(None) as channel:
        stub = chat_grpc.ChatServiceStub(channel)
        answer = await stub.Complete(
            _chat(), metadata=(("authorization", f"Bearer {hs_token('chat:write')}"),), timeout=10
        )
        assert answer.route.model
        with pytest.raises(aio.AioRpcError) as info:
            await stub.Complete(_chat(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _reason(info.value) == "CREDENTIALS_REQUIRED"


async def test_mtls_combined_with_jwt_prefers_the_bearer_token(pki: Pki, serve_tls: Any) -> None:
    settings = mtls_settings(pki, **JWT, **{"auth.mode": ["mtls", "jwt"]})
    server: TlsServer = await serve_tls(settings)
    async with server.channel(pki.chat_client) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        # The certificate alone (svc-chat.example) lacks admin:read...
        with pytest.raises(aio.AioRpcError) as info:
            await admin.ListModels(admin_pb2.ListModelsRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # ...a token carrying it is used instead of the certificate,
        token = hs_token("admin:read")
        await admin.ListModels(
            admin_pb2.ListModelsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )
        # and a bad token is rejected, never replaced by the certificate.
        with pytest.raises(aio.AioRpcError) as info:
            await chat_grpc.ChatServiceStub(channel).Complete(
                _chat(), metadata=(("authorization", "Bearer not-a-token"),), timeout=10
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _reason(info.value) == "INVALID_CREDENTIALS"
        await chat_grpc.ChatServiceStub(channel).Complete(_chat(), timeout=10)


async def test_health_is_open_over_mtls(pki: Pki, serve_tls: Any) -> None:
    server: TlsServer = await serve_tls(mtls_settings(pki))
    async with server.channel(pki.unmapped_client) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_bad_certificate_paths_stop_the_start(pki: Pki, tmp_path: Path) -> None:
    settings = make_settings(**tls_overrides(pki))
    tls = settings.server.tls
    assert tls is not None
    broken = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"tls": tls.model_copy(update={"cert_file": tmp_path / "gone.pem"})}
            )
        }
    )
    with pytest.raises(SettingsError, match="cert_file"):
        await start(broken)
    with pytest.raises(SettingsError, match="file not found"):
        make_settings(**{"server.tls": {"cert_file": str(tmp_path / "no.pem"), "key_file": "no.key"}})
