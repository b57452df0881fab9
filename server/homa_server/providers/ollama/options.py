"""Ollama-specific provider settings (`providers.<name>.options`), validated at construction.

```yaml
providers:
  ollama:
    kind: ollama
    base_url: http://localhost:11434
    options:
      keep_alive: 10m              # Go duration, or seconds as a number; negative = keep loaded
      model_options:               # Modelfile parameters sent as defaults in every request's `options`
        num_ctx: 8192
        repeat_penalty: 1.1
      rate_limit_retry_after_s: 1  # RetryInfo hint for a 429 that carries no Retry-After
```

Every model is `extra="forbid"`, so a misspelt key fails at start-up instead of being ignored;
`parse_options` turns pydantic's errors into one `ValueError` naming the option path
(`providers.ollama.options.model_options.num_ctx: ...`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

__all__ = ["ModelOptions", "OllamaOptions", "parse_options"]

# A Go `time.ParseDuration` string, which is what Ollama's server parses `keep_alive` with
# ("5m", "1h30m", "-1s", "0"). Compiled once; only used while validating settings.
_GO_DURATION = re.compile(r"[-+]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelOptions(_Strict):
    """Ollama runtime options (api.md "valid parameters"), used as per-request defaults.

    The request's own sampling fields (temperature, top_p, top_k, max_output_tokens, stop, seed,
    penalties) override these. Unknown names are rejected here because Ollama itself only logs and
    ignores them.
    """

    num_keep: StrictInt | None = None
    seed: StrictInt | None = None
    num_predict: StrictInt | None = None
    draft_num_predict: StrictInt | None = Field(None, ge=0)
    top_k: StrictInt | None = Field(None, ge=0)
    top_p: StrictFloat | None = Field(None, ge=0, le=1)
    min_p: StrictFloat | None = Field(None, ge=0, le=1)
    typical_p: StrictFloat | None = Field(None, ge=0, le=1)
    repeat_last_n: StrictInt | None = Field(None, ge=-1)
    temperature: StrictFloat | None = Field(None, ge=0)
    repeat_penalty: StrictFloat | None = Field(None, ge=0)
    presence_penalty: StrictFloat | None = None
    frequency_penalty: StrictFloat | None = None
    penalize_newline: StrictBool | None = None
    stop: list[StrictStr] | None = None
    numa: StrictBool | None = None
    num_ctx: StrictInt | None = Field(None, ge=1)
    num_batch: StrictInt | None = Field(None, ge=1)
    num_gpu: StrictInt | None = Field(None, ge=-1)
    main_gpu: StrictInt | None = Field(None, ge=0)
    use_mmap: StrictBool | None = None
    num_thread: StrictInt | None = Field(None, ge=0)

    def as_wire(self) -> dict[str, Any]:
        """The options that were set, as Ollama's `options` object."""
        return self.model_dump(exclude_none=True)


class OllamaOptions(_Strict):
    """Everything `providers.<name>.options` may hold for kind "ollama".

    Attributes:
        keep_alive: how long Ollama keeps the model loaded after a call (`keep_alive` on every
            request): a Go duration string ("10m", "-1" is not one: use "-1s") or seconds as a
            number (negative = forever, 0 = unload at once). Unset = the server's default (5m).
        model_options: default runtime options (see `ModelOptions`).
        rate_limit_retry_after_s: the retry delay reported for an HTTP 429 without `Retry-After`
            (Ollama documents no rate-limit headers). None = report no delay.
    """

    keep_alive: str | int | float | None = None
    model_options: ModelOptions = Field(default_factory=ModelOptions)
    rate_limit_retry_after_s: StrictFloat | None = Field(1.0, ge=0)

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> Any:
        # One check instead of a pydantic union, whose errors would name every member type.
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        if isinstance(value, str) and _GO_DURATION.fullmatch(value):
            return value
        raise ValueError('must be a Go duration such as "5m", "1h30m" or "-1s", or a number of seconds')


def parse_options(name: str, options: dict[str, Any]) -> OllamaOptions:
    """Validate `options` of provider instance `name`.

    Raises:
        ValueError: one line per problem, each starting with the option's path, for example
            `providers.ollama.options.model_options.num_ctx: Input should be a valid integer`.
    """
    try:
        return OllamaOptions.model_validate(options)
    except ValidationError as exc:
        problems = [
            f"providers.{name}.options.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ValueError("\n".join(problems)) from None
