"""A spec-faithful fake of the OpenAI API on 127.0.0.1, for adapter tests and benchmarks.

It is a real HTTP/1.1 server (uvicorn + Starlette) running in its own thread and event loop, so it
is independent of the tests' (function-scoped) loops and sees client disconnects exactly as
OpenAI would. It sends OpenAI's bytes: `application/json` bodies, `text/event-stream` with
`data: <json>\\n\\n` framing and `data: [DONE]`, `{"error": {...}}` bodies, and the `x-request-id`,
`x-ratelimit-*`, `retry-after` and `openai-*` headers.

Scripting: `enqueue(reply, ...)` queues replies, served in order to the next requests (any path).
With an empty queue the model name picks the behaviour (see `MODEL_BEHAVIOURS`), which also lets
another process script it; `POST /__fake__/enqueue` and `GET /__fake__/requests` expose the same
controls over HTTP for out-of-process use.

Checking: every request to an OpenAI path is validated against the official spec with openapi-core
(`tests/providers/spec_validation.py`, validated as `https://api.openai.com/v1/...`); an invalid one
is answered 400 and recorded in `validation_errors`. Every reply the fake sends (JSON bodies, each
SSE chunk) is checked against the spec's component schemas; drift lands in `response_errors`.
Tests assert both lists are empty (the pytest fixture does it at teardown).

Records: `requests` (method, path, headers, parsed JSON body, time) and `disconnects` (when a client
went away before a streamed reply finished, with `time.monotonic()` so tests can assert that a
cancel reached the upstream within a bound).

Run standalone: `python -m tests.providers.fakes.openai_upstream --port 8081 [--no-auth]`.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    Reply,
    ReplySender,
    json_reply,
    read_request,
)
from tests.providers.fakes.openai_embeddings import embeddings_reply, spec_view
from tests.providers.spec_validation import OPENAI_SPEC, validate_openai_request, validate_openai_schema

__all__ = [
    "EXAMPLES",
    "MODEL_BEHAVIOURS",
    "Disconnect",
    "FakeOpenAI",
    "RecordedRequest",
    "Reply",
    "chat_completion",
    "chunk",
    "error_reply",
    "example_stream",
    "insufficient_quota_reply",
    "json_reply",
    "rate_limited_reply",
    "sse_reply",
    "text_stream",
    "tool_calls_stream",
]

EXAMPLES = OPENAI_SPEC.parent / "examples"
DONE_FRAME = b"data: [DONE]\n\n"
CREATED = 1700000000
MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 61,
    "completion_tokens": 16,
    "total_tokens": 77,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# Headers OpenAI sends on every answer (values as observed in real traffic).
_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "199990",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "3ms",
}
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses/input_tokens", "/v1/models", "/v1/embeddings")


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


def chat_completion(
    content: str | None = "Hello there!",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    refusal: str | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    completion_id: str = "chatcmpl-fx1",
) -> dict[str, Any]:
    """A `CreateChatCompletionResponse`; `tool_calls` are (id, name, arguments) triples."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
    if tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": USAGE if usage is None else usage,
        "service_tier": "default",
        "system_fingerprint": "fp_fx",
    }


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    completion_id: str = "chatcmpl-fx1",
) -> dict[str, Any]:
    """A `chat.completion.chunk`. Without `delta` and with `usage` it is the final usage chunk."""
    choices = []
    if delta is not None:
        choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason})
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_fx",
        "choices": choices,
        "usage": usage,
    }


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
    return Reply(
        frames=frames,
        content_type="text/event-stream; charset=utf-8",
        delay=delay,
        end=end,
        validate=validate,
    )


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed text the way OpenAI sends it: role chunk, content chunks, finish chunk, usage chunk."""
    events: list[dict[str, Any] | bytes] = [chunk({"role": "assistant", "content": "", "refusal": None})]
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
            delta = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
        events.append(chunk(delta))
        events.extend(chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in pieces)
    events.append(chunk({}, finish_reason="tool_calls"))
    events.append(chunk(usage=USAGE if usage is None else usage))
    return sse_reply(events, **options)


def example_stream(name: str, **options: Any) -> Reply:
    """The exact bytes of `provider-specs/openai/examples/<name>`, one frame per event."""
    data = (EXAMPLES / name).read_bytes()
    frames = [frame + b"\n\n" for frame in data.split(b"\n\n") if frame.strip()]
    return sse_reply(frames, done=False, **options)  # the examples end with their own [DONE]


def error_reply(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An OpenAI `ErrorResponse`."""
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return json_reply({"error": error}, status, headers)


def rate_limited_reply(headers: dict[str, str] | None = None) -> Reply:
    """429 `rate_limit_exceeded` with the example body and OpenAI's retry headers."""
    default = {
        "retry-after": "2",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-reset-tokens": "1.5s",
    }
    default.update(headers or {})
    return Reply(status=429, body=(EXAMPLES / "error-429.json").read_bytes(), headers=default)


def insufficient_quota_reply() -> Reply:
    """429 `insufficient_quota` (billing), which must not be retried."""
    return error_reply(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        error_type="insufficient_quota",
        code="insufficient_quota",
    )


def _mid_stream_error() -> Reply:
    error = {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return sse_reply(
        [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), error], done=False
    )


def _default_chat(body: Any) -> Reply:
    stream = isinstance(body, dict) and body.get("stream") is True
    return text_stream() if stream else json_reply(chat_completion())


def _tools_reply(body: Any) -> Reply:
    if isinstance(body, dict) and body.get("stream") is True:
        return example_stream("chat-completions-stream-tool-call.sse")
    return json_reply(
        chat_completion(
            None, tool_calls=[("call_fx1", "get_weather", '{"city":"Paris"}')], finish_reason="tool_calls"
        )
    )


# Behaviour by model name when nothing is queued (usable from another process).
MODEL_BEHAVIOURS: dict[str, Any] = {
    "fake-tools": _tools_reply,
    "fake-parallel-tools": lambda body: tool_calls_stream(
        [("call_a", "get_weather", ['{"city":', '"Paris"}']), ("call_b", "get_time", ['{"tz":"CET"}'])]
    ),
    "fake-429": lambda body: rate_limited_reply(),
    "fake-quota": lambda body: insufficient_quota_reply(),
    "fake-500": lambda body: error_reply(500, "The server had an error.", error_type="server_error"),
    "fake-401": lambda body: error_reply(
        401, "Incorrect API key provided: sk-te****cret.", code="invalid_api_key"
    ),
    "fake-midstream-error": lambda body: _mid_stream_error(),
    "fake-drop": lambda body: text_stream(done=False),
    "fake-abort": lambda body: text_stream(done=False, end="abort"),
    "fake-malformed": lambda body: sse_reply(
        [chunk({"content": "Hi"}), b"data: {not json\n\n"], validate=False
    ),
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
    client_port: int  # the client's TCP port: equal ports mean a reused keep-alive connection


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOpenAI(FakeServer[Reply, RecordedRequest]):
    """The fake server. Start with `start()` (or as a context manager), stop with `stop()`.

    Args:
        require_auth: validate the Bearer security scheme (False for OpenAI-compatible servers
            that take no key).
    """

    label = "OpenAI"

    def __init__(self, *, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/v1/responses/input_tokens", self._openai, methods=["POST"]),
            Route("/v1/models", self._openai, methods=["GET"]),
            Route("/v1/embeddings", self._openai, methods=["POST"]),
            Route("/__fake__/requests", self._control_requests, methods=["GET"]),
            Route("/__fake__/enqueue", self._control_enqueue, methods=["POST"]),
            Route("/__fake__/reset", self._control_reset, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- handlers ---------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        got = await read_request(request)
        method, path, headers, body, raw = got.method, got.path, got.headers, got.body, got.raw
        self._record(RecordedRequest(method, path, headers, body, raw, got.time, got.client_port))
        problems = validate_openai_request(
            method,
            path,
            raw or None,
            headers,
            content_type=headers.get("content-type", "application/json").split(";")[0],
            require_auth=self.require_auth,
        )
        if problems:
            self._add_validation_errors([f"{method} {path}: {p}" for p in problems])
            if problems[0].startswith("SecurityValidationError"):
                return _Sender(self, path, error_reply(401, _NO_KEY_MESSAGE))  # what OpenAI answers
            return _Sender(
                self, path, error_reply(400, "Request does not match the OpenAPI spec: " + problems[0])
            )
        reply = self._next_reply()
        if reply is None:
            reply = self._default(path, body)
        return _Sender(self, path, reply)

    def _default(self, path: str, body: Any) -> Reply:
        if path.endswith("/models"):
            models = ["gpt-4o-mini", "gpt-4o", *MODEL_BEHAVIOURS]
            data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "system"} for m in models]
            return json_reply({"object": "list", "data": data})
        if path.endswith("/input_tokens"):
            count = max(1, len(orjson.dumps(body.get("input"))) // 4) if isinstance(body, dict) else 1
            return json_reply({"object": "response.input_tokens", "input_tokens": count})
        model = body.get("model") if isinstance(body, dict) else None
        behaviour = MODEL_BEHAVIOURS.get(model) if isinstance(model, str) else None
        if path.endswith("/embeddings") and behaviour is None:
            return embeddings_reply(body)
        return behaviour(body) if behaviour is not None else _default_chat(body)

    async def _unknown(self, request: Request) -> Response:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return _Sender(self, request.url.path, error_reply(404, message), check=False)

    async def _control_requests(self, request: Request) -> Response:
        with self._lock:
            records = [
                {"method": r.method, "path": r.path, "headers": r.headers, "body": r.body, "time": r.time}
                for r in self.requests
            ]
            payload = {
                "requests": records,
                "disconnects": [d.__dict__ for d in self.disconnects],
                "validation_errors": list(self.validation_errors),
                "response_errors": list(self.response_errors),
            }
        return JSONResponse(payload)

    async def _control_enqueue(self, request: Request) -> Response:
        """Queue replies given as JSON: [{status, body | events, headers, delay, end, done}]."""
        specs = orjson.loads(await request.body())
        for spec in specs if isinstance(specs, list) else [specs]:
            if "events" in spec:
                events = [e.encode() if isinstance(e, str) else e for e in spec["events"]]
                reply = sse_reply(events, done=spec.get("done", True), delay=spec.get("delay", 0.0))
                reply.end = spec.get("end", "close")
            else:
                reply = json_reply(spec.get("body", {}), spec.get("status", 200))
            reply.status = spec.get("status", reply.status)
            reply.headers.update(spec.get("headers", {}))
            self.enqueue(reply)
        return JSONResponse({"queued": len(self._queue)})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({})

    # -- used by _Sender --------------------------------------------------------------------

    def _check_reply(self, path: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for frame in reply.frames:
                if not frame.startswith(b"data: ") or frame == DONE_FRAME:
                    continue
                event = orjson.loads(frame[6:])
                schema = "ErrorResponse" if "error" in event else "CreateChatCompletionStreamResponse"
                problems.extend(validate_openai_schema(schema, event))
        elif reply.status >= 400:
            problems = validate_openai_schema("ErrorResponse", orjson.loads(reply.body))
        else:
            schema = {
                "/v1/chat/completions": "CreateChatCompletionResponse",
                "/v1/responses/input_tokens": "TokenCountsResource",
                "/v1/models": "ListModelsResponse",
                "/v1/embeddings": "CreateEmbeddingResponse",
            }[path]
            problems = validate_openai_schema(schema, spec_view(orjson.loads(reply.body)))
        self._add_response_errors(path, problems)

    def _next_request_id(self) -> str:
        return f"req_{next(self._ids):032x}"


class _Sender(ReplySender):
    """Writes a `Reply` with OpenAI's headers; checks it against the spec on an OpenAI path."""

    def __init__(self, fake: FakeOpenAI, path: str, reply: Reply, *, check: bool = True) -> None:
        super().__init__(fake, path, reply)
        self._fake: FakeOpenAI = fake
        if check and path in _OPENAI_PATHS:
            fake._check_reply(path, reply)

    def default_headers(self) -> dict[str, str]:
        return {
            "content-type": self._reply.content_type,
            "x-request-id": self._fake._next_request_id(),
            "openai-organization": "user-fake",
            "openai-processing-ms": "12",
            "openai-version": "2020-10-01",
            **_RATE_HEADERS,
        }


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-auth", action="store_true", help="do not require an Authorization header")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(require_auth=not args.no_auth).start(args.port)
    try:
        print(f"fake OpenAI listening on {fake.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
