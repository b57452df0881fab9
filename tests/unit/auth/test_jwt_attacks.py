"""The JWT attack corpus: every token here must be rejected with the same generic error.

Tokens are built by hand (see tests/unit/auth/__init__.py); a canary HTTP listener on 127.0.0.1 is
named in `jku`/`x5u` headers and must never receive a connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homa_server.auth.jwks import JwksCache
from homa_server.auth.jwt_validator import JwtConfig, JwtValidator
from homa_server.auth.principal import (
    MSG_INVALID_CREDENTIALS,
    REASON_INVALID_CREDENTIALS,
    Principal,
)
from homa_server.errors import Code, GatewayError
from tests.unit.auth import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    assemble,
    b64u,
    b64u_json,
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
JWKS_URL = "https://issuer.test/jwks"


class Canary:
    """A TCP listener that records every connection it receives."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    probe = Canary()
    server = await asyncio.start_server(probe._on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe.url = f"http://127.0.0.1:{port}/keys"
    try:
        yield probe
    finally:
        server.close()
        await server.wait_closed()


class RecordingFetcher:
    """A JWKS fetcher serving the legitimate keys and recording every URL asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return json.dumps({"keys": [jwk_of(rsa_key(), "k1"), jwk_of(ec_key(), "e1")]}).encode()


def validator(fetcher: RecordingFetcher | None = None, **overrides: Any) -> JwtValidator:
    fetch = fetcher or RecordingFetcher()
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": frozenset({AUDIENCE}),
        "algorithms": frozenset({"RS256", "ES256", "HS256"}),
        "shared_secret": HMAC_SECRET,
        "jwks": JwksCache(JWKS_URL, fetch, clock=lambda: 0.0),
        "clock": lambda: NOW,
    }
    options.update(overrides)
    return JwtValidator(JwtConfig(**options))


RS = {"alg": "RS256", "kid": "k1", "typ": "JWT"}
GOOD = claims(NOW)


def good_rs(header: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    return make_token(header or RS, claims(NOW, **claim_overrides), rs_signer(rsa_key()))


def _attacker() -> Any:
    return rsa_key("attacker")


def _replace_sig(token: str, other: str) -> str:
    return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _corpus(canary_url: str) -> dict[str, str]:
    rsa_pub_pem = public_pem(rsa_key())
    attacker = _attacker()
    valid = good_rs()
    h, p, s = valid.split(".")
    big_claims = claims(NOW, padding="A" * 1_000_000)
    return {
        # algorithm attacks
        "alg none, no signature": make_token({"alg": "none", "typ": "JWT"}, GOOD, None),
        "alg none, with signature": assemble(b64u_json({"alg": "none"}), p, lambda _d: b"\x01" * 32),
        "alg None": make_token({"alg": "None"}, GOOD, None),
        "alg NONE": make_token({"alg": "NONE"}, GOOD, None),
        "alg none, real RS signature kept": _replace_sig(make_token({"alg": "none"}, GOOD, None), valid),
        "HS256 signed with RSA public PEM": make_token(
            {"alg": "HS256", "kid": "k1"}, GOOD, hs_signer(rsa_pub_pem)
        ),
        "HS256 signed with RSA JWK n": make_token(
            {"alg": "HS256"}, GOOD, hs_signer(jwk_of(rsa_key(), "k1")["n"].encode())
        ),
        "unknown alg": make_token({"alg": "XS256", "kid": "k1"}, GOOD, rs_signer(rsa_key())),
        "alg not in allow-list (RS512)": make_token(
            {"alg": "RS512", "kid": "k1"}, GOOD, rs_signer(rsa_key(), "512")
        ),
        "alg PS256": make_token({"alg": "PS256", "kid": "k1"}, GOOD, rs_signer(rsa_key())),
        "alg as list": make_token({"alg": ["RS256"], "kid": "k1"}, GOOD, rs_signer(rsa_key())),
        "alg missing": make_token({"kid": "k1"}, GOOD, rs_signer(rsa_key())),
        "RS256 with wrong key": make_token(RS, GOOD, rs_signer(attacker)),
        "ES256 with wrong key": make_token(
            {"alg": "ES256", "kid": "e1"}, GOOD, es_signer(ec_key("attacker"))
        ),
        "ES256 DER signature": make_token({"alg": "ES256", "kid": "e1"}, GOOD, es_signer(ec_key(), der=True)),
        "ES256 token against RSA kid": make_token({"alg": "ES256", "kid": "k1"}, GOOD, es_signer(ec_key())),
        "RS256 token against EC kid": make_token({"alg": "RS256", "kid": "e1"}, GOOD, rs_signer(rsa_key())),
        "tampered payload": f"{h}.{b64u_json(claims(NOW, sub='admin'))}.{s}",
        "signature from another token": _replace_sig(good_rs(sub="other"), valid),
        "empty signature": f"{h}.{p}.",
        # claim attacks
        "missing exp": good_rs(exp=None),
        "expired beyond skew": good_rs(exp=int(NOW) - 31),
        "exp as string": good_rs(exp=str(int(NOW) + 300)),
        "exp as boolean": good_rs(exp=True),
        "future nbf beyond skew": good_rs(nbf=int(NOW) + 31),
        "nbf as string": good_rs(nbf="0"),
        "future iat beyond skew": good_rs(iat=int(NOW) + 3600),
        "wrong iss": good_rs(iss="https://evil.test"),
        "missing iss": good_rs(iss=None),
        "iss with trailing slash": good_rs(iss=ISSUER + "/"),
        "wrong aud": good_rs(aud="other"),
        "missing aud": good_rs(aud=None),
        "aud list without ours": good_rs(aud=["a", "b"]),
        "aud list of non-strings": good_rs(aud=[1, {"homa": True}]),
        "missing sub": good_rs(sub=None),
        "sub not a string": good_rs(sub=42),
        "sub with control characters": good_rs(sub="a\nb"),
        "tenant not a string": good_rs(tenant=["acme"]),
        "missing tenant and no default": good_rs(tenant=None),
        "scope not a string or list": good_rs(scope={"admin": True}),
        # kid attacks
        "kid path traversal": good_rs({"alg": "RS256", "kid": "../../etc/passwd"}),
        "kid SQL injection": good_rs({"alg": "RS256", "kid": "x' OR '1'='1"}),
        "kid NUL byte": good_rs({"alg": "RS256", "kid": "k1\x00"}),
        "kid not a string": good_rs({"alg": "RS256", "kid": 1}),
        "kid empty": good_rs({"alg": "RS256", "kid": ""}),
        "kid huge": good_rs({"alg": "RS256", "kid": "k" * 5000}),
        # key-pointing / key-embedding headers
        "jku to canary": make_token(
            {"alg": "RS256", "kid": "a1", "jku": canary_url}, GOOD, rs_signer(attacker)
        ),
        "x5u to canary": make_token(
            {"alg": "RS256", "kid": "a1", "x5u": canary_url}, GOOD, rs_signer(attacker)
        ),
        "jku to canary, legit kid": good_rs({"alg": "RS256", "kid": "k1", "jku": canary_url}),
        "embedded jwk of attacker": make_token(
            {"alg": "RS256", "jwk": jwk_of(attacker, None)}, GOOD, rs_signer(attacker)
        ),
        "embedded x5c": make_token({"alg": "RS256", "kid": "k1", "x5c": ["MIIB"]}, GOOD, rs_signer(attacker)),
        "crit header": good_rs({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}),
        # size and shape
        "oversized 1 MB token": make_token(RS, big_claims, rs_signer(rsa_key())),
        "just over 8 KiB": good_rs(padding="A" * 8200),
        "empty": "",
        "single dot": ".",
        "two dots": "..",
        "two segments": f"{h}.{p}",
        "four segments": f"{h}.{p}.{s}.{s}",
        "duplicated header segment": f"{h}.{h}.{p}.{s}",
        "duplicated payload segment": f"{h}.{p}.{p}",
        "truncated": valid[:-5],
        "truncated in header": valid[:10],
        "base64 padding": f"{h}=.{p}.{s}",
        "standard base64 alphabet": f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}+/",
        "whitespace": f"{h}. {p}.{s}",
        "non-ascii": f"{h}.{p}.{s}é",
        "JWE-like five segments": f"{h}.{p}.{s}.{s}.{s}",
        "header is a JSON array": assemble(b64u(b'["RS256"]'), p, rs_signer(rsa_key())),
        "header not JSON": assemble(b64u(b"{alg:RS256}"), p, rs_signer(rsa_key())),
        "payload not JSON": assemble(h, b64u(b"not json"), rs_signer(rsa_key())),
        "payload is a JSON string": assemble(h, b64u(b'"sub"'), rs_signer(rsa_key())),
        "payload with NaN": assemble(h, b64u(b'{"exp": NaN}'), rs_signer(rsa_key())),
        "duplicate alg in header, none first": assemble(
            b64u(b'{"alg":"none","kid":"k1","alg":"RS256"}'), p, rs_signer(rsa_key())
        ),
        "duplicate alg in header, none last": assemble(
            b64u(b'{"alg":"RS256","kid":"k1","alg":"none"}'), p, rs_signer(rsa_key())
        ),
        "duplicate sub in payload": assemble(
            h, b64u(json.dumps(GOOD)[:-1].encode() + b', "sub": "admin"}'), rs_signer(rsa_key())
        ),
        "deeply nested payload": assemble(h, b64u(b"[" * 3000 + b"]" * 3000), rs_signer(rsa_key())),
    }


def assert_generic_rejection(error: GatewayError) -> None:
    assert error.code == Code.UNAUTHENTICATED
    assert str(error.reason) == REASON_INVALID_CREDENTIALS
    assert error.message == MSG_INVALID_CREDENTIALS
    assert not error.metadata
    assert not error.field_violations
    assert error.__cause__ is None


CORPUS_NAMES = sorted(_corpus("http://127.0.0.1:1/keys"))


@pytest.mark.parametrize("name", CORPUS_NAMES)
async def test_attack_token_is_rejected_generically(name: str, canary: Canary) -> None:
    fetcher = RecordingFetcher()
    token = _corpus(canary.url)[name]
    with pytest.raises(GatewayError) as caught:
        await validator(fetcher).validate(token)
    assert_generic_rejection(caught.value)
    if len(token) > 8:
        assert token not in str(caught.value)
    assert set(fetcher.urls) <= {JWKS_URL}
    await asyncio.sleep(0.01)
    assert canary.connections == 0


async def test_corpus_is_large_and_tokens_are_distinct() -> None:
    corpus = _corpus("http://127.0.0.1:1/keys")
    assert len(corpus) >= 60
    assert len(set(corpus.values())) == len(corpus)


async def test_key_headers_are_never_followed_even_when_tolerated(canary: Canary) -> None:
    fetcher = RecordingFetcher()
    tolerant = validator(fetcher, reject_key_headers=False)
    legit = good_rs({"alg": "RS256", "kid": "k1", "jku": canary.url, "x5u": canary.url})
    principal = await tolerant.validate(legit)
    assert principal.subject == "user-1"
    for name in ("jku to canary", "x5u to canary", "embedded jwk of attacker"):
        with pytest.raises(GatewayError) as caught:
            await tolerant.validate(_corpus(canary.url)[name])
        assert_generic_rejection(caught.value)
    await asyncio.sleep(0.01)
    assert canary.connections == 0
    assert set(fetcher.urls) == {JWKS_URL}


async def test_hs_rs_confusion_rejected_when_only_rsa_is_allowed() -> None:
    only_rsa = validator(algorithms=frozenset({"RS256"}), shared_secret=None)
    token = make_token({"alg": "HS256", "kid": "k1"}, GOOD, hs_signer(public_pem(rsa_key())))
    with pytest.raises(GatewayError) as caught:
        await only_rsa.validate(token)
    assert_generic_rejection(caught.value)


async def test_unknown_kids_do_not_cause_a_fetch_storm() -> None:
    fetcher = RecordingFetcher()
    v = validator(fetcher)
    for i in range(50):
        with pytest.raises(GatewayError):
            await v.validate(good_rs({"alg": "RS256", "kid": f"unknown-{i}"}))
    assert len(fetcher.urls) <= 2  # initial load + at most one rate-limited refresh


def _run(v: JwtValidator, token: str) -> Principal:
    return asyncio.run(v.validate(token))


_SEGMENT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=200)


def _fuzz_validator() -> JwtValidator:
    return validator(jwks=None, public_keys={"k1": public_pem(rsa_key())})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=400),
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        st.tuples(_SEGMENT, _SEGMENT, _SEGMENT).map(".".join),
        st.tuples(
            st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jku", "crit"]), st.text(max_size=10)),
            st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)),
            _SEGMENT,
        ).map(lambda t: f"{b64u_json(t[0])}.{b64u_json(t[1])}.{t[2]}"),
    )
)
def test_random_tokens_never_validate_and_only_raise_gateway_error(token: str) -> None:
    with pytest.raises(GatewayError) as caught:
        _run(_fuzz_validator(), token)
    assert_generic_rejection(caught.value)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutating_a_valid_token_never_validates(data: st.DataObject) -> None:
    token = good_rs()
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw-_.x0="))
    mutated = token[:index] + replacement + token[index + 1 :]
    if mutated == token:
        return
    try:
        principal = _run(_fuzz_validator(), mutated)
    except GatewayError as error:
        assert_generic_rejection(error)
    else:
        # base64url has non-canonical encodings of the last character only; the content is identical
        assert principal == _run(_fuzz_validator(), token)


async def test_no_token_reaches_the_logs(canary: Canary, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def failing(url: str) -> bytes:
        raise OSError("down")

    corpus = _corpus(canary.url)
    for fetch in (RecordingFetcher(), failing):
        v = validator(jwks=JwksCache(JWKS_URL, fetch, clock=lambda: 0.0))
        for token in corpus.values():
            with pytest.raises(GatewayError):
                await v.validate(token)
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    for token in corpus.values():
        for part in token.split("."):
            if len(part) > 16:
                assert part not in logged
