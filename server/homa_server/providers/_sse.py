"""Incremental Server-Sent Events parser (WHATWG "event stream interpretation").

`SSEDecoder` turns raw bytes, fed in arbitrary chunks, into `SSEEvent`s; `aiter_sse` wraps it around an
async byte iterator (for example `httpx.Response.aiter_bytes()`).

What it handles, per the spec: `\\n`, `\\r\\n` and `\\r` line endings (including a `\\r\\n` split across
two chunks), multi-line `data:` (joined with `\\n`), `event:`, `id:` and `retry:` fields, comment
lines (`:`), a single optional space after the colon, a leading UTF-8 BOM, and blank lines that
dispatch an event only when data was seen.

Truncation: the spec silently drops an event that is not followed by a blank line when the stream
ends. That silence would hide an upstream that died mid-event, so `aiter_sse` raises `SSETruncated`
instead, and `SSEDecoder.pending` tells direct users the same thing.

Performance: line splitting is done by `bytes.splitlines` (C), payloads stay `bytes` (`orjson.loads`
takes them directly, no decode/encode round trip), and no regular expressions are used.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent", "SSETruncated", "aiter_sse"]

_BOM = b"\xef\xbb\xbf"
_LINE_BREAKS = (b"\n", b"\r")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event.

    Attributes:
        data: the `data` field lines joined with `\\n`, as raw UTF-8 bytes.
        event: the `event` field, or "message" when absent.
        id: the last event id seen so far on the stream (it persists across events), or None.
        retry: the reconnection time in milliseconds from a `retry` field of this event, or None.
    """

    data: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    @property
    def text(self) -> str:
        """`data` decoded as UTF-8 (invalid bytes replaced, as the spec requires)."""
        return self.data.decode("utf-8", "replace")


class SSETruncated(Exception):  # noqa: N818 - reads as a condition, like StopIteration
    """The byte stream ended in the middle of an event (no terminating blank line).

    Attributes:
        partial: the undispatched bytes/fields that were buffered, for diagnostics only.
    """

    def __init__(self, partial: bytes) -> None:
        super().__init__(f"event stream ended mid-event ({len(partial)} bytes pending)")
        self.partial = partial


class SSEDecoder:
    """Stateful, incremental decoder. Feed it bytes, collect the events it completes.

    Not thread-safe; use one decoder per stream.
    """

    __slots__ = ("_data", "_event", "_has_data", "_id", "_line_parts", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._line_parts: list[bytes] = []  # an unfinished line, kept in pieces to avoid O(n^2) joins
        self._skip_lf = False  # the previous chunk ended with "\r": a leading "\n" completes that CRLF
        self._started = False  # BOM check done
        self._data: list[bytes] = []
        self._has_data = False
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered (truncation if at EOF)."""
        return bool(self._line_parts) or self._has_data or self._event is not None

    def pending_bytes(self) -> bytes:
        """The buffered fields of the unfinished event, re-serialised (diagnostics only)."""
        lines = [b"event: " + self._event.encode()] if self._event is not None else []
        lines.extend(b"data: " + data for data in self._data)
        lines.append(b"".join(self._line_parts))
        return b"\n".join(lines)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume `chunk` and return the events it completed, in order (often empty or one)."""
        if not chunk:
            return []
        if not self._started:
            if self._line_parts:
                chunk = b"".join(self._line_parts) + chunk
                self._line_parts.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                # Too short to decide whether the stream starts with a BOM; wait for more bytes.
                self._line_parts.append(chunk)
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
                if not chunk:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self._line_parts.append(chunk)
            return []
        if self._line_parts:
            self._line_parts.append(chunk)
            chunk = b"".join(self._line_parts)
            self._line_parts.clear()

        events: list[SSEEvent] = []
        lines = chunk.splitlines(keepends=True)
        last = lines[-1]
        if not last.endswith(_LINE_BREAKS):
            self._line_parts.append(last)
            lines.pop()
        elif last.endswith(b"\r"):
            self._skip_lf = True
        for raw in lines:
            # Strip the terminator: "\r\n", "\n" or "\r".
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            if line:
                self._field(line)
            elif self._has_data:
                events.append(self._dispatch())
            else:
                # A blank line without data resets the event type and dispatches nothing.
                self._event = None
                self._retry = None
        return events

    def _field(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon == 0:
            return  # comment (often a keep-alive ping)
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._has_data = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        # Unknown field names are ignored, as the spec requires.

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = SSEEvent(data, self._event or "message", self._id, self._retry)
        self._data = []
        self._has_data = False
        self._event = None
        self._retry = None
        return event


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncGenerator[SSEEvent, None]:
    """Yield the events of an SSE byte stream as they complete.

    Args:
        chunks: the raw body, in any chunking.

    Raises:
        SSETruncated: the stream ended with an unfinished event buffered. Events completed before
            it were already yielded.

    Cancellation: closing this generator does not close `chunks`; wrap the HTTP response itself in
    `async with` so the connection is released.
    """
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    if decoder.pending:
        raise SSETruncated(decoder.pending_bytes())
