"""Positive cases and configuration checks of JwtValidator (tokens built by hand, not with jose)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from homa_server.auth.jwks import JwksCache
from homa_server.auth.jwt_validator import JwtConfig, JwtValidator, parse_scopes
from homa_server.errors import Code, GatewayError
from tests.unit.auth import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    claims,
    ec_key,
    es_signer,
    hs_signer,
    jwk_of,
    make_token,
    public_pem,
    rs_signer,
    rsa_key,
)

NOW = 1_900_000_000.0


def config(**overrides: Any) -> JwtConfig:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": frozenset({AUDIENCE}),
        "algorithms": frozenset({"RS256", "ES256", "HS256"}),
        "shared_secret": HMAC_SECRET,
        "public_keys": {"k1": public_pem(rsa_key()), "e1": public_pem(ec_key()).decode()},
        "clock": lambda: NOW,
    }
    options.update(overrides)
    return JwtConfig(**options)


async def test_valid_rs256_maps_claims_to_principal() -> None:
    token = make_token({"alg": "RS256", "kid": "k1"}, claims(NOW, client_id="cli-7"), rs_signer(rsa_key()))
    principal = await JwtValidator(config()).validate(token)
    assert principal.subject == "user-1"
    assert principal.tenant == "acme"
    assert principal.scopes == frozenset({"chat:write", "embeddings:write"})
    assert principal.method == "jwt"
    assert principal.client_id == "cli-7"
    assert principal.expires_at == NOW + 300
    assert principal.allowed_models is None


async def test_valid_es256_and_hs256() -> None:
    validator = JwtValidator(config())
    es = make_token({"alg": "ES256", "kid": "e1"}, claims(NOW), es_signer(ec_key()))
    hs = make_token({"alg": "HS256"}, claims(NOW), hs_signer(HMAC_SECRET))
    assert (await validator.validate(es)).subject == "user-1"
    assert (await validator.validate(hs)).subject == "user-1"


async def test_es384_and_rs512_when_allowed() -> None:
    p384 = ec_key("other", "P-384")
    validator = JwtValidator(
        config(
            algorithms=frozenset({"ES384", "RS512"}),
            shared_secret=None,
            public_keys={"p384": public_pem(p384), "k1": public_pem(rsa_key())},
        )
    )
    es = make_token({"alg": "ES384", "kid": "p384"}, claims(NOW), es_signer(p384, "384"))
    rs = make_token({"alg": "RS512", "kid": "k1"}, claims(NOW), rs_signer(rsa_key(), "512"))
    assert (await validator.validate(es)).tenant == "acme"
    assert (await validator.validate(rs)).tenant == "acme"


async def test_token_without_kid_uses_the_only_fitting_static_key() -> None:
    validator = JwtValidator(config())
    token = make_token({"alg": "RS256"}, claims(NOW), rs_signer(rsa_key()))
    assert (await validator.validate(token)).subject == "user-1"


async def test_token_without_kid_is_ambiguous_with_two_fitting_keys() -> None:
    validator = JwtValidator(
        config(public_keys={"k1": public_pem(rsa_key()), "k2": public_pem(rsa_key("second"))})
    )
    token = make_token({"alg": "RS256"}, claims(NOW), rs_signer(rsa_key()))
    with pytest.raises(GatewayError):
        await validator.validate(token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(NOW) - 29},
        {"nbf": int(NOW) + 29},
        {"iat": int(NOW) + 29},
        {"exp": NOW + 0.5, "nbf": NOW - 0.5},
    ],
)
async def test_clock_skew_is_tolerated(overrides: dict[str, Any]) -> None:
    token = make_token({"alg": "RS256", "kid": "k1"}, claims(NOW, **overrides), rs_signer(rsa_key()))
    assert (await JwtValidator(config()).validate(token)).subject == "user-1"


async def test_skew_is_configurable() -> None:
    token = make_token({"alg": "RS256", "kid": "k1"}, claims(NOW, exp=int(NOW) - 5), rs_signer(rsa_key()))
    with pytest.raises(GatewayError) as caught:
        await JwtValidator(config(leeway_s=0)).validate(token)
    assert caught.value.code == Code.UNAUTHENTICATED


async def test_audience_list_and_several_configured_audiences() -> None:
    token = make_token(
        {"alg": "RS256", "kid": "k1"}, claims(NOW, aud=["other", "homa-admin"]), rs_signer(rsa_key())
    )
    validator = JwtValidator(config(audiences=frozenset({"homa", "homa-admin"})))
    assert (await validator.validate(token)).subject == "user-1"


async def test_tenant_claim_name_default_tenant_and_method() -> None:
    token = make_token(
        {"alg": "RS256", "kid": "k1"},
        claims(NOW, tenant=None, org="globex", scope=None, scp=["a:b", "c:d"]),
        rs_signer(rsa_key()),
    )
    custom = JwtValidator(config(tenant_claim="org", method="oauth2"))
    principal = await custom.validate(token)
    assert (principal.tenant, principal.method) == ("globex", "oauth2")
    assert principal.scopes == frozenset({"a:b", "c:d"})
    defaulted = await JwtValidator(config(default_tenant="shared")).validate(token)
    assert defaulted.tenant == "shared"


async def test_valid_token_through_jwks() -> None:
    async def fetch(url: str) -> bytes:
        return json.dumps({"keys": [jwk_of(rsa_key(), "k9")]}).encode()

    validator = JwtValidator(
        config(public_keys={}, jwks=JwksCache("https://issuer.test/jwks", fetch, clock=lambda: 0.0))
    )
    token = make_token({"alg": "RS256", "kid": "k9"}, claims(NOW), rs_signer(rsa_key()))
    assert (await validator.validate(token)).subject == "user-1"


def test_parse_scopes() -> None:
    assert parse_scopes({"scope": "a  b"}) == frozenset({"a", "b"})
    assert parse_scopes({"scp": ["x"]}) == frozenset({"x"})
    assert parse_scopes({}) == frozenset()
    assert parse_scopes({"scp": "a b"}) == frozenset({"a", "b"})
    assert parse_scopes({"scope": ["x"]}) is None
    assert parse_scopes({"scope": 3}) is None
    assert parse_scopes({"scp": 3}) is None
    assert parse_scopes({"scp": ["ok", 1]}) is None
    assert parse_scopes({"scope": 'quote"d'}) is None
    assert parse_scopes({"scope": " ".join(f"s{i}" for i in range(300))}) is None


def _weak_rsa_pem() -> bytes:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem() -> bytes:
    return rsa_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": frozenset({"none"})},
        {"algorithms": frozenset({"RS256", "none"})},
        {"algorithms": frozenset({"PS256"})},
        {"algorithms": frozenset()},
        {"algorithms": frozenset({"HS256"}), "shared_secret": None},
        {"algorithms": frozenset({"HS256"}), "shared_secret": b"short"},
        {"algorithms": frozenset({"HS256"}), "shared_secret": public_pem(rsa_key())},
        {"algorithms": frozenset({"RS256"}), "public_keys": {}, "jwks": None},
        {"public_keys": {"weak": _weak_rsa_pem()}},
        {"public_keys": {"priv": _private_pem()}},
        {"public_keys": {"junk": b"not a pem"}},
        {"issuer": ""},
        {"audiences": frozenset()},
        {"leeway_s": 3600},
    ],
)
def test_unsafe_configuration_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JwtValidator(config(**overrides))
