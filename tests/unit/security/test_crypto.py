"""AES-GCM envelopes: round trips, authentication, rotation, clear errors, no leaks."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homa_server.errors import Code, GatewayError
from homa_server.security.crypto import (
    DECRYPTION_FAILED,
    ENCRYPTION_KEY_UNKNOWN,
    ENVELOPE_VERSION,
    Keyring,
    KeyringConfigError,
    SecretBox,
    generate_key,
)

KEY_A = generate_key()
KEY_B = generate_key()
AD = b"tenant=t1/conversation=c42"


def ring(*ids: str) -> Keyring:
    return Keyring({i: generate_key() for i in ids}, ids[-1])


def test_round_trip_and_envelope_layout() -> None:
    keyring = Keyring({"2026-11": KEY_A}, "2026-11")
    envelope = keyring.encrypt(b"hello conversation", AD)
    assert envelope[0] == ENVELOPE_VERSION
    assert envelope[1] == len(b"2026-11")
    assert envelope[2:9] == b"2026-11"
    assert len(envelope) == 2 + 7 + 12 + len(b"hello conversation") + 16
    assert b"hello conversation" not in envelope
    assert keyring.decrypt(envelope, AD) == b"hello conversation"
    assert keyring.key_id_of(envelope) == "2026-11"
    assert keyring.decrypt(keyring.encrypt(b"", b""), b"") == b""


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048), st.binary(max_size=64))
def test_round_trip_property(plaintext: bytes, associated: bytes) -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    assert keyring.decrypt(keyring.encrypt(plaintext, associated), associated) == plaintext


def test_wrong_associated_data_fails() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    envelope = keyring.encrypt(b"secret words", AD)
    with pytest.raises(GatewayError) as info:
        keyring.decrypt(envelope, b"tenant=t2/conversation=c42")
    assert str(info.value.reason) == DECRYPTION_FAILED
    assert info.value.code == Code.DATA_LOSS
    assert "secret words" not in str(info.value)


def test_every_single_bit_flip_is_detected() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    envelope = keyring.encrypt(b"tamper with me", AD)
    for index in range(len(envelope)):
        for bit in (0x01, 0x80):
            forged = bytearray(envelope)
            forged[index] ^= bit
            with pytest.raises(GatewayError) as info:
                keyring.decrypt(bytes(forged), AD)
            assert str(info.value.reason) in (DECRYPTION_FAILED, ENCRYPTION_KEY_UNKNOWN)


def test_truncated_and_malformed_envelopes() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    envelope = keyring.encrypt(b"x", AD)
    for bad in [b"", b"\x01", b"\x02" + envelope[1:], envelope[:-1], envelope[:20], b"\x01\x00" + b"0" * 40]:
        with pytest.raises(GatewayError) as info:
            keyring.decrypt(bad, AD)
        assert str(info.value.reason) == DECRYPTION_FAILED


def test_header_swap_to_another_known_key_fails() -> None:
    keyring = Keyring({"a": KEY_A, "b": KEY_B}, "a")
    envelope = keyring.encrypt(b"payload", AD)
    swapped = envelope[:2] + b"b" + envelope[3:]
    with pytest.raises(GatewayError) as info:
        keyring.decrypt(swapped, AD)
    assert str(info.value.reason) == DECRYPTION_FAILED


def test_rotation_keeps_old_data_readable_and_reencrypts() -> None:
    old = Keyring({"2026-01": KEY_A}, "2026-01")
    stored = old.encrypt(b"old conversation", AD)

    rotated = old.with_primary("2026-11", KEY_B)
    assert rotated.primary_key_id == "2026-11"
    assert rotated.key_ids == {"2026-01", "2026-11"}
    assert old.primary_key_id == "2026-01"  # immutable
    assert rotated.decrypt(stored, AD) == b"old conversation"
    assert rotated.key_id_of(rotated.encrypt(b"new", AD)) == "2026-11"

    assert rotated.needs_reencryption(stored)
    moved = rotated.reencrypt(stored, AD)
    assert rotated.key_id_of(moved) == "2026-11"
    assert rotated.reencrypt(moved, AD) is moved  # already current: unchanged
    retired = rotated.without("2026-01")
    assert retired.decrypt(moved, AD) == b"old conversation"
    with pytest.raises(GatewayError) as info:
        retired.decrypt(stored, AD)
    assert str(info.value.reason) == ENCRYPTION_KEY_UNKNOWN


def test_rotation_from_settings_order() -> None:
    entries = [{"id": "k1", "key": KEY_A}, {"id": "k2", "key": KEY_B}]
    first = Keyring.from_settings(entries[:1])
    stored = first.encrypt(b"data", AD)
    both = Keyring.from_settings(entries)
    assert both.primary_key_id == "k2"  # the last entry is the primary by default
    assert both.decrypt(stored, AD) == b"data"
    assert Keyring.from_settings(entries, primary="k1").primary_key_id == "k1"


def test_unknown_key_id_is_a_clear_error() -> None:
    writer = Keyring({"ghost": KEY_A}, "ghost")
    reader = Keyring({"k": KEY_A}, "k")  # same bytes, other id: still unknown
    with pytest.raises(GatewayError) as info:
        reader.decrypt(writer.encrypt(b"boo", AD), AD)
    error = info.value
    assert str(error.reason) == ENCRYPTION_KEY_UNKNOWN
    assert error.code == Code.INTERNAL
    assert "ghost" in error.message
    assert error.metadata == {"key_id": "ghost"}
    assert KEY_A not in str(error)


def test_reencrypt_refuses_forgeries_even_under_the_primary() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    envelope = bytearray(keyring.encrypt(b"x", AD))
    envelope[-1] ^= 1
    with pytest.raises(GatewayError):
        keyring.reencrypt(bytes(envelope), AD)


def test_nonces_are_unique() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    nonces = {keyring.encrypt(b"same", AD)[3:15] for _ in range(20_000)}
    assert len(nonces) == 20_000
    assert len({keyring.encrypt(b"same", AD) for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("keys", "primary", "message"),
    [
        ({}, "k", "at least one key"),
        ({"k": "not base64!!"}, "k", "not valid base64"),
        ({"k": base64.b64encode(os.urandom(16)).decode()}, "k", "32 bytes"),
        ({"bad id": KEY_A}, "bad id", "key ids"),
        ({"k" * 65: KEY_A}, "k" * 65, "key ids"),
        ({"k": KEY_A}, "other", "primary"),
    ],
)
def test_configuration_errors(keys: dict[str, str], primary: str, message: str) -> None:
    with pytest.raises(KeyringConfigError, match=message) as info:
        Keyring(keys, primary)
    for value in keys.values():
        assert value not in str(info.value) or value == ""


def test_settings_errors_and_key_formats() -> None:
    with pytest.raises(KeyringConfigError, match="duplicate"):
        Keyring.from_settings([{"id": "k", "key": KEY_A}, {"id": "k", "key": KEY_B}])
    with pytest.raises(KeyringConfigError, match="'id' and a 'key'"):
        Keyring.from_settings([{"id": "k"}])
    with pytest.raises(KeyringConfigError, match="at least one"):
        Keyring.from_settings([])
    raw = os.urandom(32)
    urlsafe = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    for value in (raw, base64.b64encode(raw).decode(), urlsafe):
        keyring = Keyring({"k": value}, "k")
        assert Keyring({"k": raw}, "k").decrypt(keyring.encrypt(b"same key", b""), b"") == b"same key"
    keyring = Keyring({"k": KEY_A}, "k")
    with pytest.raises(KeyringConfigError, match="already"):
        keyring.with_primary("k", KEY_B)
    with pytest.raises(KeyringConfigError, match="primary"):
        keyring.without("k")
    with pytest.raises(KeyringConfigError, match="not in the keyring"):
        keyring.without("nope")


def test_repr_never_shows_key_material() -> None:
    keyring = Keyring({"k1": KEY_A, "k2": KEY_B}, "k2")
    text = repr(keyring) + str(keyring)
    assert "k1" in text
    assert "k2" in text
    assert KEY_A not in text
    assert KEY_B not in text


def flip_middle(token: str) -> str:
    """Change one base64 character in the middle (the last one may carry only padding bits)."""
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def test_secret_box_round_trip_binding_and_reseal() -> None:
    keyring = Keyring({"k1": KEY_A}, "k1")
    box = SecretBox(keyring, "provider-credential")
    token = box.seal("sk-proj-provider-key-ü", context=b"provider=openai")
    assert token.startswith("hx1.")
    assert token.isascii()
    assert "sk-proj" not in token
    assert box.open(token, context=b"provider=openai") == "sk-proj-provider-key-ü"
    with pytest.raises(GatewayError):
        box.open(token, context=b"provider=anthropic")
    with pytest.raises(GatewayError):
        SecretBox(keyring, "conversation").open(token, context=b"provider=openai")
    for bad in ["plain", "hx1.!!!", "hx1." + token[4:-2], flip_middle(token)]:
        with pytest.raises(GatewayError) as info:
            box.open(bad, context=b"provider=openai")
        assert str(info.value.reason) == DECRYPTION_FAILED

    rotated = SecretBox(keyring.with_primary("k2", KEY_B), "provider-credential")
    assert rotated.open(token, context=b"provider=openai") == "sk-proj-provider-key-ü"
    resealed = rotated.reseal(token, context=b"provider=openai")
    assert resealed != token
    assert rotated.reseal(resealed, context=b"provider=openai") == resealed
    assert rotated.open(resealed, context=b"provider=openai") == "sk-proj-provider-key-ü"
    with pytest.raises(ValueError, match="purpose"):
        SecretBox(keyring, "")


def test_secret_box_rejects_non_utf8_plaintext() -> None:
    keyring = Keyring({"k": KEY_A}, "k")
    box = SecretBox(keyring, "p")
    # Forge a token with valid authentication but invalid UTF-8 using the same purpose binding.
    envelope = keyring.encrypt(b"\xff\xfe", box._aad(b""))
    token = "hx1." + base64.urlsafe_b64encode(envelope).rstrip(b"=").decode()
    with pytest.raises(GatewayError) as info:
        box.open(token)
    assert str(info.value.reason) == DECRYPTION_FAILED
