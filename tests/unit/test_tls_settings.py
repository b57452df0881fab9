"""`server.tls` and `auth.mtls` settings, TLS credential loading, and the mtls authenticator path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homa_server.auth.authenticator import build_authenticator
from homa_server.auth.mtls import AuthContext, CertificateIdentities, certificate_names
from homa_server.errors import GatewayError
from homa_server.rpc.tls import server_credentials
from homa_server.settings import MtlsIdentity, SettingsError, TlsSettings, load_settings
from tests.tls_pki import Authority, Issued

IDENTITIES = {"svc-a.example": {"tenant": "acme", "scopes": ["chat:write"]}}


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "ca")


@pytest.fixture
def server_cert(ca: Authority) -> Issued:
    return ca.server_cert()


def _load(**overrides: Any) -> Any:
    return load_settings(overrides={"server.port": 0, **overrides}, environ={})


def _tls(ca: Authority, cert: Issued, **extra: Any) -> dict[str, Any]:
    return {
        "server.tls": {
            "cert_file": str(cert.cert_file),
            "key_file": str(cert.key_file),
            "client_ca_file": str(ca.cert_file),
            "client_auth": "require",
            **extra,
        }
    }


def test_tls_is_off_by_default() -> None:
    assert _load().server.tls is None


def test_tls_settings_load(ca: Authority, server_cert: Issued) -> None:
    settings = _load(**_tls(ca, server_cert), **{"auth.mode": "mtls", "auth.mtls.identities": IDENTITIES})
    tls = settings.server.tls
    assert tls is not None
    assert (tls.cert_file, tls.client_auth) == (server_cert.cert_file, "require")
    assert settings.auth.mtls.identities["svc-a.example"] == MtlsIdentity(
        tenant="acme", scopes=["chat:write"]
    )
    assert server_credentials(tls) is not None


def test_tls_from_environment(server_cert: Issued, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMA_SERVER__TLS__CERT_FILE", str(server_cert.cert_file))
    monkeypatch.setenv("HOMA_SERVER__TLS__KEY_FILE", str(server_cert.key_file))
    tls = _load().server.tls
    assert tls is not None
    assert tls.client_auth == "none"
    assert tls.client_ca_file is None


@pytest.mark.parametrize("field", ["cert_file", "key_file", "client_ca_file"])
def test_missing_files_are_settings_errors(ca: Authority, server_cert: Issued, field: str) -> None:
    with pytest.raises(SettingsError, match=rf"server\.tls\.{field}: .*file not found: .*missing\.pem"):
        _load(**_tls(ca, server_cert, **{field: "/nonexistent/missing.pem"}))


def test_client_auth_needs_a_ca(server_cert: Issued) -> None:
    with pytest.raises(SettingsError, match="client_ca_file is required"):
        _load(
            **{
                "server.tls": {
                    "cert_file": str(server_cert.cert_file),
                    "key_file": str(server_cert.key_file),
                    "client_auth": "require",
                }
            }
        )


def test_optional_client_auth_is_refused_with_a_reason(ca: Authority, server_cert: Issued) -> None:
    with pytest.raises(SettingsError, match="optional is not supported"):
        _load(**_tls(ca, server_cert, client_auth="optional"))


def test_unknown_client_auth_value(ca: Authority, server_cert: Issued) -> None:
    with pytest.raises(SettingsError, match="client_auth"):
        _load(**_tls(ca, server_cert, client_auth="sometimes"))


def test_mtls_mode_needs_required_client_certificates(ca: Authority, server_cert: Issued) -> None:
    with pytest.raises(SettingsError, match=r"mtls needs server\.tls"):
        _load(**{"auth.mode": "mtls", "auth.mtls.identities": IDENTITIES})
    with pytest.raises(SettingsError, match=r"mtls needs server\.tls"):
        _load(
            **_tls(ca, server_cert, client_auth="none"),
            **{"auth.mode": "mtls", "auth.mtls.identities": IDENTITIES},
        )
    with pytest.raises(SettingsError, match=r"mtls\.identities is required"):
        _load(**_tls(ca, server_cert), **{"auth.mode": "mtls"})


def test_mode_none_rules_are_unchanged_with_tls(ca: Authority, server_cert: Issued) -> None:
    with pytest.raises(SettingsError, match="loopback"):
        _load(
            **_tls(ca, server_cert),
            **{"server.host": "0.0.0.0", "auth.mode": ["none", "mtls"], "auth.mtls.identities": IDENTITIES},
        )
    settings = _load(
        **_tls(ca, server_cert),
        **{"server.host": "0.0.0.0", "auth.mode": "mtls", "auth.mtls.identities": IDENTITIES},
    )
    assert settings.auth.mode == ["mtls"]


def test_mode_list_from_a_string() -> None:
    with pytest.raises(SettingsError, match="mtls"):
        _load(**{"auth.mode": "none,mtls"})  # mtls without TLS


def _settings_tls(cert: Path, key: Path, ca: Path | None = None) -> TlsSettings:
    return TlsSettings.model_construct(
        cert_file=cert, key_file=key, client_ca_file=ca, client_auth="require" if ca else "none"
    )


def test_credentials_reject_non_pem_files(tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"server\.tls\.cert_file: no PEM certificate"):
        server_credentials(_settings_tls(junk, server_cert.key_file))
    with pytest.raises(SettingsError, match=r"server\.tls\.key_file: .* not an unencrypted PEM private key"):
        server_credentials(_settings_tls(server_cert.cert_file, junk))
    with pytest.raises(SettingsError, match=r"server\.tls\.client_ca_file: no PEM certificate"):
        server_credentials(_settings_tls(server_cert.cert_file, server_cert.key_file, junk))
    with pytest.raises(SettingsError, match=r"server\.tls\.cert_file: cannot read"):
        server_credentials(_settings_tls(tmp_path / "gone.pem", server_cert.key_file))


def test_credentials_reject_a_key_of_another_certificate(ca: Authority, server_cert: Issued) -> None:
    other = ca.issue("other", "other")
    with pytest.raises(SettingsError, match="does not match"):
        server_credentials(_settings_tls(server_cert.cert_file, other.key_file))


def test_error_messages_contain_no_key_material(tmp_path: Path, server_cert: Issued) -> None:
    other = Authority(tmp_path / "x").issue("o", "o")
    with pytest.raises(SettingsError) as info:
        server_credentials(_settings_tls(server_cert.cert_file, other.key_file))
    assert "PRIVATE KEY" not in str(info.value)


def _ctx(san: list[str] | None = None, cn: str | None = None, kind: bytes = b"ssl") -> AuthContext:
    found: dict[str, list[bytes]] = {"transport_security_type": [kind]}
    if san:
        found["x509_subject_alternative_name"] = [s.encode() for s in san]
    if cn:
        found["x509_common_name"] = [cn.encode()]
    return found


def test_certificate_names_order_and_security_type() -> None:
    assert certificate_names(_ctx(["a.example", "b.example"], "cn")) == ["a.example", "b.example", "cn"]
    assert certificate_names(_ctx(cn="cn")) == ["cn"]
    assert certificate_names(_ctx(["a"], "cn", kind=b"insecure")) == []
    assert certificate_names({}) == []
    assert certificate_names({"transport_security_type": [b"ssl"], "x509_common_name": [b"\xff"]}) == []


def test_identities_map_subjects_to_principals() -> None:
    table = CertificateIdentities(
        {
            "svc-a.example": MtlsIdentity(tenant="acme", scopes=["chat:write"]),
            "svc-b": MtlsIdentity(tenant="ops", scopes=["admin:read"]),
        }
    )
    principal = table.principal(_ctx(["unknown.example", "svc-a.example"], "svc-b"))
    assert principal is not None
    assert (principal.subject, principal.tenant, principal.method) == ("svc-a.example", "acme", "mtls")
    assert principal.scopes == frozenset({"chat:write"})
    by_cn = table.principal(_ctx(["unknown.example"], "svc-b"))
    assert by_cn is not None
    assert by_cn.subject == "svc-b"
    assert table.principal(_ctx()) is None
    with pytest.raises(GatewayError) as info:
        table.principal(_ctx(["stranger"], "stranger"))
    assert str(info.value.reason) == "INVALID_CREDENTIALS"


async def test_authenticator_uses_the_certificate_without_a_token(ca: Authority, server_cert: Issued) -> None:
    settings = _load(**_tls(ca, server_cert), **{"auth.mode": "mtls", "auth.mtls.identities": IDENTITIES})
    auth = await build_authenticator(settings.auth)
    try:
        assert not auth.open_to_all
        principal = await auth.authenticate(None, "chat:write", lambda: _ctx(["svc-a.example"]))
        assert principal.subject == "svc-a.example"
        with pytest.raises(GatewayError) as info:
            await auth.authenticate(None, "admin:read", lambda: _ctx(["svc-a.example"]))
        assert str(info.value.reason) == "PERMISSION_DENIED"
        for peer in (_ctx, None):
            with pytest.raises(GatewayError) as info:
                await auth.authenticate(None, "chat:write", peer)
            assert str(info.value.reason) == "CREDENTIALS_REQUIRED"
        with pytest.raises(GatewayError) as info:
            await auth.authenticate("Bearer x", "chat:write", lambda: _ctx(["svc-a.example"]))
        assert str(info.value.reason) == "INVALID_CREDENTIALS"
    finally:
        await auth.aclose()


async def test_mtls_with_none_admits_callers_without_a_certificate(
    ca: Authority, server_cert: Issued
) -> None:
    settings = _load(
        **_tls(ca, server_cert), **{"auth.mode": ["none", "mtls"], "auth.mtls.identities": IDENTITIES}
    )
    auth = await build_authenticator(settings.auth)
    try:
        assert not auth.open_to_all
        anonymous = await auth.authenticate(None, "admin:read", _ctx)
        assert anonymous.method == "none"
        with pytest.raises(GatewayError) as info:
            await auth.authenticate(None, "chat:write", lambda: _ctx(["stranger"]))
        assert str(info.value.reason) == "INVALID_CREDENTIALS"
    finally:
        await auth.aclose()


async def test_mode_none_never_reads_the_auth_context() -> None:
    auth = await build_authenticator(_load().auth)

    def boom() -> AuthContext:
        raise AssertionError("auth context read in mode none")

    assert auth.open_to_all
    assert (await auth.authenticate(None, "chat:write", boom)).method == "none"
