"""A spec-faithful fake of the Ollama API on 127.0.0.1, for adapter tests.

It is a real HTTP/1.1 server (uvicorn + Starlette) running in its own thread and event loop, so it
is independent of the tests' (function-scoped) loops and sees client disconnects exactly as Ollama
would. It sends Ollama's bytes, as its Go server (gin) writes them:

- non-streamed answers and errors: `application/json; charset=utf-8`, `{"error": "<text>"}` bodies;
- streams: `application/x-ndjson`, one compact JSON object per line, each ending in `\\n`, the last
  one with `"done": true`, `done_reason` and the counts and durations (nanoseconds); a mid-stream
  failure is one more line `{"error": "..."}` while the status stays 200;
- an unknown path: gin's `404 page not found` as `text/plain`.

Ollama documents no rate-limit headers and no request-id header, so none are sent unless a test
adds them (for example a `Retry-After` from a proxy in front of Ollama Cloud).

Scripting: `enqueue(reply, ...)` queues replies, served in order to the next requests (any path).
With an empty queue the model name picks the behaviour (see `MODEL_BEHAVIOURS`).

Checking: every request is validated against the official spec and api.md
(`tests/providers/ollama_spec.py`); an invalid one is answered 400 the way Ollama answers bad
input and recorded in `validation_errors`. Every reply (JSON bodies, each NDJSON line) is checked
against the spec's schemas; drift lands in `response_errors`. The pytest fixture asserts both lists
are empty. With `require_key` set, requests without `Authorization: Bearer <key>` get Ollama
Cloud's 401 `{"error": "unauthorized"}`.

Records: `requests` (method, path, headers, parsed JSON body, time, client port) and `disconnects`
(when a client went away before a streamed reply finished, with `time.monotonic()`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.providers.ollama import OllamaProvider
from homa_server.settings import ProviderSettings
from tests.providers.fakes import _server
from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    ReplySender,
    checked,
    read_request,
)
from tests.providers.fakes.embedding_vectors import ollama_embed_payload
from tests.providers.ollama_spec import (
    OLLAMA_SPEC,
    ollama_api,
    validate_ollama_request,
    validate_ollama_schema,
)

__all__ = [
    "EXAMPLES",
    "MODEL",
    "MODEL_BEHAVIOURS",
    "OLLAMA_TEST_KEY",
    "Disconnect",
    "FakeOllama",
    "RecordedRequest",
    "Reply",
    "chat_response",
    "error_reply",
    "example_stream",
    "final_line",
    "json_reply",
    "ndjson_reply",
    "ollama_fake_fixture",
    "ollama_provider_fixture",
    "ollama_settings",
    "ollama_upstream_fixture",
    "rate_limited_reply",
    "stream_line",
    "text_stream",
    "tool_call_stream",
    "usage_limit_reply",
]

EXAMPLES = OLLAMA_SPEC.parent / "examples"
MODEL = "llama3.2"
CREATED_AT = "2025-10-26T17:15:24.097767Z"
JSON_TYPE = "application/json; charset=utf-8"  # gin's c.JSON
NDJSON_TYPE = "application/x-ndjson"
# The counts and durations of api.md's streamed chat example.
COUNTS = {
    "total_duration": 4883583458,
    "load_duration": 1334875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342546000,
    "eval_count": 18,
    "eval_duration": 4535599000,
}
# Bodies observed from Ollama Cloud (there is no documented rate-limit body).
RATE_LIMITED_TEXT = "timed out waiting for a concurrent request slot"
USAGE_LIMIT_TEXT = "you (homa-test) have reached your hourly usage limit, upgrade for higher limits: https://ollama.com/upgrade"
OVERLOADED_TEXT = "Server overloaded, please retry shortly (ref: aaa65c70-cfa0-446b-86f1-4ab0e2deb9e4)"


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


@dataclass
class Reply(_server.Reply):
    """One scripted answer (see `_server.Reply`); JSON bodies as gin's `c.JSON` labels them."""

    content_type: str = JSON_TYPE


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer, as gin's `c.JSON` writes it."""
    return Reply(status=status, body=orjson.dumps(payload), headers=dict(headers or {}))


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """Ollama's error body `{"error": message}` with `status`."""
    return json_reply({"error": message}, status, headers)


def rate_limited_reply(headers: dict[str, str] | None = None) -> Reply:
    """Ollama Cloud's 429 for too many concurrent requests (no documented retry headers)."""
    return error_reply(429, RATE_LIMITED_TEXT, headers)


def usage_limit_reply() -> Reply:
    """Ollama Cloud's 429 when the plan's hourly/session/weekly usage is spent."""
    return error_reply(429, USAGE_LIMIT_TEXT)


def _message(
    content: str, thinking: str | None, tool_calls: Sequence[tuple[str, Any]] | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = [
            {"function": {"name": name, "arguments": arguments}} for name, arguments in tool_calls
        ]
    return message


def chat_response(
    content: str = "Hello! How can I help you today?",
    *,
    thinking: str | None = None,
    tool_calls: Sequence[tuple[str, Any]] = (),
    done_reason: str | None = "stop",
    counts: dict[str, int] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    """A non-streamed `ChatResponse`; `tool_calls` are (name, arguments object) pairs."""
    payload: dict[str, Any] = {
        "model": model,
        "created_at": CREATED_AT,
        "message": _message(content, thinking, tool_calls),
        "done": True,
    }
    if done_reason is not None:
        payload["done_reason"] = done_reason
    payload.update(COUNTS if counts is None else counts)
    return payload


def stream_line(
    content: str = "",
    *,
    thinking: str | None = None,
    tool_calls: Sequence[tuple[str, Any]] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    """One `"done": false` line of a chat stream."""
    return {
        "model": model,
        "created_at": CREATED_AT,
        "message": _message(content, thinking, tool_calls),
        "done": False,
    }


def final_line(
    done_reason: str | None = "stop", *, content: str = "", counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """The last line of a chat stream (`"done": true`, reason, counts and durations)."""
    line: dict[str, Any] = {
        "model": MODEL,
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": content},
        "done": True,
    }
    if done_reason is not None:
        line["done_reason"] = done_reason
    line.update(COUNTS if counts is None else counts)
    return line


def ndjson_reply(
    lines: Iterable[dict[str, Any] | bytes],
    *,
    delay: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A streamed answer: dicts become `<json>\\n` frames, bytes are sent verbatim."""
    frames = [item if isinstance(item, bytes) else orjson.dumps(item) + b"\n" for item in lines]
    return Reply(frames=frames, content_type=NDJSON_TYPE, delay=delay, end=end, validate=validate)


def text_stream(
    pieces: Sequence[str] = ("Hel", "lo", " there!"),
    *,
    thinking: Sequence[str] = (),
    done_reason: str = "stop",
    counts: dict[str, int] | None = None,
    done: bool = True,
    **options: Any,
) -> Reply:
    """Streamed text as Ollama sends it: thinking lines, content lines, then the final line."""
    lines: list[dict[str, Any] | bytes] = [stream_line(thinking=piece) for piece in thinking]
    lines.extend(stream_line(piece) for piece in pieces)
    if done:
        lines.append(final_line(done_reason, counts=counts))
    return ndjson_reply(lines, **options)


def tool_call_stream(
    calls: Sequence[tuple[str, Any]], *, per_line: bool = False, content: str = "", **options: Any
) -> Reply:
    """Streamed tool calls, whole: all in one line (Ollama's usual form) or one call per line."""
    lines: list[dict[str, Any] | bytes] = []
    if content:
        lines.append(stream_line(content))
    if per_line:
        lines.extend(stream_line(tool_calls=[call]) for call in calls)
    else:
        lines.append(stream_line(tool_calls=calls))
    lines.append(final_line("stop"))
    return ndjson_reply(lines, **options)


def example_stream(name: str, **options: Any) -> Reply:
    """The exact bytes of `provider-specs/ollama/examples/<name>`, one frame per line."""
    data = (EXAMPLES / name).read_bytes()
    return ndjson_reply([line + b"\n" for line in data.splitlines() if line.strip()], **options)


def _midstream_error() -> Reply:
    return example_stream("chat-stream-midstream-error.ndjson")


def _chat_default(body: Any) -> Reply:
    stream = not (isinstance(body, dict) and body.get("stream") is False)  # Ollama streams by default
    return text_stream() if stream else json_reply(chat_response())


def _tools(body: Any) -> Reply:
    calls = [("get_weather", {"city": "Paris"})]
    if isinstance(body, dict) and body.get("stream") is False:
        return json_reply(chat_response("", tool_calls=calls))
    return example_stream("chat-stream-tool-call.ndjson")


# Behaviour by model name when nothing is queued (usable without access to the fake object).
MODEL_BEHAVIOURS: dict[str, Callable[[Any], Reply]] = {
    "fake-tools": _tools,
    "fake-parallel-tools": lambda body: tool_call_stream(
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    ),
    "fake-429": lambda body: rate_limited_reply(),
    "fake-usage-limit": lambda body: usage_limit_reply(),
    "fake-500": lambda body: error_reply(500, "the model failed to generate a response"),
    "fake-404": lambda body: error_reply(404, f'model "{body.get("model")}" not found, try pulling it first'),
    "fake-midstream-error": lambda body: _midstream_error(),
    "fake-drop": lambda body: text_stream(done=False),
    "fake-abort": lambda body: text_stream(done=False, end="abort"),
    "fake-slow": lambda body: text_stream([f"tok{i} " for i in range(200)], delay=0.05),
}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    raw: bytes
    time: float  # time.monotonic()
    client_port: int  # equal ports mean a reused keep-alive connection


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOllama(FakeServer[Reply, RecordedRequest]):
    """The fake server. Start with `start()` (or as a context manager), stop with `stop()`.

    Args:
        require_key: when set, demand `Authorization: Bearer <require_key>` (Ollama Cloud).
    """

    label = "Ollama"

    def __init__(self, *, require_key: str | None = None) -> None:
        self.require_key = require_key
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/chat", self._api, methods=["POST"]),
            Route("/api/tags", self._api, methods=["GET"]),
            Route("/api/embed", self._api, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL: the server root (`http://127.0.0.1:<port>`)."""
        return f"http://127.0.0.1:{self.port}"

    # -- handlers ---------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        got = await read_request(request)
        method, path, headers, body, raw = got.method, got.path, got.headers, got.body, got.raw
        self._record(RecordedRequest(method, path, headers, body, raw, got.time, got.client_port))
        if self.require_key is not None and headers.get("authorization") != f"Bearer {self.require_key}":
            return _Sender(self, path, error_reply(401, "unauthorized"))
        problems = validate_ollama_request(
            method,
            path,
            raw or None,
            headers,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        if problems:
            self._add_validation_errors([f"{method} {path}: {p}" for p in problems])
            return _Sender(self, path, error_reply(400, "invalid request: " + problems[0].splitlines()[0]))
        reply = self._next_reply()
        return _Sender(self, path, reply if reply is not None else self._default(path, body))

    def _default(self, path: str, body: Any) -> Reply:
        if path == "/api/tags":
            models = [MODEL, "qwen3:8b", *MODEL_BEHAVIOURS]
            return json_reply({"models": [_model_summary(name) for name in models]})
        model = body.get("model") if isinstance(body, dict) else None
        behaviour = MODEL_BEHAVIOURS.get(model) if isinstance(model, str) else None
        if path == "/api/embed" and behaviour is None:
            return json_reply(ollama_embed_payload(body))
        return behaviour(body) if behaviour is not None else _chat_default(body)

    async def _unknown(self, request: Request) -> Response:
        reply = Reply(status=404, body=b"404 page not found", content_type="text/plain", validate=False)
        return _Sender(self, request.url.path, reply)

    # -- used by _Sender --------------------------------------------------------------------

    def _check_reply(self, path: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for raw in b"".join(reply.frames).splitlines():
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    problems.append(f"not a JSON line: {raw[:80]!r}")
                    continue
                if not isinstance(line, dict):
                    problems.append("a line is not a JSON object")
                elif "error" in line:
                    problems.extend(validate_ollama_schema("ErrorResponse", line))
                else:
                    problems.extend(validate_ollama_schema("ChatStreamEvent", line))
                    if line.get("done") is True:  # the final line also carries ChatResponse fields
                        problems.extend(validate_ollama_schema("ChatResponse", line))
        elif reply.status >= 400:
            problems = validate_ollama_schema("ErrorResponse", orjson.loads(reply.body))
        else:
            schema = {
                "/api/chat": "ChatResponse",
                "/api/tags": "ListResponse",
                "/api/embed": "EmbedResponse",
            }[path]
            problems = validate_ollama_schema(schema, orjson.loads(reply.body))
        self._add_response_errors(path, problems)


def _model_summary(name: str) -> dict[str, Any]:
    """A `ModelSummary` like the spec's /api/tags example."""
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-10-03T23:34:03.409490317-07:00",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }


class _Sender(ReplySender):
    """Writes a `Reply` (Ollama sends no headers of its own), checking it against the spec."""

    def __init__(self, fake: FakeOllama, path: str, reply: Reply) -> None:
        super().__init__(fake, path, reply)
        fake._check_reply(path, reply)


# --------------------------------------------------------------------------------------------
# pytest fixtures. A test module imports the three functions (FIXTURES); tests then ask for the
# fixtures by their names: `ollama_upstream`, `ollama_fake` and `ollama_provider`.
# --------------------------------------------------------------------------------------------

OLLAMA_TEST_KEY = "ollama-test-key-0123456789"


def ollama_settings(base_url: str, **overrides: Any) -> ProviderSettings:
    """Settings for an adapter that talks to the fake at `base_url` (no key: a local server)."""
    return ProviderSettings.model_validate({"kind": "ollama", "base_url": base_url, **overrides})


@pytest.fixture(scope="session", name="ollama_upstream")
def ollama_upstream_fixture() -> Iterator[FakeOllama]:
    """The fake Ollama server, started once (prefer `ollama_fake`, which resets and checks it)."""
    ollama_api()  # load the spec once, before the first request needs it
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture(name="ollama_fake")
def ollama_fake_fixture(ollama_upstream: FakeOllama) -> Iterator[FakeOllama]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    ollama_upstream.require_key = None
    try:
        yield from checked(ollama_upstream, "Ollama")
    finally:
        ollama_upstream.require_key = None


@pytest.fixture(name="ollama_provider")
async def ollama_provider_fixture(ollama_fake: FakeOllama) -> AsyncIterator[OllamaProvider]:
    """An OllamaProvider named "ollama" pointed at the fake (closed after the test)."""
    provider = OllamaProvider("ollama", ollama_settings(ollama_fake.base_url))
    yield provider
    await provider.aclose()
