"""homa `CompleteRequest` -> Venice `ChatCompletionRequest` body (`POST /chat/completions`).

Venice speaks the OpenAI chat dialect, so the OpenAI builder (`openai.chat_request.build_chat_body`)
produces everything but the messages: tools, tool choice, parallel calls, response format, sampling,
`reasoning_effort`, `user`, `stream`/`stream_options`. It runs on a *shadow* request that carries
those fields only (not the messages, whose media would be encoded twice), with `top_k` cleared:
OpenAI has no top-k and the builder rejects it, Venice has one, so it is added back afterwards. The
messages come from `messages.venice_messages`, and `provider_options.venice` from `parameters`.

Every field is checked against the ranges of Venice's spec before anything is sent (temperature
0-2, top_p 0-1, penalties -2..2, seed > 0, top_k >= 0, at most 4 stop sequences), so out-of-range
values are INVALID_ARGUMENT naming the field rather than an upstream 400 that also counts against
Venice's failed-request budget.

`provider_options.extra_body` is merged under the body (fields the adapter sets win), but only
fields of Venice's request schema are accepted: the schema is strict (`additionalProperties: false`)
and Venice answers anything else with 400, so an unknown field is INVALID_ARGUMENT here. `stream`
and `n` are dropped from it (they would change the protocol the adapter parses); a `venice_parameters`
object in it is merged under the typed one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import invalid_field
from homa_server.providers._protojson import struct_to_dict
from homa_server.providers.openai.chat_request import build_chat_body
from homa_server.providers.openai.validation import validate_messages
from homa_server.providers.venice.messages import venice_messages
from homa_server.providers.venice.parameters import VeniceFields, venice_fields

__all__ = ["REQUEST_FIELDS", "VeniceBody", "build_venice_body"]

# Top-level properties of the spec's ChatCompletionRequest (additionalProperties: false).
REQUEST_FIELDS = frozenset(
    {
        "frequency_penalty", "logprobs", "top_logprobs", "max_completion_tokens", "max_temp",
        "max_tokens", "messages", "min_p", "min_temp", "model", "n", "presence_penalty",
        "prompt_cache_key", "prompt_cache_retention", "repetition_penalty", "reasoning",
        "reasoning_effort", "seed", "stop", "stop_token_ids", "stream", "stream_options",
        "temperature", "top_k", "top_p", "user", "fallbacks", "store", "verbosity", "text",
        "include", "metadata", "venice_parameters", "parallel_tool_calls", "response_format",
        "tool_choice", "tools",
    }
)  # fmt: skip
_PROTOCOL_FIELDS = ("stream", "n")
_MAX_STOP = 4
# (field, minimum, maximum) from the spec.
_RANGES: tuple[
    tuple[Literal["temperature", "top_p", "presence_penalty", "frequency_penalty"], float, float], ...
] = (
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
)
# Fields of CompleteRequest the OpenAI builder reads besides the messages.
_SCALARS: tuple[
    Literal["temperature", "top_p", "max_output_tokens", "seed", "presence_penalty", "frequency_penalty"], ...
] = ("temperature", "top_p", "max_output_tokens", "seed", "presence_penalty", "frequency_penalty")
_PLACEHOLDER = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text=".")])


class VeniceBody:
    """A built request body and the Venice flags the response decoding depends on."""

    __slots__ = ("body", "fields")

    def __init__(self, body: dict[str, Any], fields: VeniceFields) -> None:
        self.body = body
        self.fields = fields


def build_venice_body(
    request: chat_pb2.CompleteRequest, model: str, *, stream: bool, defaults: Mapping[str, Any]
) -> VeniceBody:
    """Translate `request` into a Venice chat body for `model`.

    Args:
        request: the homa request (StreamCompleteRequest is wire-identical; convert it first).
        model: the Venice model id chosen by routing (feature suffixes such as `:enable_web_search=on`
            are the caller's business and pass through).
        stream: ask for an SSE stream (with usage).
        defaults: the deployment's default `venice_parameters` (provider options).

    Raises:
        GatewayError: INVALID_ARGUMENT naming the offending field; nothing has been sent yet.
    """
    validate_messages(request.messages)
    _check_sampling(request)
    fields = venice_fields(request.provider_options.venice, defaults)
    body = build_chat_body(_shadow(request), model, stream=stream)
    body["messages"] = venice_messages(request.messages)
    if request.HasField("top_k"):
        body["top_k"] = request.top_k
    body.update(fields.top_level)
    if fields.parameters:
        body["venice_parameters"] = fields.parameters
    if request.provider_options.HasField("extra_body"):
        body = _merge_extra(struct_to_dict(request.provider_options.extra_body), body)
    return VeniceBody(body, fields)


def _check_sampling(request: chat_pb2.CompleteRequest) -> None:
    for name, low, high in _RANGES:
        if request.HasField(name):
            value = getattr(request, name)
            if not math.isfinite(value) or not low <= value <= high:
                raise invalid_field(name, f"Venice accepts values between {low:g} and {high:g}")
    if request.HasField("seed") and request.seed <= 0:
        raise invalid_field("seed", "Venice requires a positive seed")
    if request.HasField("top_k") and request.top_k < 0:
        raise invalid_field("top_k", "must not be negative")
    if len(request.stop) > _MAX_STOP:
        raise invalid_field("stop", f"Venice accepts at most {_MAX_STOP} stop sequences")


def _shadow(request: chat_pb2.CompleteRequest) -> chat_pb2.CompleteRequest:
    """The request as the OpenAI builder should see it: no messages (a placeholder satisfies its
    checks), no top_k, no provider options (handled here)."""
    shadow = chat_pb2.CompleteRequest(
        messages=[_PLACEHOLDER],
        tools=request.tools,
        tool_choice=request.tool_choice,
        response_format=request.response_format,
        stop=request.stop,
        reasoning=request.reasoning,
        user=request.user,
    )
    for name in _SCALARS:
        if request.HasField(name):
            setattr(shadow, name, getattr(request, name))
    if request.HasField("parallel_tool_calls"):
        shadow.parallel_tool_calls = request.parallel_tool_calls
    if not request.HasField("response_format"):
        shadow.ClearField("response_format")
    return shadow


def _merge_extra(extra: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    for name in sorted(extra):
        if name not in REQUEST_FIELDS:
            raise invalid_field(f"provider_options.extra_body.{name}", "Venice's chat API has no such field")
    for name in _PROTOCOL_FIELDS:
        extra.pop(name, None)
    extra_parameters = extra.pop("venice_parameters", None)
    if extra_parameters is not None and not isinstance(extra_parameters, dict):
        raise invalid_field("provider_options.extra_body.venice_parameters", "must be an object")
    stream_options = extra.pop("stream_options", None)
    extra.update(body)
    if extra_parameters:
        extra["venice_parameters"] = {**extra_parameters, **body.get("venice_parameters", {})}
    if "stream_options" in body and isinstance(stream_options, dict):
        extra["stream_options"] = {**stream_options, **body["stream_options"]}
    return extra
