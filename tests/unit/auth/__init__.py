"""Library-independent JWT tooling for the auth tests.

Tokens are assembled by hand (base64url JSON) and signed with `cryptography` directly, never with
python-jose, so the attack corpus does not share assumptions with the code under test.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Signer = Callable[[bytes], bytes]

ISSUER = "https://issuer.test"
AUDIENCE = "homa"
HMAC_SECRET = b"0123456789abcdef0123456789abcdef-test-secret"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_json(value: Any) -> str:
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def assemble(header: str, payload: str, signer: Signer | None) -> str:
    signing_input = f"{header}.{payload}"
    signature = b64u(signer(signing_input.encode("ascii"))) if signer else ""
    return f"{signing_input}.{signature}"


def make_token(header: dict[str, Any], claims: dict[str, Any], signer: Signer | None) -> str:
    return assemble(b64u_json(header), b64u_json(claims), signer)


_HASHES = {"256": (hashes.SHA256, hashlib.sha256), "384": (hashes.SHA384, hashlib.sha384)}
_HASHES["512"] = (hashes.SHA512, hashlib.sha512)


def hs_signer(secret: bytes, bits: str = "256") -> Signer:
    return lambda data: hmac.new(secret, data, _HASHES[bits][1]).digest()


def rs_signer(key: rsa.RSAPrivateKey, bits: str = "256") -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), _HASHES[bits][0]())


def es_signer(key: ec.EllipticCurvePrivateKey, bits: str = "256", *, der: bool = False) -> Signer:
    size = (key.curve.key_size + 7) // 8

    def sign(data: bytes) -> bytes:
        signature = key.sign(data, ec.ECDSA(_HASHES[bits][0]()))
        if der:
            return signature
        r, s = decode_dss_signature(signature)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


@functools.cache
def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(name: str = "main", curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
    return ec.generate_private_key(curves[curve])


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _int(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64u(value.to_bytes(length, "big"))


def jwk_of(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str | None, **extra: Any
) -> dict[str, Any]:
    """The public JWK of `key`."""
    out: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        out = {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}
    else:
        pub = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
        out = {"kty": "EC", "crv": crv, "x": _int(pub.x, size), "y": _int(pub.y, size)}
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return out


def claims(now: float, **overrides: Any) -> dict[str, Any]:
    """A valid claim set at `now`; pass `name=None` to drop a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant": "acme",
        "exp": int(now) + 300,
        "iat": int(now),
        "scope": "chat:write embeddings:write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}
