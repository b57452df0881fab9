"""A deterministic, scriptable chat provider for tests and demos. No network, no randomness.

A script decides what the mock does. It comes from, in order of precedence:
1. the request's `provider_options.extra_body.mock` object (per request), or
2. a named scenario: the model name (`mock/<scenario>`), looked up in the built-in scenarios below
   merged with `options.scenarios` from the provider's settings.

Script fields (all optional):
    text (str)              answer text; default: echo of the last user text ("echo: ...").
    chunk_chars (int)       characters per streamed delta (default 8).
    delay_ms (float)        pause before each streamed event and before a unary answer.
    tool_calls (list)       [{"name": str, "arguments": object|str, "id": str}] -> finish TOOL_CALLS.
                            When the request ends with tool results, the mock answers with text
                            instead: `text_after_tools`, default "tool results: <contents>".
    error (object)          {"code": "RESOURCE_EXHAUSTED", "reason": "UPSTREAM_RATE_LIMITED",
                             "message": str, "retry_after_s": float} raised before any output.
    fail_after_chunks (int) streams this many text deltas, then dies (UPSTREAM_STREAM_INTERRUPTED).
    finish_reason (str)     homa FinishReason name without prefix, e.g. "LENGTH" (default STOP).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from google.protobuf import timestamp_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason, upstream_interrupted
from homa_server.providers._protojson import struct_to_dict
from homa_server.providers.base import CallContext
from homa_server.settings import ProviderSettings

BUILTIN_SCENARIOS: dict[str, dict[str, Any]] = {
    "echo": {},
    "slow": {"delay_ms": 200, "chunk_chars": 4},
    "tool": {"tool_calls": [{"id": "call_mock_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
    "rate-limited": {
        "error": {"code": "RESOURCE_EXHAUSTED", "reason": "UPSTREAM_RATE_LIMITED", "retry_after_s": 2.0}
    },
    "unavailable": {"error": {"code": "UNAVAILABLE", "reason": "UPSTREAM_UNAVAILABLE"}},
    "die-midway": {"text": "this answer will be cut off part way through", "fail_after_chunks": 2},
}

_FINISH = {
    name.removeprefix("FINISH_REASON_"): value
    for name, value in usage_pb2.FinishReason.items()
    if name != "FINISH_REASON_UNSPECIFIED"
}


def _last_user_text(request: chat_pb2.CompleteRequest) -> str:
    for message in reversed(request.messages):
        if message.role == content_pb2.ROLE_USER:
            return " ".join(part.text for part in message.parts if part.WhichOneof("kind") == "text")
    return ""


def _trailing_tool_results(request: chat_pb2.CompleteRequest) -> list[str]:
    """Contents of the tool results in the last message, when it is a tool message."""
    if not request.messages or request.messages[-1].role != content_pb2.ROLE_TOOL:
        return []
    return [part.tool_result.content for part in request.messages[-1].parts]


def _estimate_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def _input_tokens(request: chat_pb2.CompleteRequest) -> int:
    return sum(_estimate_tokens(part.text) + 4 for message in request.messages for part in message.parts)


class MockProvider:
    """The `mock` provider kind; see the module docstring for scripting."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        extra = settings.options.get("scenarios", {})
        if not isinstance(extra, Mapping):
            raise ValueError("mock options.scenarios must be a mapping of name -> script")
        self._scenarios: dict[str, dict[str, Any]] = {**BUILTIN_SCENARIOS, **extra}
        self._models = list(settings.models) or sorted(self._scenarios)

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return "mock"

    async def aclose(self) -> None:
        return None

    async def list_models(self) -> list[str]:
        return list(self._models)

    def _script(self, request: chat_pb2.CompleteRequest, ctx: CallContext) -> dict[str, Any]:
        if request.HasField("provider_options") and "mock" in request.provider_options.extra_body:
            script = struct_to_dict(request.provider_options.extra_body).get("mock")
            if isinstance(script, dict):
                return script
            raise GatewayError(
                "provider_options.extra_body.mock must be an object",
                Code.INVALID_ARGUMENT,
                Reason.INVALID_REQUEST,
            )
        scenario = self._scenarios.get(ctx.model)
        if scenario is None:
            raise GatewayError(
                f"mock has no scenario {ctx.model!r}; known: {', '.join(sorted(self._scenarios))}",
                Code.NOT_FOUND,
                Reason.MODEL_NOT_FOUND,
                metadata={"provider": self._name, "model": ctx.model},
            )
        return scenario

    def _raise_scripted_error(self, script: Mapping[str, Any]) -> None:
        spec = script.get("error")
        if not spec:
            return
        code = Code[str(spec.get("code", "UNAVAILABLE"))]
        reason = Reason(str(spec.get("reason", "UPSTREAM_ERROR")))
        retry_after = spec.get("retry_after_s")
        raise GatewayError(
            str(spec.get("message", f"mock scripted {code.name}")),
            code,
            reason,
            retryable=code in (Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED, Code.DEADLINE_EXCEEDED),
            retry_after=float(retry_after) if retry_after is not None else None,
            metadata={"provider": self._name},
        )

    @staticmethod
    def _tool_calls(script: Mapping[str, Any]) -> list[content_pb2.ToolCall]:
        calls = []
        for i, spec in enumerate(script.get("tool_calls") or []):
            arguments = spec.get("arguments", {})
            text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
            calls.append(
                content_pb2.ToolCall(
                    id=str(spec.get("id", f"call_mock_{i + 1}")), name=str(spec["name"]), arguments_json=text
                )
            )
        return calls

    @staticmethod
    def _completion_id(request: chat_pb2.CompleteRequest) -> str:
        digest = hashlib.blake2b(request.SerializeToString(deterministic=True), digest_size=8)
        return f"mock-{digest.hexdigest()}"

    def _plan(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> tuple[dict[str, Any], str, list[content_pb2.ToolCall], usage_pb2.FinishReason.ValueType]:
        script = self._script(request, ctx)
        self._raise_scripted_error(script)
        calls = self._tool_calls(script)
        results = _trailing_tool_results(request)
        if calls and results:
            # The caller answered the scripted tool calls: finish the turn with text, as a model would.
            calls = []
            script = {**script, "text": script.get("text_after_tools", f"tool results: {'; '.join(results)}")}
        text = script.get("text")
        if text is None:
            text = "" if calls else f"echo: {_last_user_text(request)}"
        finish = _FINISH["TOOL_CALLS"] if calls else _FINISH[str(script.get("finish_reason", "STOP"))]
        return script, str(text), calls, finish

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        script, text, calls, finish = self._plan(request, ctx)
        if script.get("fail_after_chunks") is not None:
            raise upstream_interrupted(self._name, "scripted failure")
        delay = float(script.get("delay_ms", 0)) / 1000
        if delay:
            await asyncio.sleep(delay)
        message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
        if text:
            message.parts.add(text=text)
        for call in calls:
            message.parts.add(tool_call=call)
        output = _estimate_tokens(text) + sum(_estimate_tokens(c.arguments_json) for c in calls)
        prompt = _input_tokens(request)
        return chat_pb2.CompleteResponse(
            id=self._completion_id(request),
            message=message,
            finish_reason=finish,
            raw_finish_reason=usage_pb2.FinishReason.Name(finish),
            usage=usage_pb2.Usage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output),
            create_time=timestamp_pb2.Timestamp(seconds=0),
        )

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        script, text, calls, finish = self._plan(request, ctx)
        delay = float(script.get("delay_ms", 0)) / 1000
        size = max(1, int(script.get("chunk_chars", 8)))
        fail_after = script.get("fail_after_chunks")
        prompt = _input_tokens(request)
        sent = 0
        for n, start in enumerate(range(0, len(text), size)):
            if fail_after is not None and n >= int(fail_after):
                raise upstream_interrupted(self._name, "scripted failure")
            if delay:
                await asyncio.sleep(delay)
            piece = text[start : start + size]
            sent += len(piece)
            yield chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=piece))
            output = _estimate_tokens(text[:sent])
            yield chat_pb2.StreamCompleteResponse(
                usage=usage_pb2.Usage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)
            )
        if fail_after is not None:
            raise upstream_interrupted(self._name, "scripted failure")
        for index, call in enumerate(calls):
            half = len(call.arguments_json) // 2
            for piece_no, piece in enumerate((call.arguments_json[:half], call.arguments_json[half:])):
                if delay:
                    await asyncio.sleep(delay)
                yield chat_pb2.StreamCompleteResponse(
                    tool_call_delta=chat_pb2.ToolCallDelta(
                        index=index,
                        id=call.id if piece_no == 0 else "",
                        name=call.name if piece_no == 0 else "",
                        arguments_json=piece,
                    )
                )
            yield chat_pb2.StreamCompleteResponse(tool_call=call)
        output = _estimate_tokens(text) + sum(_estimate_tokens(c.arguments_json) for c in calls)
        yield chat_pb2.StreamCompleteResponse(
            usage=usage_pb2.Usage(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)
        )
        yield chat_pb2.StreamCompleteResponse(
            finish=chat_pb2.Finish(
                reason=finish, raw_reason=usage_pb2.FinishReason.Name(finish), id=self._completion_id(request)
            )
        )
