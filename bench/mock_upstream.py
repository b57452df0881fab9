"""A fast mock of OpenAI's Chat Completions endpoint, for load benchmarks.

    python -m bench.mock_upstream --port 8001 [--stream-chunks 16] [--delay-ms 0] [--inter-chunk-ms 0]

`POST /v1/chat/completions` answers a `chat.completion` JSON object, or, when the body has
`"stream": true`, OpenAI's SSE framing: one `chat.completion.chunk` event with the role, one per
content piece, one with `finish_reason`, one usage chunk (`choices: []`), then `data: [DONE]`, each
event an HTTP/1.1 chunk of a `Transfer-Encoding: chunked` body, exactly as api.openai.com sends them.

It must never be the bottleneck, so it is a bare asyncio protocol (on uvloop) speaking HTTP/1.1 with
keep-alive, and every response is precomputed bytes: per request it finds the end of the headers,
reads `Content-Length`, looks for `"stream": true` in the body and writes one buffer. The request
JSON is not parsed (the gateway's requests are checked by the harness, not here).

Bookkeeping for the harness: `GET /__stats` returns `{"unary": n, "stream": n, "other": n}` (counts
since start or the last `POST /__reset`). It listens on loopback only and prints
`mock-upstream listening on HOST:PORT` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
from dataclasses import dataclass

import orjson
import uvloop

CHAT_PATH = b"/v1/chat/completions"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_CREATED = 1_700_000_000
_ID = "chatcmpl-bench0000000000000000000000"
_MODEL = "gpt-4o-mini-2024-07-18"
_FINGERPRINT = "fp_bench"
_PROMPT_TOKENS = 32
_WORDS = ("Hello", " from", " the", " Homa", " bench", " mock", " upstream", ".")


@dataclass(frozen=True)
class Responses:
    """Precomputed HTTP responses (status line, headers and body), ready to write."""

    unary: bytes
    stream_head: bytes
    stream_events: tuple[bytes, ...]  # each one HTTP chunk (size line, payload, CRLF)
    stream_whole: bytes  # head + every event + the last chunk, for the no-delay path
    completion_text: str
    content_chunks: int


def _http(status: str, content_type: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        f"openai-processing-ms: 1\r\nx-request-id: req_bench\r\n{extra}\r\n"
    )
    return head.encode() + body


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _usage(completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": _PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": _PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def build_responses(content_chunks: int) -> Responses:
    """Responses whose completion is `content_chunks` pieces of text (one streamed event each)."""
    pieces = [_WORDS[i % len(_WORDS)] for i in range(content_chunks)]
    text = "".join(pieces)
    common = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }

    def choice(delta: dict[str, object], finish: str | None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    chunks: list[dict[str, object]] = [
        {
            **common,
            "choices": [choice({"role": "assistant", "content": "", "refusal": None}, None)],
            "usage": None,
        }
    ]
    chunks += [{**common, "choices": [choice({"content": p}, None)], "usage": None} for p in pieces]
    chunks.append({**common, "choices": [choice({}, "stop")], "usage": None})
    chunks.append({**common, "choices": [], "usage": _usage(content_chunks)})
    events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    events.append(b"data: [DONE]\n\n")
    stream_events = tuple(_chunk(e) for e in events)
    stream_head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
        b"openai-processing-ms: 1\r\nx-request-id: req_bench\r\n\r\n"
    )
    completion = {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(content_chunks),
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    return Responses(
        unary=_http("200 OK", "application/json", orjson.dumps(completion)),
        stream_head=stream_head,
        stream_events=stream_events,
        stream_whole=stream_head + b"".join(stream_events) + b"0\r\n\r\n",
        completion_text=text,
        content_chunks=content_chunks,
    )


_NOT_FOUND = _http(
    "404 Not Found",
    "application/json",
    b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}',
)
_BAD_REQUEST = _http(
    "400 Bad Request",
    "application/json",
    b'{"error":{"message":"bad request","type":"invalid_request_error","param":null,"code":null}}',
    "connection: close\r\n",
)


class Stats:
    """Request counters, read by the harness through `GET /__stats`."""

    __slots__ = ("other", "stream", "unary")

    def __init__(self) -> None:
        self.unary = 0
        self.stream = 0
        self.other = 0

    def as_json(self) -> bytes:
        return orjson.dumps({"unary": self.unary, "stream": self.stream, "other": self.other})


def wants_stream(body: bytes) -> bool:
    """True when the JSON body sets `"stream": true` (a byte scan; the body is not parsed)."""
    at = body.find(b'"stream"')
    if at < 0:
        return False
    rest = body[at + 8 : at + 24].lstrip()
    return rest.startswith(b":") and rest[1:].lstrip().startswith(b"true")


class MockProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection. Requests are answered in order (pipelining is safe)."""

    def __init__(self, responses: Responses, stats: Stats, delay: float, inter_chunk: float) -> None:
        self._responses = responses
        self._stats = stats
        self._delay = delay
        self._inter_chunk = inter_chunk
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a delayed response is being written; parse nothing until it is done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        buffer = self._buffer
        while self._transport is not None and not self._busy:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._fail()
                return
            length, close, ok = _parse_head(bytes(buffer[:end]))
            if not ok or length > _MAX_BODY:
                self._fail()
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            line_end = buffer.find(b"\r\n")
            method, _, rest = bytes(buffer[:line_end]).partition(b" ")
            target = rest.partition(b" ")[0]
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            self._respond(method, target, body)
            if close and self._transport is not None:
                self._transport.close()
                return

    def _respond(self, method: bytes, target: bytes, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if method == b"POST" and target == CHAT_PATH:
            stream = wants_stream(body)
            if stream:
                self._stats.stream += 1
            else:
                self._stats.unary += 1
            if self._delay or (stream and self._inter_chunk):
                self._busy = True
                asyncio.get_running_loop().create_task(self._respond_later(stream))
            elif stream:
                transport.write(self._responses.stream_whole)
            else:
                transport.write(self._responses.unary)
            return
        self._stats.other += 1
        if method == b"GET" and target == b"/__stats":
            transport.write(_http("200 OK", "application/json", self._stats.as_json()))
        elif method == b"POST" and target == b"/__reset":
            self._stats.unary = self._stats.stream = self._stats.other = 0
            transport.write(_http("200 OK", "application/json", b"{}"))
        else:
            transport.write(_NOT_FOUND)

    async def _respond_later(self, stream: bool) -> None:
        try:
            if self._delay:
                await asyncio.sleep(self._delay)
            if self._transport is None:
                return
            if not stream:
                self._transport.write(self._responses.unary)
                return
            self._transport.write(self._responses.stream_head)
            for event in self._responses.stream_events:
                if self._transport is None:
                    return
                self._transport.write(event)
                if self._inter_chunk:
                    await asyncio.sleep(self._inter_chunk)
            if self._transport is not None:
                self._transport.write(b"0\r\n\r\n")
        finally:
            self._busy = False
            if self._buffer:
                self._process()

    def _fail(self) -> None:
        if self._transport is not None:
            self._transport.write(_BAD_REQUEST)
            self._transport.close()


def _parse_head(head: bytes) -> tuple[int, bool, bool]:
    """(content length, close after this request, acceptable) from the request line and headers."""
    lines = head.split(b"\r\n")
    close = lines[0].endswith(b"HTTP/1.0")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return 0, True, False
            if length < 0:
                return 0, True, False
        elif name == b"connection":
            token = value.strip().lower()
            close = token == b"close" or (close and token != b"keep-alive")
        elif name == b"transfer-encoding":
            return 0, True, False  # chunked request bodies are not supported (nobody sends them here)
    return length, close, True


async def serve(host: str, port: int, chunks: int, delay_ms: float, inter_chunk_ms: float) -> None:
    """Serve until SIGTERM/SIGINT."""
    responses = build_responses(chunks)
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: MockProtocol(responses, stats, delay_ms / 1000.0, inter_chunk_ms / 1000.0),
        host,
        port,
        backlog=1024,
        reuse_address=True,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"mock-upstream listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = any free port, printed at start)")
    parser.add_argument("--stream-chunks", type=int, default=16, help="content events per streamed answer")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before answering (default 0)")
    parser.add_argument("--inter-chunk-ms", type=float, default=0.0, help="wait between streamed events")
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    if not 1 <= args.stream_chunks <= 10_000:
        parser.error("--stream-chunks must be between 1 and 10000")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.stream_chunks, args.delay_ms, args.inter_chunk_ms))
    sys.exit(0)


if __name__ == "__main__":
    main()
