"""Anthropic-specific settings (`providers.<name>.options`), validated once at construction.

| option               | default        | meaning                                                        |
|----------------------|----------------|----------------------------------------------------------------|
| `version`            | `"2023-06-01"` | the `anthropic-version` header                                 |
| `beta`               | `[]`           | beta flags, sent comma-joined as `anthropic-beta`              |
| `default_max_tokens` | `4096`         | `max_tokens` when the request has no `max_output_tokens`       |
| `document_citations` | `false`        | ask for citations on every document block (`citations.enabled`) |
| `prompt_cache`       | `"off"`        | `"5m"` / `"1h"`: top-level `cache_control` (automatic caching)  |

Anthropic requires `max_tokens` on every call, hence `default_max_tokens`. Unknown keys are errors,
so a typo in the YAML file stops the server at start-up instead of being ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["AnthropicOptions", "parse_options"]

DEFAULT_VERSION = "2023-06-01"


class AnthropicOptions(BaseModel):
    """The validated `options` mapping of one Anthropic provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(DEFAULT_VERSION, min_length=1)
    beta: tuple[str, ...] = ()
    default_max_tokens: int = Field(4096, ge=1)
    document_citations: bool = False
    prompt_cache: Literal["off", "5m", "1h"] = "off"

    @field_validator("beta")
    @classmethod
    def _flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for flag in value:
            # Flags are joined with commas into one header value, so they may not contain any.
            if not flag or flag != flag.strip() or "," in flag:
                raise ValueError(f"invalid beta flag {flag!r}: one non-empty name without commas or spaces")
        return value


def parse_options(name: str, raw: dict[str, Any]) -> AnthropicOptions:
    """Validate `raw` (the provider's `options`).

    Raises:
        ValueError: one line per problem, each naming the full option path, e.g.
            `providers.anthropic.options.default_max_tokens: Input should be greater than or equal to 1`.
    """
    try:
        return AnthropicOptions.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"providers.{name}.options.{where}: {error['msg']}")
        raise ValueError("\n".join(lines)) from None
