"""`options:` of an `azure_openai` provider, validated once at construction.

```yaml
options:
  api_version: "2024-10-21"        # or a preview such as "2025-04-01-preview"
  deployments: {gpt-4o: prod-gpt4o} # homa model name -> deployment name (default: the same name)
  auth: api_key                     # or "entra": api_key holds an Entra ID access token
  max_tokens_field: max_completion_tokens   # or "max_tokens" for older model deployments
```

Unknown keys are errors (a typo must not silently change behaviour). Every problem is reported as
`ValueError("options.<path>: <problem>")`, which the registry reports at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from homa_server.providers.azure_openai.api_versions import DEFAULT_API_VERSION, surface_for

__all__ = ["AzureOpenAIOptions", "parse_options"]

# Azure deployment names: letters, digits, "-", "_" and ".", at most 64 characters.
_DEPLOYMENT = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AzureOpenAIOptions(BaseModel):
    """Vendor-specific settings of one Azure OpenAI provider instance.

    Attributes:
        api_version: sent as `?api-version=` on every call; selects the request surface (see
            `api_versions`). Default "2024-10-21" (GA).
        deployments: homa model name -> Azure deployment name. Models not listed are used as the
            deployment name themselves.
        auth: "api_key" sends `api-key: <api_key>`; "entra" sends `Authorization: Bearer <api_key>`,
            where `api_key` holds a Microsoft Entra ID access token obtained (and refreshed) outside
            the gateway.
        max_tokens_field: which body field carries `max_output_tokens`. Older model deployments
            (gpt-35-turbo, gpt-4 0613) only know `max_tokens`; reasoning models only
            `max_completion_tokens`, the default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: str = DEFAULT_API_VERSION
    deployments: dict[str, str] = Field(default_factory=dict)
    auth: Literal["api_key", "entra"] = "api_key"
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        surface_for(value)  # raises ValueError with the reason
        return value

    @field_validator("deployments")
    @classmethod
    def _deployment_names(cls, value: dict[str, str]) -> dict[str, str]:
        for model, deployment in value.items():
            if not model:
                raise ValueError("model names must not be empty")
            if not _DEPLOYMENT.fullmatch(deployment):
                raise ValueError(
                    f"{model}: deployment names are 1-64 letters, digits, '-', '_' or '.', not {deployment!r}"
                )
        return value


def parse_options(options: Mapping[str, Any]) -> AzureOpenAIOptions:
    """Validate a provider's `options` mapping.

    Raises:
        ValueError: one line per problem, each starting with `options.<path>:`.
    """
    try:
        return AzureOpenAIOptions.model_validate(dict(options))
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"options.{path}: {message}")
        raise ValueError("\n".join(lines)) from None
