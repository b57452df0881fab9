"""The plumbing every fake upstream shares; the vendor modules keep only their vendor's specifics.

- `FakeServer`: a real HTTP/1.1 server (uvicorn + Starlette) on 127.0.0.1 in its own thread and
  event loop, so it is independent of the tests' (function-scoped) loops and sees client disconnects
  exactly as a real upstream would. It owns the scripted reply queue, the records (`requests`,
  `disconnects`, `validation_errors`, `response_errors`) and `wait_for_disconnect`. A subclass gives
  its `routes()` (built once, in `__init__`), its `label` and, when it has settings that `reset()`
  restores, `_reset_settings()`.
- `ReplySender`: a Starlette response that writes a scripted reply as raw ASGI messages: a whole
  body (after `delay`), or frames one `send` at a time (a `delay` before each), watching for the
  client going away; a disconnect is recorded on the fake with `time.monotonic()`. A subclass gives
  the vendor's headers (`default_headers`).
- `RecordedRequest` and `read_request`: a request as recorded (raw and parsed JSON body, lower-cased
  headers, query, time, client port); vendors subclass it for properties or keep their own record.
- `checked`: the body of a per-test fixture (reset, yield, fail on spec violations, reset).
- `Reply` (a scripted answer; a vendor may subclass it for other defaults) and `json_reply`.
- `Disconnect` and `AbortConnectionError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Self, TypeVar, overload

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

__all__ = [
    "ANY_METHOD",
    "AbortConnectionError",
    "Disconnect",
    "FakeServer",
    "RecordedRequest",
    "Reply",
    "ReplySender",
    "checked",
    "json_reply",
    "read_request",
]

# The methods of the catch-all route that answers unknown paths.
ANY_METHOD = ["GET", "POST", "PUT", "DELETE", "PATCH"]


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        body: the whole body of a non-streamed answer.
        frames: for a streamed answer, the raw bytes written one `send` at a time (already framed
            the vendor's way: SSE events, NDJSON lines, event-stream messages).
        headers: extra headers (they override the defaults).
        content_type: media type of the answer.
        delay: seconds to wait before each frame (slow streams), or before a whole body.
        end: "close" ends the body cleanly after the frames; "abort" drops the TCP connection
            without the chunked terminator.
        validate: check the reply against the spec (turn off for deliberately broken or
            undocumented bytes).
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


ReplyT = TypeVar("ReplyT")


@dataclass(frozen=True)
class Disconnect:
    """A client that went away before a streamed reply was complete."""

    path: str
    time: float  # time.monotonic() when the server noticed
    frames_sent: int


class AbortConnectionError(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-body."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    raw: bytes
    time: float  # time.monotonic()
    client_port: int  # the client's TCP port: equal ports mean a reused keep-alive connection


RecordT = TypeVar("RecordT")
KindT = TypeVar("KindT", bound=RecordedRequest)


@overload
async def read_request(request: Request) -> RecordedRequest: ...
@overload
async def read_request(request: Request, kind: type[KindT]) -> KindT: ...
async def read_request(request: Request, kind: type[RecordedRequest] = RecordedRequest) -> RecordedRequest:
    """`request` as a `kind` record (a `RecordedRequest` or a subclass with more properties): its
    body read and parsed as JSON when it is JSON, stamped with `time.monotonic()`."""
    raw = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    body: Any = None
    if raw:
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(raw)
    port = request.client.port if request.client else 0
    query = dict(request.query_params)
    return kind(request.method, request.url.path, query, headers, body, raw, time.monotonic(), port)


class FakeServer(Generic[ReplyT, RecordT]):
    """A fake upstream server. Start with `start()` (or as a context manager), stop with `stop()`.

    Subclasses set `label` (the vendor's name, for the thread and errors) and define `routes()`.
    """

    label = "upstream"

    def __init__(self) -> None:
        self.requests: list[RecordT] = []
        self.disconnects: list[Disconnect] = []
        self.validation_errors: list[str] = []
        self.response_errors: list[str] = []
        self._queue: deque[ReplyT] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(routes=self.routes())

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes (the vendor's paths, then a catch-all for unknown ones)."""
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, port: int = 0) -> Self:
        """Listen on 127.0.0.1:`port` (0 = any free port) in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_level="critical",  # deliberate connection drops would otherwise log tracebacks
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"fake-{self.label.lower()}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake {self.label} server did not start")
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and records --------------------------------------------------------------

    def enqueue(self, *replies: ReplyT) -> None:
        """Serve `replies`, in order, to the next requests."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and every record (and restore the default settings)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects.clear()
            self.validation_errors.clear()
            self.response_errors.clear()
            self._reset_settings()

    def _reset_settings(self) -> None:
        """Restore a subclass's settings (called by `reset()`, holding the lock)."""

    @property
    def last(self) -> RecordT:
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

    # -- for the handlers -------------------------------------------------------------------

    def _record(self, record: RecordT) -> RecordT:
        with self._lock:
            self.requests.append(record)
        return record

    def _next_reply(self) -> ReplyT | None:
        """The next queued reply, or None."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _add_validation_errors(self, problems: Sequence[str]) -> None:
        with self._lock:
            self.validation_errors.extend(problems)

    def _add_response_errors(self, path: str, problems: Sequence[str]) -> None:
        if problems:
            with self._lock:
                self.response_errors.extend(f"reply to {path}: {p}" for p in problems)

    def _record_disconnect(self, path: str, frames_sent: int) -> None:
        with self._lock:
            self.disconnects.append(Disconnect(path, time.monotonic(), frames_sent))


class ReplySender(Response):
    """Writes a scripted reply as raw ASGI messages, watching for the client going away.

    `reply` is a `Reply` or a vendor's own class with the same fields (Gemini's adds `hold`: seconds
    to keep a finished stream open). Subclasses define `default_headers()`: the vendor's headers
    (including `content-type`), in wire order; the reply's own headers override them and
    `content-length` comes last.
    """

    def __init__(self, fake: FakeServer[Any, Any], path: str, reply: Any) -> None:
        super().__init__()
        self._fake = fake
        self._path = path
        self._reply = reply

    def default_headers(self) -> dict[str, str]:
        return {"content-type": self._reply.content_type}

    def _wire_headers(self, length: int | None) -> list[tuple[bytes, bytes]]:
        headers = {**self.default_headers(), **self._reply.headers}
        if length is not None:
            headers["content-length"] = str(length)
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self._reply
        if reply.frames is None:
            if reply.delay:
                await asyncio.sleep(reply.delay)  # a slow upstream: nothing at all until the whole answer
            start = {
                "type": "http.response.start",
                "status": reply.status,
                "headers": self._wire_headers(len(reply.body)),
            }
            await send(start)
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": self._wire_headers(None)}
        )
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
                hold = getattr(reply, "hold", 0.0)  # keep a finished stream open (a lingering upstream)
                if hold:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), hold)
            if gone.is_set():
                self._fake._record_disconnect(self._path, sent)
                return
            if reply.end == "abort":
                raise AbortConnectionError
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


FakeT = TypeVar("FakeT", bound=FakeServer[Any, Any])


def checked(fake: FakeT, spec: str) -> Iterator[FakeT]:
    """The body of a per-test fixture: `fake` reset for the test, which fails on any spec violation
    either direction (`spec` names the vendor's spec in the message); reset again afterwards."""
    fake.reset()
    yield fake
    try:
        assert fake.validation_errors == [], f"requests violated the {spec} spec"
        assert fake.response_errors == [], "the fake sent replies that violate the spec"
    finally:
        fake.reset()
