"""A spec-faithful fake of Cohere's API (v2 chat, v1 model listing) on 127.0.0.1, for adapter tests.

It is a real HTTP/1.1 server (uvicorn + Starlette) running in its own thread and event loop, so it
is independent of the tests' (function-scoped) loops and sees client disconnects exactly as
Cohere would. It sends Cohere's bytes:

- `application/json` chat responses (`ChatResponseV2`) and model pages (`ListModelsResponse`);
- `text/event-stream` where every event is `event: <type>\\ndata: <json>\\n\\n` with the same type
  in the JSON, ending with `message-end` and then `data: [DONE]\\n\\n` (README section 3; the
  examples in provider-specs/cohere/examples are served byte for byte by `example_stream`);
- error bodies `{"id", "message"}` for every status. Cohere documents no rate-limit headers; trial
  keys carry `x-trial-endpoint-call-limit`, `x-trial-endpoint-call-remaining` and
  `x-endpoint-monthly-call-limit` (observed in real traffic, not in the spec), and every answer
  carries `x-debug-trace-id`.

Scripting: `enqueue(reply, ...)` queues replies, served in order to the next requests (any path).
With an empty queue the model name picks the behaviour (see `MODEL_BEHAVIOURS`).

Checking: every request to a Cohere path is validated against the official spec (repaired as
described in `tests/providers/cohere_spec.py`); an invalid one is answered 400 (401 without a key)
and recorded in `validation_errors`. Every reply the fake sends (JSON bodies, error bodies, each
SSE event, and that the `event:` line names the same type as the data) is checked against the
spec; drift lands in `response_errors`. The `cohere_fake` fixture fails a test when either list is
not empty.

Records: `requests` (method, path, query, headers, parsed JSON body, time) and `disconnects` (when a
client went away before a streamed reply finished, with `time.monotonic()`).

Fixtures: test modules load them with `pytest_plugins = ("tests.providers.fakes.cohere_upstream",)`.
They also import builders from here first, so pytest cannot rewrite this module's asserts; the
PYTEST_DONT_REWRITE marker says so (otherwise pytest warns, and warnings are errors here), and the
fixtures report failures with explicit messages instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Literal

import orjson
import pytest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.providers.cohere import CohereProvider
from homa_server.settings import ProviderSettings
from tests.providers.cohere_spec import (
    EXAMPLES,
    validate_cohere_error,
    validate_cohere_event,
    validate_cohere_request,
    validate_cohere_schema,
)
from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    RecordedRequest,
    Reply,
    ReplySender,
    json_reply,
    read_request,
)
from tests.providers.fakes.embedding_vectors import cohere_embed_payload

__all__ = [
    "COHERE_TEST_KEY",
    "EXAMPLES",
    "MODELS",
    "MODEL_BEHAVIOURS",
    "RESPONSE_ID",
    "USAGE",
    "Disconnect",
    "FakeCohere",
    "RecordedRequest",
    "Reply",
    "chat_response",
    "citation_end",
    "citation_start",
    "cohere_fake",
    "cohere_provider",
    "cohere_settings",
    "cohere_upstream",
    "content_delta",
    "content_end",
    "content_start",
    "error_reply",
    "example_stream",
    "json_reply",
    "message_end",
    "message_start",
    "rate_limited_reply",
    "sse_reply",
    "text_stream",
    "tool_call_delta",
    "tool_call_end",
    "tool_call_start",
    "tool_calls_stream",
    "tool_plan_delta",
]

COHERE_TEST_KEY = "co-test-0123456789abcdefghijklmnopqrstuv"
DONE_FRAME = b"data: [DONE]\n\n"
RESPONSE_ID = "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
USAGE: dict[str, Any] = {
    "billed_units": {"input_tokens": 5, "output_tokens": 3},
    "tokens": {"input_tokens": 71, "output_tokens": 3},
}
MODELS = [
    "command-a-03-2025",
    "command-r7b-12-2024",
    "command-a-vision-07-2025",
    "command-a-reasoning-08-2025",
]
_NO_KEY = "no api key supplied"
_CHAT = "/v2/chat"
_MODELS = "/v1/models"
_EMBED = "/v2/embed"


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


def error_reply(
    status: int, message: str, *, error_id: str | None = "fx-err-1", headers: dict[str, str] | None = None
) -> Reply:
    """A Cohere error body `{"id", "message"}`."""
    payload: dict[str, Any] = {"message": message}
    if error_id is not None:
        payload = {"id": error_id, **payload}
    return json_reply(payload, status, headers)


def rate_limited_reply(*, headers: dict[str, str] | None = None) -> Reply:
    """429 with the exact example body (a trial key's per-minute limit) and trial-key headers."""
    default = {
        "x-trial-endpoint-call-limit": "20",
        "x-trial-endpoint-call-remaining": "0",
        "x-endpoint-monthly-call-limit": "1000",
    }
    default.update(headers or {})
    return Reply(status=429, body=(EXAMPLES / "error-429.json").read_bytes(), headers=default)


def chat_response(
    text: str | None = "Hello there!",
    *,
    thinking: str | None = None,
    tool_plan: str | None = None,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    citations: Sequence[dict[str, Any]] = (),
    finish_reason: str = "COMPLETE",
    usage: dict[str, Any] | None = None,
    response_id: str = RESPONSE_ID,
) -> dict[str, Any]:
    """A `ChatResponseV2`; `tool_calls` are (id, name, arguments) triples."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking})
    if text is not None:
        content.append({"type": "text", "text": text})
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_plan is not None:
        message["tool_plan"] = tool_plan
    if tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in tool_calls
        ]
    if citations:
        message["citations"] = list(citations)
    return {
        "id": response_id,
        "message": message,
        "finish_reason": finish_reason,
        "usage": USAGE if usage is None else usage,
    }


# -- stream events (StreamedChatResponseV2) ---------------------------------------------------


def message_start(response_id: str = RESPONSE_ID) -> dict[str, Any]:
    """`message-start` as Cohere sends it (empty message fields included, like the examples)."""
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    return {"type": "message-start", "id": response_id, "delta": {"message": message}}


def content_start(index: int = 0, kind: Literal["text", "thinking"] = "text") -> dict[str, Any]:
    """`content-start` of a text or thinking block."""
    return {
        "type": "content-start",
        "index": index,
        "delta": {"message": {"content": {"type": kind, kind: ""}}},
    }


def content_delta(piece: str, index: int = 0, kind: Literal["text", "thinking"] = "text") -> dict[str, Any]:
    """`content-delta` carrying `text` or `thinking`."""
    return {"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: piece}}}}


def content_end(index: int = 0) -> dict[str, Any]:
    """`content-end`."""
    return {"type": "content-end", "index": index}


def tool_plan_delta(piece: str) -> dict[str, Any]:
    """`tool-plan-delta`."""
    return {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}


def tool_call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    """`tool-call-start` (arguments start empty, as Cohere sends them)."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": call}}}


def tool_call_delta(index: int, arguments: str) -> dict[str, Any]:
    """`tool-call-delta` with one arguments fragment."""
    fragment = {"function": {"arguments": arguments}}
    return {"type": "tool-call-delta", "index": index, "delta": {"message": {"tool_calls": fragment}}}


def tool_call_end(index: int) -> dict[str, Any]:
    """`tool-call-end`."""
    return {"type": "tool-call-end", "index": index}


def citation_start(index: int, citation: dict[str, Any]) -> dict[str, Any]:
    """`citation-start` carrying one whole citation."""
    return {"type": "citation-start", "index": index, "delta": {"message": {"citations": citation}}}


def citation_end(index: int) -> dict[str, Any]:
    """`citation-end`."""
    return {"type": "citation-end", "index": index}


def message_end(
    finish_reason: str = "COMPLETE", *, usage: dict[str, Any] | None = None, error: str | None = None
) -> dict[str, Any]:
    """`message-end`, the stream's terminator."""
    delta: dict[str, Any] = {"finish_reason": finish_reason, "usage": USAGE if usage is None else usage}
    if error is not None:
        delta["error"] = error
    return {"type": "message-end", "delta": delta}


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sse_reply(
    events: Iterable[dict[str, Any] | bytes],
    *,
    done: bool = True,
    delay: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A streamed answer: dicts become `event: <type>\\ndata: <json>\\n\\n`, bytes go verbatim."""
    frames = [item if isinstance(item, bytes) else _frame(item) for item in events]
    if done:
        frames.append(DONE_FRAME)
    return Reply(frames=frames, content_type="text/event-stream", delay=delay, end=end, validate=validate)


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    finish_reason: str = "COMPLETE",
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed text the way Cohere sends it: message-start, one text block, message-end, [DONE]."""
    events: list[dict[str, Any] | bytes] = [message_start(), content_start()]
    events.extend(content_delta(piece) for piece in pieces)
    events += [content_end(), message_end(finish_reason, usage=usage)]
    return sse_reply(events, **options)


def tool_calls_stream(
    calls: Sequence[tuple[str, str, Sequence[str]]],
    *,
    plan: Sequence[str] = (),
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed (parallel) tool calls: an optional plan, then (id, name, argument pieces) per call."""
    events: list[dict[str, Any] | bytes] = [message_start()]
    events.extend(tool_plan_delta(piece) for piece in plan)
    for index, (call_id, name, pieces) in enumerate(calls):
        events.append(tool_call_start(index, call_id, name))
        events.extend(tool_call_delta(index, piece) for piece in pieces)
        events.append(tool_call_end(index))
    events.append(message_end("TOOL_CALL", usage=usage))
    return sse_reply(events, **options)


def example_stream(name: str, **options: Any) -> Reply:
    """The exact bytes of `provider-specs/cohere/examples/<name>`, one frame per event."""
    data = (EXAMPLES / name).read_bytes()
    frames = [frame + b"\n\n" for frame in data.split(b"\n\n") if frame.strip()]
    return sse_reply(frames, done=False, **options)  # the examples end with their own [DONE]


def _default_chat(body: Any) -> Reply:
    stream = isinstance(body, dict) and body.get("stream") is True
    return text_stream() if stream else json_reply(chat_response())


def _tools_reply(body: Any) -> Reply:
    if isinstance(body, dict) and body.get("stream") is True:
        return example_stream("chat-v2-stream-tool-call.sse")
    return json_reply(
        chat_response(
            None,
            tool_plan="I will look up the weather.",
            tool_calls=[("get_weather_fx1", "get_weather", '{"city":"Paris"}')],
            finish_reason="TOOL_CALL",
        )
    )


def _mid_stream_error(body: Any) -> Reply:
    events: list[dict[str, Any] | bytes] = [
        message_start(),
        content_start(),
        content_delta("Hel"),
        message_end("ERROR", error="internal error: generation failed"),
    ]
    return sse_reply(events)


def _cut_stream(end: Literal["close", "abort"]) -> Reply:
    """Text that stops before message-end: the body ends cleanly ("close") or the TCP connection
    drops ("abort")."""
    return sse_reply([message_start(), content_start(), content_delta("Hel")], done=False, end=end)


# Behaviour by model name when nothing is queued.
MODEL_BEHAVIOURS: dict[str, Any] = {
    "fake-tools": _tools_reply,
    "fake-429": lambda body: rate_limited_reply(),
    "fake-500": lambda body: error_reply(
        500, "internal server error, this has been reported to our developers"
    ),
    "fake-401": lambda body: error_reply(401, "invalid api token"),
    "fake-midstream-error": _mid_stream_error,
    "fake-drop": lambda body: _cut_stream("close"),
    "fake-abort": lambda body: _cut_stream("abort"),
    "fake-slow": lambda body: text_stream([f"tok{i} " for i in range(200)], delay=0.05),
}


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeCohere(FakeServer[Reply, RecordedRequest]):
    """The fake server. Start with `start()` (or as a context manager), stop with `stop()`."""

    label = "Cohere"

    def __init__(self) -> None:
        self.models: list[str] = list(MODELS)
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(_CHAT, self._cohere, methods=["POST"]),
            Route(_MODELS, self._cohere, methods=["GET"]),
            Route(_EMBED, self._cohere, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>`, no version prefix)."""
        return f"http://127.0.0.1:{self.port}"

    def _reset_settings(self) -> None:
        """Restore the model list."""
        self.models = list(MODELS)

    # -- handlers ---------------------------------------------------------------------------

    async def _cohere(self, request: Request) -> Response:
        record = self._record(await read_request(request))
        method, path, query, headers = record.method, record.path, record.query, record.headers
        problems = validate_cohere_request(
            method,
            path,
            record.raw or None,
            headers,
            query=query,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        if problems:
            self._add_validation_errors([f"{method} {path}: {p}" for p in problems])
            if problems[0].startswith("SecurityValidationError"):
                return _Sender(self, method, path, error_reply(401, _NO_KEY))
            return _Sender(self, method, path, error_reply(400, "invalid request: " + problems[0][:200]))
        reply = self._next_reply()
        if reply is None:
            reply = self._default(path, query, record.body)
        return _Sender(self, method, path, reply)

    def _default(self, path: str, query: dict[str, str], body: Any) -> Reply:
        if path == _MODELS:
            return json_reply(self._models_page(query))
        model = body.get("model") if isinstance(body, dict) else None
        behaviour = MODEL_BEHAVIOURS.get(model) if isinstance(model, str) else None
        if path == _EMBED and behaviour is None:
            return json_reply(cohere_embed_payload(body))
        return behaviour(body) if behaviour is not None else _default_chat(body)

    def _models_page(self, query: dict[str, str]) -> dict[str, Any]:
        size = int(float(query.get("page_size", "20")))
        start = int(query.get("page_token") or 0)
        names = self.models[start : start + size]
        models = [
            {
                "name": name,
                "is_deprecated": False,
                "endpoints": ["chat"],
                "finetuned": False,
                "context_length": 256000,
                "tokenizer_url": f"https://storage.googleapis.com/cohere-public/tokenizers/{name}.json",
                "default_endpoints": [],
                "features": ["tools", "strict_tools"],
            }
            for name in names
        ]
        page: dict[str, Any] = {"models": models}
        if start + size < len(self.models):
            page["next_page_token"] = str(start + size)
        return page

    async def _unknown(self, request: Request) -> Response:
        return _Sender(
            self, request.method, request.url.path, error_reply(404, "404 page not found"), check=False
        )

    # -- used by _Sender --------------------------------------------------------------------

    def _check_reply(self, method: str, path: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for frame in reply.frames:
                problems.extend(_check_frame(frame))
        elif reply.status >= 400:
            problems = validate_cohere_error(path, method, reply.status, orjson.loads(reply.body))
        else:
            schema = {_CHAT: "ChatResponseV2", _EMBED: "EmbedByTypeResponse"}.get(path, "ListModelsResponse")
            problems = validate_cohere_schema(schema, orjson.loads(reply.body))
        self._add_response_errors(path, problems)

    def _next_trace_id(self) -> str:
        return f"{next(self._ids):032x}"


def _check_frame(frame: bytes) -> list[str]:
    """Spec problems of one SSE frame: `event: <type>` + `data: <json>`, or `data: [DONE]`."""
    if frame == DONE_FRAME:
        return []
    lines = frame.rstrip(b"\n").split(b"\n")
    if len(lines) != 2 or not lines[0].startswith(b"event: ") or not lines[1].startswith(b"data: "):
        return [f"frame is not `event:` + `data:`: {frame[:80]!r}"]
    event = orjson.loads(lines[1][6:])
    name = lines[0][7:].decode()
    problems = (
        [] if event.get("type") == name else [f"event line {name!r} != data type {event.get('type')!r}"]
    )
    return problems + validate_cohere_event(event)


class _Sender(ReplySender):
    """Writes a `Reply` with Cohere's headers, checking it against the spec."""

    def __init__(self, fake: FakeCohere, method: str, path: str, reply: Reply, *, check: bool = True) -> None:
        super().__init__(fake, path, reply)
        self._fake: FakeCohere = fake
        if check:
            fake._check_reply(method, path, reply)

    def default_headers(self) -> dict[str, str]:
        return {
            "content-type": self._reply.content_type,
            "x-debug-trace-id": self._fake._next_trace_id(),
            "vary": "Origin",
        }


# --------------------------------------------------------------------------------------------
# pytest fixtures (import both into a test module to use them)
# --------------------------------------------------------------------------------------------


def cohere_settings(base_url: str, **overrides: Any) -> ProviderSettings:
    """Settings for an adapter that talks to the fake at `base_url`."""
    values: dict[str, Any] = {"kind": "cohere", "base_url": base_url, "api_key": SecretStr(COHERE_TEST_KEY)}
    values.update(overrides)
    return ProviderSettings.model_validate(values)


@pytest.fixture(scope="module")
def cohere_upstream() -> Iterator[FakeCohere]:
    """One fake Cohere server per test module (prefer `cohere_fake`, which resets and checks it)."""
    fake = FakeCohere().start()
    yield fake
    fake.stop()


@pytest.fixture
def cohere_fake(cohere_upstream: FakeCohere) -> Iterator[FakeCohere]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    cohere_upstream.reset()
    yield cohere_upstream
    requests, replies = list(cohere_upstream.validation_errors), list(cohere_upstream.response_errors)
    cohere_upstream.reset()
    if requests:
        pytest.fail("requests violated the Cohere spec:\n" + "\n".join(requests))
    if replies:
        pytest.fail("the fake sent replies that violate the spec:\n" + "\n".join(replies))


@pytest.fixture
async def cohere_provider(cohere_fake: FakeCohere) -> AsyncIterator[CohereProvider]:
    """A CohereProvider named "cohere" pointed at the fake (closed after the test)."""
    provider = CohereProvider("cohere", cohere_settings(cohere_fake.base_url))
    yield provider
    await provider.aclose()
