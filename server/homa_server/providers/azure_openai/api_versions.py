"""What each Azure OpenAI data-plane `api-version` accepts in a chat completions body.

The adapter is checked against two published specs (provider-specs/azure-openai): the GA
`2024-10-21` and `2025-04-01-preview`. Every `api-version` the adapter accepts is mapped to one of
them, conservatively: GA versions from 2024-10-21 on use the GA surface, preview versions from
2025-04-01-preview on use the preview surface. Older versions are refused at start-up because no
spec here describes them (api-version is chosen per request, so any resource accepts a newer one).

`fields` are the top-level body properties the spec declares for
`POST /deployments/{deployment-id}/chat/completions` (`createChatCompletionRequest` with its
`chatCompletionsRequestCommon` base). The spec does not forbid other properties, but Azure rejects
unknown ones, so nothing outside `fields` is ever sent. A test compares these sets with the specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_API_VERSION", "PREVIEW_2025_04_01", "STABLE_2024_10_21", "ApiSurface", "surface_for"]

DEFAULT_API_VERSION = "2024-10-21"

_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?")
_OLDEST_STABLE = "2024-10-21"
_OLDEST_PREVIEW = "2025-04-01"

_STABLE_FIELDS = frozenset(
    {
        "data_sources",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "n",
        "parallel_tool_calls",
        "presence_penalty",
        "response_format",
        "seed",
        "stop",
        "stream",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
    }
)

_PREVIEW_FIELDS = _STABLE_FIELDS | {
    "audio",
    "metadata",
    "modalities",
    "prediction",
    "reasoning_effort",
    "store",
    "stream_options",
    "user_security_context",
}


@dataclass(frozen=True, slots=True)
class ApiSurface:
    """The chat-completions features of one spec revision.

    Attributes:
        spec: the spec revision this surface was taken from (its own api-version).
        fields: top-level request properties the spec declares.
        reasoning_efforts: accepted `reasoning_effort` values (empty: the field does not exist).
        developer_role: `role: "developer"` messages exist.
        audio_input: user `input_audio` content parts exist.
        stream_usage: `stream_options.include_usage` exists (usage on streams).
    """

    spec: str
    fields: frozenset[str]
    reasoning_efforts: frozenset[str]
    developer_role: bool
    audio_input: bool
    stream_usage: bool


STABLE_2024_10_21 = ApiSurface(
    spec="2024-10-21",
    fields=_STABLE_FIELDS,
    reasoning_efforts=frozenset(),
    developer_role=False,
    audio_input=False,
    stream_usage=False,
)

PREVIEW_2025_04_01 = ApiSurface(
    spec="2025-04-01-preview",
    fields=_PREVIEW_FIELDS,
    reasoning_efforts=frozenset({"low", "medium", "high"}),
    developer_role=True,
    audio_input=True,
    stream_usage=True,
)


def surface_for(api_version: str) -> ApiSurface:
    """The surface to use for `api_version` ("2024-10-21", "2025-04-01-preview", ...).

    Raises:
        ValueError: malformed, or older than the oldest spec the adapter is checked against.
    """
    match = _VERSION.fullmatch(api_version)
    if match is None:
        raise ValueError(f"{api_version!r} is not an Azure OpenAI api-version (YYYY-MM-DD[-preview])")
    date, preview = match.group(1), match.group(2) is not None
    if preview:
        if date < _OLDEST_PREVIEW:
            raise ValueError(f"preview api-versions before {_OLDEST_PREVIEW}-preview are not supported")
        return PREVIEW_2025_04_01
    if date < _OLDEST_STABLE:
        raise ValueError(f"api-versions before {_OLDEST_STABLE} are not supported")
    return STABLE_2024_10_21
