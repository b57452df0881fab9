"""Logs go through the redaction filter: configured provider keys and token shapes never appear."""

from __future__ import annotations

import logging

import orjson
import pytest

from homa_server.observability.logging import configure_logging, register_provider_secrets
from homa_server.security.redaction import clear_registered_secrets
from homa_server.settings import LoggingSettings, load_settings

CANARY_KEY = "custom-provider-key-4f9a2c7e1b"  # matches no pattern: only registration masks it


@pytest.fixture(autouse=True)
def _reset() -> object:
    yield
    clear_registered_secrets()
    logging.getLogger("homa").handlers.clear()


def test_provider_keys_and_token_shapes_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(
        overrides={"providers": {"x": {"kind": "openai", "api_key": CANARY_KEY}}}, environ={}
    )
    configure_logging(LoggingSettings(level="INFO", json_format=True))
    register_provider_secrets(settings)
    log = logging.getLogger("homa.test")
    log.warning(
        "upstream said %s",
        f"bad key {CANARY_KEY}",
        extra={"auth": "Bearer abc.def.ghi", "user": "a@b.example"},
    )
    try:
        raise RuntimeError(f"boom with sk-proj-{'Ab3x' * 10}")
    except RuntimeError:
        log.exception("failure")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    text = str(lines)
    assert CANARY_KEY not in text
    assert "abc.def.ghi" not in text
    assert "a@b.example" not in text
    assert "Ab3x" * 10 not in text
    assert "RuntimeError" in lines[1]["exception"]  # the traceback survives, redacted
