"""A spec-faithful fake of the Venice AI API on 127.0.0.1, for adapter tests, plus its pytest fixtures.

A real HTTP/1.1 server (uvicorn + Starlette) in its own thread and event loop, like the OpenAI fake,
so it sees client disconnects exactly as Venice would. It sends Venice's bytes: `application/json`
chat completions with `venice_parameters` and `cost`, `text/event-stream` with `data: <json>\\n\\n`
chunks, the usage in a `choices: []` chunk before `data: [DONE]` (Venice sends it even without
`stream_options`), in-band `{"error": {...}}` chunks followed by `[DONE]`, error bodies in all three
Venice shapes (`{"error": "..."}`, with `details`/`issues`, and OpenAI-style objects), and the
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers (requests reset as a Unix timestamp,
tokens reset in seconds) plus `x-venice-version` on every answer.

Scripting: `enqueue(reply, ...)` queues replies, served in order to the next requests (any path).
With an empty queue, chat answers a short text (streamed or not) and `/models` a model list.

Checking: every request to a Venice path is validated against the official spec with openapi-core
(`tests/providers/venice_spec.py`, as `https://api.venice.ai/api/v1/...`); an invalid one is answered
400 with Venice's `DetailedError` body and recorded in `validation_errors`. A request without a
Bearer key is answered 401 `{"error": "Authentication failed"}` (Venice's no-credentials 402 body
cannot be produced: its spec schema requires a `resource.description` it also forbids). Every reply
(JSON bodies, each stream chunk) is checked against the spec's schemas; drift lands in
`response_errors`. The `venice_fake` fixture fails the test when either list is not empty.

Records: `requests` (method, path, query, headers, parsed JSON body, time, client port) and
`disconnects` (a client that went away before a streamed reply finished, with `time.monotonic()`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Literal

import orjson
import pytest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.providers.venice import VeniceProvider
from homa_server.settings import ProviderSettings
from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    RecordedRequest,
    Reply,
    ReplySender,
    checked,
    json_reply,
    read_request,
)
from tests.providers.fakes.openai_embeddings import embeddings_payload
from tests.providers.venice_spec import (
    BASE_PATH,
    is_security_problem,
    validate_venice_request,
    validate_venice_schema,
    venice_api,
)

__all__ = [
    "CREATED",
    "MODEL",
    "USAGE",
    "VENICE_TEST_KEY",
    "Disconnect",
    "FakeVenice",
    "RecordedRequest",
    "Reply",
    "chunk",
    "completion",
    "error_reply",
    "json_reply",
    "openai_style_error",
    "rate_limited_reply",
    "sse_reply",
    "text_stream",
    "tool_calls_stream",
    "venice_settings",
]

VENICE_TEST_KEY = "VENICE-INFERENCE-KEY-fake0123456789abcdef"
DONE_FRAME = b"data: [DONE]\n\n"
CREATED = 1739928524
MODEL = "zai-org-glm-5-1"
VERSION = "20260821.193530"  # info.version of the spec the fake follows
USAGE = {
    "completion_tokens": 146,
    "completion_tokens_details": None,
    "prompt_tokens": 612,
    "prompt_tokens_details": None,
    "total_tokens": 758,
}
COST = {"diem": 0, "usd": 0.00042}
_CHAT_PATH = f"{BASE_PATH}/chat/completions"
_MODELS_PATH = f"{BASE_PATH}/models"
_EMBEDDINGS_PATH = f"{BASE_PATH}/embeddings"
_VENICE_PATHS = (_CHAT_PATH, _MODELS_PATH, _EMBEDDINGS_PATH)
_ERROR_SCHEMAS = {
    400: "DetailedError",
    413: "PayloadTooLargeError",
    422: "ContentViolationError",
}


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


def venice_parameters(citations: Sequence[dict[str, Any]] = (), **overrides: Any) -> dict[str, Any]:
    """The `venice_parameters` echo of a completion (the request's effective settings)."""
    values: dict[str, Any] = {
        "enable_e2ee": True,
        "include_venice_system_prompt": True,
        "include_search_results_in_stream": False,
        "return_search_results_as_documents": False,
        "web_search_citations": list(citations),
        "enable_web_search": "off",
        "enable_web_scraping": False,
        "enable_web_citations": False,
        "strip_thinking_response": False,
        "disable_thinking": False,
    }
    values.update(overrides)
    return values


def completion(
    content: str | None = "Hello there!",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    reasoning: str | None = None,
    reasoning_details: list[dict[str, Any]] | None = None,
    thought_signature: str | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    citations: Sequence[dict[str, Any]] = (),
    completion_id: str = "chatcmpl-a81fbc2d81a7a083bb83ccf9f44c6e5e",
) -> dict[str, Any]:
    """A Venice chat completion (the spec's example shape); `tool_calls` are (id, name, args)."""
    message: dict[str, Any] = {
        "content": content,
        "reasoning_content": reasoning,
        "role": "assistant",
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in tool_calls
        ],
    }
    if reasoning_details is not None:
        message["reasoning_details"] = reasoning_details
    if thought_signature is not None:
        message["thought_signature"] = thought_signature
    return {
        "choices": [
            {
                "finish_reason": finish_reason,
                "index": 0,
                "logprobs": None,
                "message": message,
                "stop_reason": None,
            }
        ],
        "created": CREATED,
        "cost": COST,
        "id": completion_id,
        "model": MODEL,
        "object": "chat.completion",
        "prompt_logprobs": None,
        "usage": USAGE if usage is None else usage,
        "venice_parameters": venice_parameters(citations),
    }


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    completion_id: str = "chatcmpl-venice-fx1",
) -> dict[str, Any]:
    """A `chat.completion.chunk`; without `delta` it is a `choices: []` chunk (usage, citations)."""
    event: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
    }
    if delta is not None:
        event["choices"].append(
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        )
    if usage is not None:
        event["usage"] = usage
        event["cost"] = COST
    if extra:
        event.update(extra)
    return event


def sse_reply(
    events: Iterable[dict[str, Any] | bytes],
    *,
    done: bool = True,
    delay: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A streamed answer: dicts become `data: <json>\\n\\n` frames, bytes are sent verbatim."""
    frames = [
        item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + b"\n\n" for item in events
    ]
    if done:
        frames.append(DONE_FRAME)
    return Reply(frames=frames, content_type="text/event-stream", delay=delay, end=end, validate=validate)


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed text as Venice sends it: role chunk, content chunks, finish chunk, usage chunk."""
    events: list[dict[str, Any] | bytes] = [chunk({"role": "assistant", "content": ""})]
    events.extend(chunk({"content": piece}) for piece in pieces)
    events.append(chunk({}, finish_reason=finish_reason))
    events.append(chunk(usage=USAGE if usage is None else usage))
    return sse_reply(events, **options)


def tool_calls_stream(
    calls: Sequence[tuple[str, str, Sequence[str]]], *, usage: dict[str, Any] | None = None, **options: Any
) -> Reply:
    """Streamed (parallel) tool calls: (id, name, argument pieces) per call, fragments per index."""
    events: list[dict[str, Any] | bytes] = []
    for index, (call_id, name, pieces) in enumerate(calls):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        delta: dict[str, Any] = {"tool_calls": [head]}
        if index == 0:
            delta = {"role": "assistant", "content": None, "tool_calls": [head]}
        events.append(chunk(delta))
        events.extend(chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in pieces)
    events.append(chunk({}, finish_reason="tool_calls"))
    events.append(chunk(usage=USAGE if usage is None else usage))
    return sse_reply(events, **options)


def error_reply(status: int, message: str, headers: dict[str, str] | None = None, **fields: Any) -> Reply:
    """A Venice error body `{"error": message, ...fields}` (StandardError / DetailedError / ...)."""
    return json_reply({"error": message, **fields}, status, headers)


def openai_style_error(
    status: int, message: str, *, error_type: str, code: str | None = None, param: str | None = None
) -> Reply:
    """The OpenAI-style error object Venice uses for some cases (context overflow)."""
    return json_reply(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}, status
    )


def rate_limited_reply(*, exhausted: Literal["requests", "tokens"] = "requests", reset_in: int = 20) -> Reply:
    """429 "Rate limit exceeded" with Venice's headers: the `exhausted` limit is at 0 and resets
    in `reset_in` seconds (requests: as a Unix timestamp; tokens: as seconds)."""
    headers = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "0" if exhausted == "requests" else "12",
        "x-ratelimit-reset-requests": str(int(time.time()) + (reset_in if exhausted == "requests" else 60)),
        "x-ratelimit-limit-tokens": "500000",
        "x-ratelimit-remaining-tokens": "0" if exhausted == "tokens" else "480000",
        "x-ratelimit-reset-tokens": str(reset_in if exhausted == "tokens" else 60),
    }
    return error_reply(429, "Rate limit exceeded", headers)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeVenice(FakeServer[Reply, RecordedRequest]):
    """The fake server. Start with `start()`, stop with `stop()`."""

    label = "Venice"

    def routes(self) -> list[BaseRoute]:
        return [
            Route(_CHAT_PATH, self._venice, methods=["POST"]),
            Route(_MODELS_PATH, self._venice, methods=["GET"]),
            Route(_EMBEDDINGS_PATH, self._venice, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>/api/v1`)."""
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    # -- handlers ---------------------------------------------------------------------------

    async def _venice(self, request: Request) -> Response:
        record = self._record(await read_request(request))
        method, path, query, headers = record.method, record.path, record.query, record.headers
        problems = validate_venice_request(
            method,
            path,
            record.raw or None,
            headers,
            query=query,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        if problems:
            self._add_validation_errors([f"{method} {path}: {p}" for p in problems])
            if is_security_problem(problems[0]):
                return _Sender(self, path, error_reply(401, "Authentication failed"))
            issue = {"code": "custom", "path": [], "message": problems[0].splitlines()[0][:200]}
            invalid = error_reply(
                400, "Invalid request parameters", details={"_errors": [issue["message"]]}, issues=[issue]
            )
            return _Sender(self, path, invalid)
        reply = self._next_reply()
        if reply is None:
            reply = self._default(path, record.body)
        return _Sender(self, path, reply)

    def _default(self, path: str, body: Any) -> Reply:
        if path == _MODELS_PATH:
            return json_reply(model_list(["zai-org-glm-5-1", "qwen3-4b", "venice-uncensored"]))
        if path == _EMBEDDINGS_PATH:
            return json_reply(embeddings_payload(body, default_dims=1024))
        stream = isinstance(body, dict) and body.get("stream") is True
        return text_stream() if stream else json_reply(completion())

    async def _unknown(self, request: Request) -> Response:
        return _Sender(self, request.url.path, error_reply(404, "Not Found"), check=False)

    def _check_reply(self, path: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for frame in reply.frames:
                if not frame.startswith(b"data: ") or frame == DONE_FRAME:
                    continue
                event = orjson.loads(frame[6:])
                schema = "OpenAIStyleError" if "error" in event else "ChatCompletionChunk"
                problems.extend(validate_venice_schema(schema, event))
        elif reply.status >= 400:
            payload = orjson.loads(reply.body)
            if isinstance(payload.get("error"), dict):
                schema = "OpenAIStyleError"
            else:
                schema = _ERROR_SCHEMAS.get(reply.status, "StandardError")
            problems = validate_venice_schema(schema, payload)
        else:
            schema = {_MODELS_PATH: "ModelList", _EMBEDDINGS_PATH: "EmbeddingList"}.get(
                path, "ChatCompletion"
            )
            problems = validate_venice_schema(schema, orjson.loads(reply.body))
        self._add_response_errors(path, problems)


def model_list(ids: Sequence[str]) -> dict[str, Any]:
    """A `GET /models?type=text` answer listing `ids`."""
    data = [
        {
            "id": model_id,
            "object": "model",
            "owned_by": "venice.ai",
            "type": "text",
            "created": CREATED,
            "context_length": 131072,
            "model_spec": {"privacy": "private", "availableContextTokens": 131072, "name": model_id},
        }
        for model_id in ids
    ]
    return {"object": "list", "type": "text", "data": data}


def rate_headers() -> dict[str, str]:
    """The rate-limit headers Venice sends on every answer (a limit with room left)."""
    return {
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "49",
        "x-ratelimit-reset-requests": str(int(time.time()) + 60),
        "x-ratelimit-limit-tokens": "750000",
        "x-ratelimit-remaining-tokens": "749000",
        "x-ratelimit-reset-tokens": "60",
    }


class _Sender(ReplySender):
    """Writes a `Reply` with Venice's headers; checks it against the spec on a Venice path."""

    def __init__(self, fake: FakeVenice, path: str, reply: Reply, *, check: bool = True) -> None:
        super().__init__(fake, path, reply)
        if check and path in _VENICE_PATHS:
            fake._check_reply(path, reply)

    def default_headers(self) -> dict[str, str]:
        return {"content-type": self._reply.content_type, "x-venice-version": VERSION, **rate_headers()}


# --------------------------------------------------------------------------------------------
# pytest fixtures (imported by the Venice test modules under their `*_fixture` names)
# --------------------------------------------------------------------------------------------


def venice_settings(base_url: str, **overrides: Any) -> ProviderSettings:
    """Settings for a Venice adapter that talks to the fake at `base_url`."""
    values: dict[str, Any] = {"kind": "venice", "base_url": base_url, "api_key": SecretStr(VENICE_TEST_KEY)}
    values.update(overrides)
    return ProviderSettings.model_validate(values)


@pytest.fixture(scope="module", name="venice_upstream")
def venice_upstream_fixture() -> Iterator[FakeVenice]:
    """The module's fake Venice server (prefer `venice_fake`, which resets and checks it)."""
    venice_api()  # load the spec once, before the first request needs it
    fake = FakeVenice().start()
    yield fake
    fake.stop()


@pytest.fixture(name="venice_fake")
def venice_fake_fixture(venice_upstream: FakeVenice) -> Iterator[FakeVenice]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    yield from checked(venice_upstream, "Venice")


@pytest.fixture(name="venice_provider")
async def venice_provider_fixture(venice_fake: FakeVenice) -> AsyncIterator[VeniceProvider]:
    """A VeniceProvider named "venice" pointed at the fake (closed after the test)."""
    provider = VeniceProvider("venice", venice_settings(venice_fake.base_url))
    yield provider
    await provider.aclose()
