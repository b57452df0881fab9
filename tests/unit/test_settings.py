"""Settings precedence and validation: defaults < YAML < HOMA_* env < CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.settings import SettingsError, load_settings


def test_defaults_serve_mock_on_50051(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMA_CONFIG", raising=False)
    settings = load_settings(environ={})
    assert settings.server.port == 50051
    assert settings.server.host == "127.0.0.1"
    assert list(settings.providers) == ["mock", "local"]  # both work with no key and no network
    assert settings.server.max_message_bytes == 16 * 1024 * 1024


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "homa.yaml"
    config.write_text("server:\n  port: 7001\n  workers: 3\n  grace_period_s: 2\n")
    monkeypatch.setenv("HOMA_SERVER__WORKERS", "4")
    settings = load_settings(config, environ={})
    assert settings.server.port == 7001  # YAML over default
    assert settings.server.workers == 4  # env over YAML
    settings = load_settings(config, {"server.workers": 5}, environ={})
    assert settings.server.workers == 5  # CLI over env


def test_invalid_values_are_reported_with_their_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "server:\n  port: 70000\n  bogus: 1\nproviders:\n  x:\n    kind: openai\n    base_url: ftp://x\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(config, environ={})
    text = str(info.value)
    assert "server.port" in text
    assert "server.bogus" in text
    assert "providers.x.base_url" in text


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_vendor_key_in_environment_enables_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOMA_CONFIG", raising=False)
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-test-canary"})
    assert settings.providers["openai"].kind == "openai"
    key = settings.providers["openai"].api_key
    assert key is not None
    assert key.get_secret_value() == "sk-test-canary"
    assert "sk-test-canary" not in repr(settings)


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "homa.example.yaml"
    settings = load_settings(example, environ={})
    assert settings.server.port == 50051


def test_every_vendor_variable_switches_on_a_registered_kind() -> None:
    environ = {
        "OPENAI_API_KEY": "sk-a",
        "ANTHROPIC_API_KEY": "sk-ant-b",
        "GEMINI_API_KEY": "g",
        "AZURE_OPENAI_API_KEY": "az",
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_REGION": "us-east-1",
        "COHERE_API_KEY": "co",
        "VENICE_API_KEY": "ve",
        "OLLAMA_HOST": "127.0.0.1:11434",
    }
    settings = load_settings(environ=environ)
    kinds = {name: p.kind for name, p in settings.providers.items()}
    assert kinds == {
        "mock": "mock",
        "local": "local",
        "openai": "openai",
        "anthropic": "anthropic",
        "gemini": "gemini",
        "azure": "azure_openai",
        "bedrock": "bedrock",
        "cohere": "cohere",
        "venice": "venice",
        "ollama": "ollama",
    }
    assert set(kinds.values()) <= set(BUILTIN_KINDS)
    assert settings.providers["azure"].base_url == "https://res.openai.azure.com/openai"
    assert settings.providers["ollama"].base_url == "http://127.0.0.1:11434"
    assert settings.providers["bedrock"].api_key is None  # signed with botocore's credential chain


def test_incomplete_vendor_variables_switch_nothing_on() -> None:
    settings = load_settings(
        environ={"AZURE_OPENAI_API_KEY": "az", "AWS_ACCESS_KEY_ID": "AKIA", "OLLAMA_API_KEY": "k"}
    )
    assert list(settings.providers) == ["mock", "local"]
