"""The one typed settings tree. Read here and nowhere else.

Precedence, lowest to highest: built-in defaults < YAML file (`--config` or `HOMA_CONFIG`) <
`HOMA_*` environment variables (nested with `__`, e.g. `HOMA_SERVER__PORT=6000`) < CLI flags.
Provider keys found in the usual vendor variables (`OPENAI_API_KEY`, ...) switch that provider on.
Everything is validated at start; `load_settings` raises `SettingsError` with one line per problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

_MIB = 1024 * 1024


class SettingsError(ValueError):
    """Invalid configuration; the message lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    """The gRPC listener."""

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_message_bytes: int = Field(16 * _MIB, ge=64 * 1024, le=256 * _MIB)
    max_concurrent_streams: int = Field(1000, ge=1)
    keepalive_time_s: float = Field(30.0, gt=0)
    keepalive_timeout_s: float = Field(10.0, gt=0)
    min_client_ping_interval_s: float = Field(10.0, gt=0)
    grace_period_s: float = Field(10.0, ge=0)
    reflection: bool = True


class ProviderSettings(_Strict):
    """One provider instance. `kind` selects the adapter (registered in providers/registry.py)."""

    kind: str
    enabled: bool = True
    base_url: str | None = None
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    models: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(200, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class LoggingSettings(_Strict):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


def _default_providers() -> dict[str, ProviderSettings]:
    return {"mock": ProviderSettings(kind="mock")}


@dataclass(frozen=True, slots=True)
class _EnvProvider:
    """A provider switched on by vendor environment variables (the variables each vendor's SDK reads)."""

    kind: str
    key_vars: tuple[str, ...] = ()
    url_var: str | None = None
    url_suffix: str = ""
    needs_key: bool = True
    needs_url: bool = False
    needs_any: tuple[str, ...] = ()  # at least one of these must be set too (e.g. an AWS region)


_ENV_PROVIDERS: dict[str, _EnvProvider] = {
    "openai": _EnvProvider("openai", ("OPENAI_API_KEY",), url_var="OPENAI_BASE_URL"),
    "anthropic": _EnvProvider("anthropic", ("ANTHROPIC_API_KEY",), url_var="ANTHROPIC_BASE_URL"),
    "gemini": _EnvProvider("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
    "azure": _EnvProvider(
        "azure_openai",
        ("AZURE_OPENAI_API_KEY",),
        url_var="AZURE_OPENAI_ENDPOINT",
        url_suffix="/openai",
        needs_url=True,
    ),
    "bedrock": _EnvProvider(
        "bedrock",
        ("AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID"),
        needs_any=("AWS_REGION", "AWS_DEFAULT_REGION"),
    ),
    "cohere": _EnvProvider("cohere", ("COHERE_API_KEY", "CO_API_KEY")),
    "venice": _EnvProvider("venice", ("VENICE_API_KEY",)),
    "ollama": _EnvProvider(
        "ollama", ("OLLAMA_API_KEY",), url_var="OLLAMA_HOST", needs_key=False, needs_url=True
    ),
}


class Settings(BaseSettings):
    """The whole configuration of one Homa process."""

    model_config = SettingsConfigDict(
        env_prefix="HOMA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    default_model: str = "mock/echo"
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("HOMA_CONFIG_FILE_RESOLVED")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _env_keyed_providers(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Providers switched on by vendor variables. AWS access keys switch Bedrock on without an
    api_key (the adapter signs with botocore's credential chain); a Bedrock bearer key is its api_key."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in _ENV_PROVIDERS.items():
        key_var = next((v for v in spec.key_vars if environ.get(v)), None)
        url = environ.get(spec.url_var, "") if spec.url_var else ""
        if (spec.needs_key and key_var is None) or (spec.needs_url and not url):
            continue
        if spec.needs_any and not any(environ.get(v) for v in spec.needs_any):
            continue
        entry: dict[str, Any] = {"kind": spec.kind}
        if key_var is not None and key_var != "AWS_ACCESS_KEY_ID":
            entry["api_key"] = environ[key_var]
        if url:
            entry["base_url"] = (url if "://" in url else f"http://{url}").rstrip("/") + spec.url_suffix
        found[name] = entry
    return found


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build and validate the settings.

    Args:
        config_file: YAML file; defaults to `$HOMA_CONFIG` when set.
        overrides: CLI values by dotted path (`{"server.port": 6000}`); highest precedence.
        environ: environment to read vendor keys from (defaults to `os.environ`).

    Raises:
        SettingsError: the file is missing or the merged values are invalid.
    """
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("HOMA_CONFIG")
    if path is not None and not Path(path).is_file():
        raise SettingsError(f"config file not found: {path}")
    init: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(init, dotted, value)
    previous = os.environ.get("HOMA_CONFIG_FILE_RESOLVED")
    try:
        if path is not None:
            os.environ["HOMA_CONFIG_FILE_RESOLVED"] = str(path)
        else:
            os.environ.pop("HOMA_CONFIG_FILE_RESOLVED", None)
        settings = Settings(**init)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
    finally:
        if previous is None:
            os.environ.pop("HOMA_CONFIG_FILE_RESOLVED", None)
        else:
            os.environ["HOMA_CONFIG_FILE_RESOLVED"] = previous
    extra = {
        name: ProviderSettings(**spec)
        for name, spec in _env_keyed_providers(env).items()
        if name not in settings.providers
    }
    if extra:
        settings = settings.model_copy(update={"providers": {**settings.providers, **extra}})
    return settings
