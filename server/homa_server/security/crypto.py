"""Encryption at rest: AES-256-GCM with a versioned keyring and self-describing envelopes.

Contract:

* A `Keyring` holds 256-bit keys, each under a short id (`2026-11`, `k1`, ...). The primary key encrypts;
  every key decrypts, so adding a new primary (rotation) keeps older data readable. `reencrypt` moves one
  envelope to the primary key; a retired key may be dropped once nothing references it.
* `encrypt(plaintext, associated_data)` returns the envelope
  `version (1 byte, 0x01) | key id length (1 byte) | key id (ASCII) | nonce (12 random bytes) |
  ciphertext + 16-byte GCM tag`. The header is authenticated together with `associated_data`, which must
  be supplied again to decrypt: bind it to where the value lives (tenant, table, row id) so that a
  ciphertext copied to another row does not decrypt.
* `decrypt` raises `GatewayError` with reason `ENCRYPTION_KEY_UNKNOWN` (INTERNAL) for a key id not in the
  keyring and `DECRYPTION_FAILED` (DATA_LOSS) for malformed envelopes, tampering, a wrong key or wrong
  associated data. Messages name at most the key id; never key material or plaintext.
* Configuration errors (bad base64, wrong key length, bad or duplicate ids, unknown primary) raise
  `KeyringConfigError` (a ValueError) at start-up, again without key material.
* `SecretBox` seals strings (provider credentials, settings secrets) into printable tokens
  (`hx1.` + base64url) bound to a purpose string.

Random 96-bit nonces are safe for about 2**32 encryptions per key; rotate the primary well before that.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homa_server.errors import Code, GatewayError, Reason

__all__ = [
    "DECRYPTION_FAILED",
    "ENCRYPTION_KEY_UNKNOWN",
    "ENVELOPE_VERSION",
    "Keyring",
    "KeyringConfigError",
    "SecretBox",
    "generate_key",
]

# Reason strings (to be added to errors.Reason and docs/errors.md).
ENCRYPTION_KEY_UNKNOWN: Final = "ENCRYPTION_KEY_UNKNOWN"
"""INTERNAL: the envelope names a key id that is not configured (retired too early?)."""
DECRYPTION_FAILED: Final = "DECRYPTION_FAILED"
"""DATA_LOSS: malformed envelope, tampering, wrong key or wrong associated data."""

ENVELOPE_VERSION: Final = 1
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_SEALED_PREFIX: Final = "hx1."


class KeyringConfigError(ValueError):
    """Invalid keyring configuration; the message never contains key material."""


def _reason(value: str) -> Reason:
    return Reason(value)


def _failed(message: str) -> GatewayError:
    return GatewayError(message, Code.DATA_LOSS, _reason(DECRYPTION_FAILED))


def generate_key() -> str:
    """A fresh random 256-bit key, base64-encoded as the settings expect."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _decode_key(key_id: str, value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        raw = value
    else:
        text = value.strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raise KeyringConfigError(f"encryption key {key_id!r} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyringConfigError(f"encryption key {key_id!r} must be {KEY_BYTES} bytes (256 bits)")
    return raw


def _check_key_id(key_id: str) -> None:
    if not _KEY_ID.fullmatch(key_id):
        raise KeyringConfigError("encryption key ids must be 1-64 characters of A-Z a-z 0-9 . _ -")


class Keyring:
    """Versioned AES-256-GCM keys: one primary for encryption, all of them for decryption.

    Args:
        keys: key id -> 32 raw bytes or a base64 (standard or URL-safe) string.
        primary: the id used for new encryptions; must be in `keys`.

    Raises:
        KeyringConfigError: no keys, an invalid id or key, or a primary that is not in `keys`.
    """

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: Mapping[str, str | bytes], primary: str) -> None:
        if not keys:
            raise KeyringConfigError("the keyring needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key_id, value in keys.items():
            _check_key_id(key_id)
            ciphers[key_id] = AESGCM(_decode_key(key_id, value))
        if primary not in ciphers:
            raise KeyringConfigError(f"primary encryption key {primary!r} is not in the keyring")
        self._ciphers = ciphers
        self._primary = primary

    @classmethod
    def from_settings(cls, entries: Iterable[Mapping[str, str]], primary: str | None = None) -> Keyring:
        """Build from settings entries `{"id": ..., "key": <base64>}`; primary defaults to the last entry.

        Raises:
            KeyringConfigError: a missing field, a duplicate id, or anything `Keyring` refuses.
        """
        keys: dict[str, str] = {}
        last: str | None = None
        for entry in entries:
            key_id, value = entry.get("id"), entry.get("key")
            if not key_id or not value:
                raise KeyringConfigError("every encryption key entry needs an 'id' and a 'key'")
            if key_id in keys:
                raise KeyringConfigError(f"duplicate encryption key id {key_id!r}")
            keys[key_id] = value
            last = key_id
        if last is None:
            raise KeyringConfigError("the keyring needs at least one key")
        return cls(keys, primary if primary is not None else last)

    @classmethod
    def _from_ciphers(cls, ciphers: dict[str, AESGCM], primary: str) -> Keyring:
        ring = cls.__new__(cls)
        ring._ciphers = ciphers
        ring._primary = primary
        return ring

    def __repr__(self) -> str:
        return f"Keyring(primary={self._primary!r}, key_ids={sorted(self._ciphers)!r})"

    @property
    def primary_key_id(self) -> str:
        """The id of the key new envelopes are encrypted under."""
        return self._primary

    @property
    def key_ids(self) -> frozenset[str]:
        """Every id this keyring can decrypt."""
        return frozenset(self._ciphers)

    def with_primary(self, key_id: str, key: str | bytes) -> Keyring:
        """Rotation: a new keyring whose primary is the new key, keeping every existing key for reads.

        Raises:
            KeyringConfigError: invalid id or key, or the id is already used.
        """
        _check_key_id(key_id)
        if key_id in self._ciphers:
            raise KeyringConfigError(f"encryption key id {key_id!r} is already in the keyring")
        ciphers = dict(self._ciphers)
        ciphers[key_id] = AESGCM(_decode_key(key_id, key))
        return Keyring._from_ciphers(ciphers, key_id)

    def without(self, key_id: str) -> Keyring:
        """Retirement: a new keyring without `key_id` (after every envelope under it was re-encrypted).

        Raises:
            KeyringConfigError: `key_id` is the primary or unknown.
        """
        if key_id == self._primary:
            raise KeyringConfigError("cannot retire the primary encryption key")
        if key_id not in self._ciphers:
            raise KeyringConfigError(f"encryption key {key_id!r} is not in the keyring")
        ciphers = {k: v for k, v in self._ciphers.items() if k != key_id}
        return Keyring._from_ciphers(ciphers, self._primary)

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """Encrypt under the primary key with a fresh random nonce; return the envelope."""
        key_id = self._primary.encode("ascii")
        header = bytes((ENVELOPE_VERSION, len(key_id))) + key_id
        nonce = os.urandom(NONCE_BYTES)
        return (
            header + nonce + self._ciphers[self._primary].encrypt(nonce, plaintext, header + associated_data)
        )

    @staticmethod
    def _split(envelope: bytes) -> tuple[bytes, str, bytes, bytes]:
        """(header, key id, nonce, ciphertext) or DECRYPTION_FAILED."""
        if len(envelope) < 2 or envelope[0] != ENVELOPE_VERSION:
            raise _failed("encrypted value is malformed or has an unsupported version")
        id_length = envelope[1]
        body_start = 2 + id_length
        if id_length == 0 or len(envelope) < body_start + NONCE_BYTES + TAG_BYTES:
            raise _failed("encrypted value is malformed or truncated")
        try:
            key_id = envelope[2:body_start].decode("ascii")
        except UnicodeDecodeError:
            raise _failed("encrypted value is malformed") from None
        if not _KEY_ID.fullmatch(key_id):
            raise _failed("encrypted value is malformed")
        nonce = envelope[body_start : body_start + NONCE_BYTES]
        return envelope[:body_start], key_id, nonce, envelope[body_start + NONCE_BYTES :]

    def key_id_of(self, envelope: bytes) -> str:
        """The id of the key `envelope` was encrypted under (not authenticated until decrypted)."""
        return self._split(envelope)[1]

    def needs_reencryption(self, envelope: bytes) -> bool:
        """Whether `envelope` is under a key other than the primary."""
        return self.key_id_of(envelope) != self._primary

    def decrypt(self, envelope: bytes, associated_data: bytes) -> bytes:
        """Authenticate and decrypt an envelope made by any key in this keyring.

        Raises:
            GatewayError: ENCRYPTION_KEY_UNKNOWN (INTERNAL) or DECRYPTION_FAILED (DATA_LOSS).
        """
        header, key_id, nonce, ciphertext = self._split(bytes(envelope))
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise GatewayError(
                f"encrypted value uses key id {key_id!r}, which is not configured",
                Code.INTERNAL,
                _reason(ENCRYPTION_KEY_UNKNOWN),
                metadata={"key_id": key_id},
            )
        try:
            return cipher.decrypt(nonce, ciphertext, header + associated_data)
        except InvalidTag:
            raise _failed(
                "encrypted value failed authentication (tampered, wrong key or wrong associated data)"
            ) from None

    def reencrypt(self, envelope: bytes, associated_data: bytes) -> bytes:
        """Return `envelope` under the primary key (unchanged if it already is). Raises as `decrypt`."""
        if not self.needs_reencryption(envelope):
            self.decrypt(envelope, associated_data)  # still authenticate: never bless a forged value
            return envelope
        return self.encrypt(self.decrypt(envelope, associated_data), associated_data)


class SecretBox:
    """Seal strings into printable tokens (`hx1.` + base64url envelope) bound to a purpose.

    The purpose (for example `provider-credential`) is authenticated with the optional per-value
    context, so a token sealed for one purpose or row cannot be opened as another.
    """

    __slots__ = ("_keyring", "_purpose")

    def __init__(self, keyring: Keyring, purpose: str) -> None:
        if not purpose:
            raise ValueError("a SecretBox needs a non-empty purpose")
        self._keyring = keyring
        self._purpose = purpose.encode()

    def _aad(self, context: bytes) -> bytes:
        return len(self._purpose).to_bytes(2, "big") + self._purpose + context

    def seal(self, text: str, context: bytes = b"") -> str:
        """Encrypt `text` (UTF-8) under the primary key; return a printable token."""
        envelope = self._keyring.encrypt(text.encode("utf-8"), self._aad(context))
        return _SEALED_PREFIX + base64.urlsafe_b64encode(envelope).rstrip(b"=").decode("ascii")

    def open(self, token: str, context: bytes = b"") -> str:
        """Decrypt a token made by `seal` with the same purpose and context.

        Raises:
            GatewayError: DECRYPTION_FAILED for anything that is not a valid token; otherwise as
                `Keyring.decrypt`.
        """
        if not token.startswith(_SEALED_PREFIX):
            raise _failed("sealed value has an unknown format")
        body = token[len(_SEALED_PREFIX) :]
        try:
            envelope = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise _failed("sealed value is not valid base64") from None
        plaintext = self._keyring.decrypt(envelope, self._aad(context))
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise _failed("sealed value is not UTF-8 text") from None

    def reseal(self, token: str, context: bytes = b"") -> str:
        """Rotation helper: `token` re-sealed under the primary key (unchanged if it already is)."""
        text = self.open(token, context)
        body = token[len(_SEALED_PREFIX) :]
        envelope = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not self._keyring.needs_reencryption(envelope):
            return token
        return self.seal(text, context)
