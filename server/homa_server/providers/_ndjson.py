"""Incremental newline-delimited JSON (NDJSON / JSON Lines) line splitter.

`NDJSONDecoder` turns raw bytes, fed in arbitrary chunks, into complete lines; `aiter_ndjson` wraps
it around an async byte iterator (for example `httpx.Response.aiter_bytes()`). Lines are returned as
raw `bytes` without their terminator: `orjson.loads` takes bytes directly, so nothing is decoded
twice, and parsing stays with the caller (which knows what a line means).

Framing rules (ndjson.org, JSON Lines): a line ends with `\\n`; a `\\r` before it is dropped too
(`\\r\\n`); blank or whitespace-only lines are skipped (some servers send them as keep-alives). A
single JSON value never contains a raw newline, so splitting on `\\n` is exact.

Truncation: a body that ends in the middle of a line usually means the upstream died mid-write, so
`aiter_ndjson` raises `NDJSONTruncated` by default instead of guessing; pass `strict=False` for
servers that omit the final newline, and the trailing line is yielded as a line.

Memory: `max_line_bytes` bounds the bytes buffered for one unfinished line, so a server that never
sends a newline cannot make the gateway buffer without limit (`NDJSONLineTooLong`).

Performance: newline search and splitting are `bytes` methods (C); an unfinished line is kept as a
list of pieces and joined once, so a line split over many chunks costs O(n), not O(n^2).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "NDJSONDecoder",
    "NDJSONLineTooLong",
    "NDJSONTruncated",
    "aiter_ndjson",
]

# Large enough for a line that carries base64 images, small enough to stop a runaway body.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024


class NDJSONTruncated(Exception):  # noqa: N818 - reads as a condition, like SSETruncated
    """The byte stream ended in the middle of a line (no terminating newline).

    Attributes:
        partial: the unterminated bytes, for diagnostics only.
    """

    def __init__(self, partial: bytes) -> None:
        super().__init__(f"NDJSON stream ended mid-line ({len(partial)} bytes pending)")
        self.partial = partial


class NDJSONLineTooLong(ValueError):  # noqa: N818 - a condition, raised from `feed`
    """One line grew past the decoder's `max_line_bytes` without a newline."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an NDJSON line exceeded {limit} bytes")
        self.limit = limit


class NDJSONDecoder:
    """Stateful, incremental line splitter. Feed it bytes, collect the lines it completes.

    Args:
        max_line_bytes: the most bytes one unfinished line may buffer.

    Not thread-safe; use one decoder per stream.
    """

    __slots__ = ("_max", "_parts", "_size")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._parts: list[bytes] = []  # pieces of the unfinished line
        self._size = 0

    @property
    def pending(self) -> bool:
        """True when an unfinished line with content is buffered (truncation if at end of input)."""
        return bool(self._parts) and not b"".join(self._parts).isspace()

    def pending_bytes(self) -> bytes:
        """The buffered unfinished line (diagnostics, or the last line of a lenient parse)."""
        return b"".join(self._parts)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Consume `chunk` and return the lines it completed, in order (often empty or one).

        Raises:
            NDJSONLineTooLong: the unfinished line would exceed `max_line_bytes`.
        """
        if not chunk:
            return []
        newline = chunk.find(b"\n")
        if newline < 0:
            self._size += len(chunk)
            if self._size > self._max:
                raise NDJSONLineTooLong(self._max)
            self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
            self._parts.clear()
        pieces = chunk.split(b"\n")
        rest = pieces.pop()  # after the last newline: the start of the next line (maybe empty)
        if rest:
            if len(rest) > self._max:
                raise NDJSONLineTooLong(self._max)
            self._parts.append(rest)
        self._size = len(rest)
        lines: list[bytes] = []
        for piece in pieces:
            line = piece[:-1] if piece.endswith(b"\r") else piece
            if line and not line.isspace():
                if len(line) > self._max:
                    raise NDJSONLineTooLong(self._max)
                lines.append(line)
        return lines


async def aiter_ndjson(
    chunks: AsyncIterable[bytes], *, strict: bool = True, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncGenerator[bytes, None]:
    """Yield the lines of an NDJSON byte stream as they complete.

    Args:
        chunks: the raw body, in any chunking.
        strict: raise `NDJSONTruncated` when the body ends mid-line; with False the trailing
            unterminated line is yielded like any other.
        max_line_bytes: see `NDJSONDecoder`.

    Raises:
        NDJSONTruncated: strict mode and the body ended with an unterminated line. Lines completed
            before it were already yielded.
        NDJSONLineTooLong: one line exceeded `max_line_bytes`.

    Cancellation: closing this generator does not close `chunks`; wrap the HTTP response itself in
    `async with` so the connection is released.
    """
    decoder = NDJSONDecoder(max_line_bytes)
    async for chunk in chunks:
        for line in decoder.feed(chunk):
            yield line
    if decoder.pending:
        partial = decoder.pending_bytes()
        if strict:
            raise NDJSONTruncated(partial)
        yield partial.removesuffix(b"\r")
