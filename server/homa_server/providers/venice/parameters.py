"""`provider_options.venice` (homa `VeniceParameters`) -> Venice request fields, checked first.

Fields 1-8 go into the `venice_parameters` object, over the deployment defaults from the provider
options (a field the request sets wins; unset fields keep the default or are not sent). Fields 9-12
(`min_p`, `repetition_penalty`, `min_temp`, `max_temp`) are top-level body fields. Every value is
checked against the ranges of Venice's `ChatCompletionRequest` schema, so a bad value is
INVALID_ARGUMENT naming `provider_options.venice.<field>` and never reaches Venice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.errors import invalid_field

__all__ = ["VeniceFields", "venice_fields"]

_FIELD = "provider_options.venice"
WEB_SEARCH_MODES = frozenset({"auto", "on", "off"})
_BOOLEANS: tuple[
    Literal[
        "include_venice_system_prompt",
        "strip_thinking_response",
        "disable_thinking",
        "enable_web_citations",
        "include_search_results_in_stream",
        "enable_web_scraping",
    ],
    ...,
] = (
    "include_venice_system_prompt",
    "strip_thinking_response",
    "disable_thinking",
    "enable_web_citations",
    "include_search_results_in_stream",
    "enable_web_scraping",
)
# (name, minimum, maximum or None) from the spec's ChatCompletionRequest.
_SAMPLING: tuple[
    tuple[Literal["min_p", "repetition_penalty", "min_temp", "max_temp"], float, float | None], ...
] = (
    ("min_p", 0.0, 1.0),
    ("repetition_penalty", 0.0, None),
    ("min_temp", 0.0, 2.0),
    ("max_temp", 0.0, 2.0),
)


class VeniceFields:
    """What `provider_options.venice` adds to a request body.

    Attributes:
        parameters: the `venice_parameters` object (defaults merged), empty when nothing is set.
        top_level: extra top-level sampling fields (`min_p`, ...).
    """

    __slots__ = ("parameters", "top_level")

    def __init__(self, parameters: dict[str, Any], top_level: dict[str, Any]) -> None:
        self.parameters = parameters
        self.top_level = top_level

    def flag(self, name: str) -> bool:
        """The effective value of a boolean `venice_parameters` field (False when unset)."""
        return self.parameters.get(name) is True


def venice_fields(params: chat_pb2.VeniceParameters, defaults: Mapping[str, Any]) -> VeniceFields:
    """Check `params` and split it into `venice_parameters` and top-level fields.

    Args:
        params: the request's `provider_options.venice`.
        defaults: the deployment's default `venice_parameters` (already validated).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the bad `provider_options.venice.<field>`.
    """
    parameters = dict(defaults)
    mode = params.enable_web_search
    if mode:
        if mode not in WEB_SEARCH_MODES:
            raise invalid_field(f"{_FIELD}.enable_web_search", 'must be "auto", "on" or "off"')
        parameters["enable_web_search"] = mode
    slug = params.character_slug
    if slug:
        if slug.strip() != slug or not slug.isprintable():
            raise invalid_field(
                f"{_FIELD}.character_slug", "must be a character's public id, without spaces around it"
            )
        parameters["character_slug"] = slug
    for flag in _BOOLEANS:
        if params.HasField(flag):
            parameters[flag] = getattr(params, flag)

    top_level: dict[str, Any] = {}
    for name, low, high in _SAMPLING:
        if not params.HasField(name):
            continue
        value = getattr(params, name)
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise invalid_field(f"{_FIELD}.{name}", f"must be {bound}")
        top_level[name] = value
    if "min_temp" in top_level and "max_temp" in top_level and top_level["min_temp"] > top_level["max_temp"]:
        raise invalid_field(f"{_FIELD}.min_temp", "must not be greater than max_temp")
    return VeniceFields(parameters, top_level)
