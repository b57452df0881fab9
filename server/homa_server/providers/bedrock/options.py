"""Bedrock-specific settings (`providers.<name>.options`), validated when the provider is built.

Accepted options (anything else is rejected, so a typo never silently falls back to a default):

- `region`: AWS region such as "us-east-1". Required unless `AWS_REGION` or `AWS_DEFAULT_REGION` is
  set; reading those two variables is the documented AWS way to name a region, and the only
  environment access of this adapter besides botocore's credential chain.
- `access_key_id`, `secret_access_key` (together) and optional `session_token`: static AWS
  credentials. Without them (and without `api_key`), botocore's default credential chain is used.
- `control_base_url`: the Bedrock control plane for model listing
  (default `https://bedrock.<region>.amazonaws.com`).
- `list_inference_profiles`: also list the system-defined inference profiles (default true;
  newer models can only be invoked through one).
- `throttling_retry_after_s`: the retry delay reported for throttling (Bedrock sends no retry
  headers; default 1.0 s, botocore's standard-mode base delay).

Errors are `ValueError`s whose message names the option path
(`providers.bedrock.options.region: ...`), like every other settings error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

__all__ = ["BedrockOptions", "ResolvedOptions", "resolve_options"]

_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
_REGION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class BedrockOptions(BaseModel):
    """The raw `options` mapping of a Bedrock provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    control_base_url: str | None = None
    list_inference_profiles: bool = True
    throttling_retry_after_s: float = Field(1.0, ge=0.0, le=3600.0)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _is_region(value):
            raise ValueError("must be an AWS region name such as us-east-1")
        return value

    @field_validator("control_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


@dataclass(frozen=True, slots=True)
class ResolvedOptions:
    """Options after defaults and the region variables were applied.

    Attributes:
        region: the signing region.
        static_keys: (access key id, secret access key, session token or None) when configured.
        control_base_url: base URL of the control plane, without a trailing slash.
        list_inference_profiles: whether model listing includes inference profiles.
        throttling_retry_after_s: retry delay reported for throttling errors.
    """

    region: str
    static_keys: tuple[str, str, str | None] | None
    control_base_url: str
    list_inference_profiles: bool
    throttling_retry_after_s: float


def resolve_options(
    provider: str, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ResolvedOptions:
    """Validate `options` and apply defaults.

    Args:
        provider: instance name, used in error paths (`providers.<provider>.options.<field>`).
        options: the settings' `options` mapping.
        environ: where `AWS_REGION` / `AWS_DEFAULT_REGION` are read (defaults to `os.environ`).

    Raises:
        ValueError: one line per problem, each naming the option path.
    """
    prefix = f"providers.{provider}.options"
    try:
        parsed = BedrockOptions.model_validate(dict(options))
    except ValidationError as exc:
        lines = [
            f"{prefix}.{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ValueError("\n".join(lines)) from None
    region = parsed.region or _region_from_environment(os.environ if environ is None else environ)
    if region is None:
        raise ValueError(
            f"{prefix}.region: required (or set AWS_REGION / AWS_DEFAULT_REGION in the environment)"
        )
    if (parsed.access_key_id is None) != (parsed.secret_access_key is None):
        raise ValueError(f"{prefix}.access_key_id: access_key_id and secret_access_key go together")
    if parsed.session_token is not None and parsed.access_key_id is None:
        raise ValueError(f"{prefix}.session_token: needs access_key_id and secret_access_key")
    static_keys = None
    if parsed.access_key_id is not None and parsed.secret_access_key is not None:
        token = parsed.session_token.get_secret_value() if parsed.session_token else None
        static_keys = (
            parsed.access_key_id.get_secret_value(),
            parsed.secret_access_key.get_secret_value(),
            token or None,
        )
    return ResolvedOptions(
        region=region,
        static_keys=static_keys,
        control_base_url=parsed.control_base_url or f"https://bedrock.{region}.amazonaws.com",
        list_inference_profiles=parsed.list_inference_profiles,
        throttling_retry_after_s=parsed.throttling_retry_after_s,
    )


def _region_from_environment(environ: Mapping[str, str]) -> str | None:
    for variable in _REGION_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            if not _is_region(value):
                raise ValueError(f"{variable}: {value!r} is not an AWS region name")
            return value
    return None


def _is_region(value: str) -> bool:
    return bool(value) and set(value) <= _REGION_CHARS and value[0].isalpha() and "-" in value
