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
import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

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
_OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses/input_tokens", "/v1/models")


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        body: the whole body of a non-streamed answer.
        frames: for a streamed answer, the raw bytes written one `send` at a time (already framed).
        headers: extra headers (they override the defaults).
        content_type: media type of the answer.
        delay: seconds to wait before each frame (slow streams), or before a whole body.
        end: "close" ends the body cleanly after the frames; "abort" drops the TCP connection
            without the chunked terminator.
        validate: check the reply against the spec (turn off for deliberately broken bytes).
    """

    status: int = 200
    body: bytes = b""
    frames: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0
    end: Literal["close", "abort"] = "close"
    validate: bool = True


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status=status, body=orjson.dumps(payload), headers=dict(headers or {}))


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


@dataclass(frozen=True)
class Disconnect:
    """A client that went away before a streamed reply was complete."""

    path: str
    time: float  # time.monotonic() when the server noticed
    frames_sent: int


class _AbortConnectionError(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-body."""


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOpenAI:
    """The fake server. Start with `start()` (or as a context manager), stop with `stop()`.

    Args:
        require_auth: validate the Bearer security scheme (False for OpenAI-compatible servers
            that take no key).
    """

    def __init__(self, *, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[Disconnect] = []
        self.validation_errors: list[str] = []
        self.response_errors: list[str] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/responses/input_tokens", self._openai, methods=["POST"]),
                Route("/v1/models", self._openai, methods=["GET"]),
                Route("/__fake__/requests", self._control_requests, methods=["GET"]),
                Route("/__fake__/enqueue", self._control_enqueue, methods=["POST"]),
                Route("/__fake__/reset", self._control_reset, methods=["POST"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            ]
        )

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: int = 0) -> FakeOpenAI:
        """Listen on 127.0.0.1:`port` (0 = any free port) in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_level="critical",  # deliberate connection drops would otherwise log tracebacks
            access_log=False,
            timeout_graceful_shutdown=1,
        )

    # -- scripting and records --------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Serve `replies`, in order, to the next requests."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and every record."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects.clear()
            self.validation_errors.clear()
            self.response_errors.clear()

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    async def wait_for_disconnect(self, within: float = 1.0) -> Disconnect:
        """The first recorded disconnect, waiting up to `within` seconds for one.

        Polls, because the record is written by the server's own thread and loop.
        """
        deadline = time.monotonic() + within
        while not self.disconnects:
            if time.monotonic() > deadline:
                raise AssertionError(f"no client disconnect within {within} s")
            await asyncio.sleep(0.005)
        return self.disconnects[0]

    # -- handlers ---------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        raw = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        body: Any = None
        if raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                body = orjson.loads(raw)
        path = request.url.path
        with self._lock:
            port = request.client.port if request.client else 0
            self.requests.append(
                RecordedRequest(request.method, path, headers, body, raw, time.monotonic(), port)
            )
        problems = validate_openai_request(
            request.method,
            path,
            raw or None,
            headers,
            content_type=headers.get("content-type", "application/json").split(";")[0],
            require_auth=self.require_auth,
        )
        if problems:
            with self._lock:
                self.validation_errors.extend(f"{request.method} {path}: {p}" for p in problems)
            if problems[0].startswith("SecurityValidationError"):
                return _Sender(self, path, error_reply(401, _NO_KEY_MESSAGE))  # what OpenAI answers
            return _Sender(
                self, path, error_reply(400, "Request does not match the OpenAPI spec: " + problems[0])
            )
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
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

    def _record_disconnect(self, path: str, frames_sent: int) -> None:
        with self._lock:
            self.disconnects.append(Disconnect(path, time.monotonic(), frames_sent))

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
            }[path]
            problems = validate_openai_schema(schema, orjson.loads(reply.body))
        if problems:
            with self._lock:
                self.response_errors.extend(f"reply to {path}: {p}" for p in problems)

    def _next_request_id(self) -> str:
        return f"req_{next(self._ids):032x}"


class _Sender(Response):
    """Writes a `Reply` as raw ASGI messages, watching for the client going away."""

    def __init__(self, fake: FakeOpenAI, path: str, reply: Reply, *, check: bool = True) -> None:
        super().__init__()
        self._fake = fake
        self._path = path
        self._reply = reply
        if check and path in _OPENAI_PATHS:
            fake._check_reply(path, reply)

    def _headers(self, length: int | None) -> list[tuple[bytes, bytes]]:
        headers = {
            "content-type": self._reply.content_type,
            "x-request-id": self._fake._next_request_id(),
            "openai-organization": "user-fake",
            "openai-processing-ms": "12",
            "openai-version": "2020-10-01",
            **_RATE_HEADERS,
            **self._reply.headers,
        }
        if length is not None:
            headers["content-length"] = str(length)
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self._reply
        if reply.frames is None:
            if reply.delay:
                await asyncio.sleep(reply.delay)  # a slow upstream: nothing at all until the whole answer
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": self._headers(len(reply.body)),
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": self._headers(None)})
        gone = asyncio.Event()
        sent = 0

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            for frame in reply.frames:
                if reply.delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), reply.delay)
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                sent += 1
            else:
                await asyncio.sleep(0)  # let a disconnect that raced the last frame be seen
            if gone.is_set():
                self._fake._record_disconnect(self._path, sent)
                return
            if reply.end == "abort":
                raise _AbortConnectionError
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


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
