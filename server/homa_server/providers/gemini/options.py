"""Gemini-specific settings (`providers.<name>.options`), validated once at construction.

| option             | default                       | meaning                                     |
|--------------------|-------------------------------|---------------------------------------------|
| `safety_settings`  | `[]` (Google's defaults)      | `safetySettings` sent with every request    |
| `effort_budgets`   | 512 / 1024 / 8192 / 24576     | `thinkingBudget` per `reasoning.effort`     |
| `models_page_size` | `1000`                        | `pageSize` when listing models (1-1000)     |

`effort_budgets` (keys minimal, low, medium, high) exists because Gemini 2.5 takes a token
budget, not an effort level. The defaults for low/medium/high are the ones Google's own
OpenAI-compatible endpoint uses for `reasoning_effort`; minimal is 512, the smallest budget
every 2.5 model accepts (Flash-Lite's floor; 0 would switch thinking off on Flash and be
rejected by Pro). An explicit
`reasoning.budget_tokens` in a request always wins over the effort mapping.

Unknown keys are errors, so a typo in the YAML file stops the server at start-up.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["EffortBudgets", "GeminiOptions", "SafetySetting", "parse_options"]

# The categories and thresholds the Gemini API accepts in `safetySettings` (discovery document,
# `SafetySetting`); the older PaLM categories in the same enum are rejected by Gemini models.
HarmCategory = Literal[
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
]
HarmBlockThreshold = Literal[
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafetySetting(_Strict):
    """One `safetySettings` entry."""

    category: HarmCategory
    threshold: HarmBlockThreshold


class EffortBudgets(_Strict):
    """`thinkingBudget` sent for each `reasoning.effort` level (tokens, >= 0; 0 disables thinking)."""

    minimal: int = Field(512, ge=0)
    low: int = Field(1024, ge=0)
    medium: int = Field(8192, ge=0)
    high: int = Field(24576, ge=0)


class GeminiOptions(_Strict):
    """The validated `options` mapping of one Gemini provider instance."""

    safety_settings: tuple[SafetySetting, ...] = ()
    effort_budgets: EffortBudgets = Field(default_factory=EffortBudgets)
    models_page_size: int = Field(1000, ge=1, le=1000)

    def safety_body(self) -> list[dict[str, str]]:
        """`safetySettings` as sent on the wire (empty when Google's defaults apply)."""
        return [{"category": s.category, "threshold": s.threshold} for s in self.safety_settings]


def parse_options(name: str, raw: dict[str, Any]) -> GeminiOptions:
    """Validate `raw` (the provider's `options`).

    Raises:
        ValueError: one line per problem, each naming the full option path, e.g.
            `providers.gemini.options.safety_settings.0.threshold: Input should be ...`.
    """
    try:
        return GeminiOptions.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"providers.{name}.options.{where}: {error['msg']}")
        raise ValueError("\n".join(lines)) from None
