"""The `auth` settings section, the loopback rule of mode `none`, and the scope policy overrides."""

from __future__ import annotations

from typing import Any

import pytest

from homa_server.app import start
from homa_server.auth.authenticator import build_authenticator
from homa_server.auth.policy import ScopePolicy
from homa_server.settings import ServerSettings, SettingsError, is_loopback_host, load_settings
from tests.conftest import make_settings
from tests.unit.auth import HMAC_SECRET


def _load(**overrides: Any) -> Any:
    return load_settings(overrides=overrides, environ={})


def test_defaults_are_mode_none_on_loopback() -> None:
    settings = _load()
    assert settings.auth.mode == ["none"]
    assert settings.server.host == "127.0.0.1"
    assert settings.auth.allow_insecure_none_on == "loopback"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_mode_none_is_accepted_on_loopback(host: str) -> None:
    assert is_loopback_host(host)
    assert _load(**{"server.host": host}).server.host == host


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com", "", "::ffff:10.0.0.1"]
)
def test_mode_none_is_refused_on_other_addresses(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(SettingsError, match="loopback"):
        _load(**{"server.host": host})
    with pytest.raises(SettingsError, match="loopback"):
        _load(
            **{
                "server.host": host,
                "auth.mode": ["none", "jwt"],
                "auth.jwt.issuer": "https://i.test",
                "auth.jwt.algorithms": ["HS256"],
                "auth.jwt.shared_secret": HMAC_SECRET.decode(),
            }
        )


def test_jwt_mode_may_bind_any_address() -> None:
    settings = _load(
        **{
            "server.host": "0.0.0.0",
            "auth.mode": "jwt",
            "auth.jwt.issuer": "https://i.test",
            "auth.jwt.algorithms": ["HS256"],
            "auth.jwt.shared_secret": HMAC_SECRET.decode(),
        }
    )
    assert settings.auth.mode == ["jwt"]
    assert HMAC_SECRET.decode() not in repr(settings)


async def test_start_refuses_mode_none_on_a_public_address_even_without_validation() -> None:
    settings = make_settings()
    public = settings.model_copy(update={"server": ServerSettings(host="0.0.0.0", port=0)})
    with pytest.raises(SettingsError, match="loopback"):
        await start(public)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"auth.mode": "basic"}, "mode"),
        (
            {"auth.mode": ["jwt", "jwt"], "auth.jwt.issuer": "x", "auth.jwt.jwks_url": "https://k.test"},
            "twice",
        ),
        ({"auth.mode": "jwt"}, "issuer"),
        ({"auth.mode": "jwt", "auth.jwt.issuer": "x", "auth.jwt.algorithms": ["HS256"]}, "shared_secret"),
        ({"auth.mode": "jwt", "auth.jwt.issuer": "x"}, "public_keys"),
        ({"auth.mode": "jwt", "auth.jwt.issuer": "x", "auth.jwt.algorithms": ["none"]}, "algorithms"),
        (
            {"auth.mode": "jwt", "auth.jwt.issuer": "x", "auth.jwt.jwks_url": "http://keys.example/jwks"},
            "https",
        ),
        ({"auth.mode": "oauth2"}, "issuer"),
        ({"auth.mode": "oauth2", "auth.oauth2.introspection_url": "https://a.test/i"}, "client_id"),
        ({"auth.jwt.clock_skew_s": 1000}, "clock_skew_s"),
        ({"auth.unknown": 1}, "auth.unknown"),
    ],
)
def test_invalid_auth_settings_are_refused(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        _load(**overrides)


def test_mode_accepts_a_comma_separated_string() -> None:
    settings = _load(
        **{
            "auth.mode": "jwt, oauth2",
            "auth.jwt.issuer": "https://i.test",
            "auth.jwt.jwks_url": "https://i.test/jwks",
            "auth.oauth2.introspection_url": "https://a.test/introspect",
            "auth.oauth2.client_id": "homa",
            "auth.oauth2.client_secret": "s",
        }
    )
    assert settings.auth.mode == ["jwt", "oauth2"]


def test_scope_overrides_per_method_and_service() -> None:
    policy = ScopePolicy({"ChatService": "chat:all", "ChatService/CountTokens": "chat:count"})
    assert policy.required_scope("/homa.chat.v1.ChatService/Complete") == "chat:all"
    assert policy.required_scope("/homa.chat.v1.ChatService/CountTokens") == "chat:count"
    assert policy.required_scope("/homa.admin.v1.AdminService/ListModels") == "admin:read"
    assert policy.is_open("/grpc.health.v1.Health/Check")
    assert policy.is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not policy.is_open("/homa.chat.v1.ChatService/Complete")
    for bad in ({"NoService": "x:y"}, {"ChatService/Nope": "x:y"}, {"ChatService": "two words"}):
        with pytest.raises(ValueError):
            ScopePolicy(bad)


async def test_unknown_scope_override_stops_start_up() -> None:
    settings = _load(**{"auth.scopes": {"ChatService/Nope": "chat:write"}})
    with pytest.raises(ValueError, match="unknown"):
        await build_authenticator(settings.auth)
