"""Provider credentials sealed in configuration are opened at start-up and never logged."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from homa_server.app import Gateway
from homa_server.cli import app
from homa_server.security.crypto import Keyring
from homa_server.security.redaction import RedactingFilter
from homa_server.security.sealed_settings import seal_provider_credential, unseal_provider_credentials
from homa_server.settings import SettingsError
from tests.conftest import make_settings
from tests.storage import TEST_ENCRYPTION_KEY

RAW = "sk-sealed-canary-0123456789abcdef"


def _keyring() -> Keyring:
    return Keyring({"test-1": TEST_ENCRYPTION_KEY}, "test-1")


def test_sealed_key_opens_for_its_provider_only() -> None:
    token = seal_provider_credential(_keyring(), "openai", RAW)
    assert token.startswith("hx1.")
    assert RAW not in token
    settings = make_settings(
        **{
            "providers.openai": {"kind": "openai", "api_key": token},
            "providers.other": {"kind": "openai", "api_key": token},
        }
    )
    with pytest.raises(SettingsError, match=r"providers\.other\.api_key") as caught:
        unseal_provider_credentials(settings, _keyring())
    assert RAW not in str(caught.value)
    assert TEST_ENCRYPTION_KEY not in str(caught.value)


def test_gateway_uses_the_opened_key() -> None:
    token = seal_provider_credential(_keyring(), "openai", RAW)
    settings = make_settings(**{"providers.openai": {"kind": "openai", "api_key": token}})
    gateway = Gateway.from_settings(settings)
    api_key = gateway.settings.providers["openai"].api_key
    assert api_key is not None
    assert api_key.get_secret_value() == RAW
    # The opened key is registered for masking like any configured key (the filter every Homa
    # log handler carries).
    record = logging.LogRecord("homa.test", logging.INFO, __file__, 1, "leak %s", (RAW,), None)
    assert RedactingFilter().filter(record)
    assert RAW not in record.getMessage()


def test_rotation_keeps_sealed_keys_readable() -> None:
    token = seal_provider_credential(_keyring(), "openai", RAW)
    rotated = _keyring().with_primary("test-2", "bmV3LWtleS0wMTIzNDU2Nzg5YWJjZGVmLTAxMjM0NTY=")
    settings = make_settings(**{"providers.openai": {"kind": "openai", "api_key": token}})
    opened = unseal_provider_credentials(settings, rotated).providers["openai"].api_key
    assert opened is not None
    assert opened.get_secret_value() == RAW


def test_cli_gen_key_and_seal(tmp_path: object) -> None:
    runner = CliRunner()
    generated = runner.invoke(app, ["secrets", "gen-key", "--id", "k9"])
    assert generated.exit_code == 0
    assert generated.stdout.startswith("- id: k9\n  key: ")
    key = generated.stdout.split("key: ")[1].strip()
    env = {"HOMA_ENCRYPTION__KEYS": f'[{{"id": "k9", "key": "{key}"}}]'}
    sealed = runner.invoke(app, ["secrets", "seal", "--provider", "openai"], input=RAW + "\n", env=env)
    assert sealed.exit_code == 0, sealed.output
    token = sealed.stdout.strip()
    assert token.startswith("hx1.")
    assert RAW not in token
    ring = Keyring({"k9": key}, "k9")
    settings = make_settings(**{"providers.openai": {"kind": "openai", "api_key": token}})
    opened = unseal_provider_credentials(settings, ring).providers["openai"].api_key
    assert opened is not None
    assert opened.get_secret_value() == RAW
