"""Venice-specific settings (`providers.<name>.options`), validated once at construction.

| option              | default | meaning                                                              |
|---------------------|---------|----------------------------------------------------------------------|
| `venice_parameters` | `{}`    | deployment defaults for `venice_parameters` (same keys as the typed   |
|                     |         | `provider_options.venice` fields 1-8); a request's own values win     |
| `parse_think_tags`  | `true`  | split a `<think>…</think>` block that opens the answer into a        |
|                     |         | Reasoning part (off: the text is passed through unchanged)           |

Example: `venice_parameters: {include_venice_system_prompt: false}` stops Venice from prepending its
own system prompt on every call of this deployment, which is what a gateway usually wants.

Unknown keys are errors, so a typo in the YAML file stops the server at start-up instead of being
ignored. `enable_web_search` also accepts YAML 1.1 booleans: an unquoted `on`/`off` in a YAML file
arrives as `true`/`false`, and means "on"/"off".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["VeniceOptions", "VeniceParameterDefaults", "parse_options"]


class VeniceParameterDefaults(BaseModel):
    """Default `venice_parameters` of one deployment; unset fields are not sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enable_web_search: Literal["auto", "on", "off"] | None = None
    include_venice_system_prompt: bool | None = None
    strip_thinking_response: bool | None = None
    disable_thinking: bool | None = None
    character_slug: str | None = Field(None, min_length=1)
    enable_web_citations: bool | None = None
    include_search_results_in_stream: bool | None = None
    enable_web_scraping: bool | None = None

    @field_validator("enable_web_search", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `on`/`off` as a boolean.
        if value is True:
            return "on"
        if value is False:
            return "off"
        return value

    def as_body(self) -> dict[str, Any]:
        """The set fields, as they go into `venice_parameters`."""
        return self.model_dump(exclude_none=True)


class VeniceOptions(BaseModel):
    """The validated `options` mapping of one Venice provider instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    venice_parameters: VeniceParameterDefaults = Field(default_factory=VeniceParameterDefaults)
    parse_think_tags: bool = True


def parse_options(name: str, raw: dict[str, Any]) -> VeniceOptions:
    """Validate `raw` (the provider's `options`).

    Raises:
        ValueError: one line per problem, each naming the full option path, e.g.
            `providers.venice.options.venice_parameters.enable_web_search: Input should be 'auto', ...`.
    """
    try:
        return VeniceOptions.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"providers.{name}.options.{where}: {error['msg']}")
        raise ValueError("\n".join(lines)) from None
