"""Cohere-specific settings (`ProviderSettings.options`), validated once when the provider is built.

- `client_name` (printable ASCII, 1-256 chars): the `X-Client-Name` header on every request.
- `safety_mode` (`CONTEXTUAL`, `STRICT` or `OFF`): `safety_mode` on every chat request.
- `citation_mode` (`ENABLED`, `DISABLED`, `FAST`, `ACCURATE` or `OFF`): `citation_options.mode` on
  every chat request.
- `priority` (0-999, 0 is Cohere's highest): `priority` on every chat request.
- `models_page_size` (1-1000, default 1000): `page_size` of the `GET /v1/models` listing.

A request can override the body options through `provider_options.extra_body`.

Unknown keys are errors (a typo must not be silently ignored). Bad values raise `ValueError` whose
message names the option path, for example `options.safety_mode: Input should be 'CONTEXTUAL', ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["CohereOptions", "parse_options"]


class CohereOptions(BaseModel):
    """The validated `options` of a Cohere provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Printable ASCII only: the value becomes an HTTP header, where CR/LF would split the header.
    client_name: str | None = Field(None, min_length=1, max_length=256, pattern=r"^[\x20-\x7e]+$")
    safety_mode: Literal["CONTEXTUAL", "STRICT", "OFF"] | None = None
    citation_mode: Literal["ENABLED", "DISABLED", "FAST", "ACCURATE", "OFF"] | None = None
    priority: int | None = Field(None, ge=0, le=999)
    models_page_size: int = Field(1000, ge=1, le=1000)

    def body_defaults(self) -> dict[str, Any]:
        """Top-level chat body fields these options add to every request (built once)."""
        defaults: dict[str, Any] = {}
        if self.safety_mode is not None:
            defaults["safety_mode"] = self.safety_mode
        if self.citation_mode is not None:
            defaults["citation_options"] = {"mode": self.citation_mode}
        if self.priority is not None:
            defaults["priority"] = self.priority
        return defaults


def parse_options(raw: Mapping[str, Any]) -> CohereOptions:
    """Validate `ProviderSettings.options` for a Cohere provider.

    Raises:
        ValueError: one `options.<path>: <problem>` entry per invalid or unknown option.
    """
    try:
        return CohereOptions.model_validate(dict(raw))
    except ValidationError as exc:
        problems = [
            f"options.{'.'.join(str(item) for item in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ValueError("; ".join(problems)) from None
