"""The incremental SSE parser: framing, fields, line endings, chunk boundaries, truncation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homa_server.providers._sse import SSEDecoder, SSEEvent, SSETruncated, aiter_sse


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    assert not decoder.pending
    return events


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def aparse(*chunks: bytes) -> list[SSEEvent]:
    return [event async for event in aiter_sse(agen(chunks))]


def test_openai_style_events():
    events = decode(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert events == [SSEEvent(b'{"a":1}'), SSEEvent(b"[DONE]")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(newline):
    stream = newline.join(
        [b"event: ping", b"id: 7", b"data: one", b"data: two", b"", b"data: three", b"", b""]
    )
    assert decode(stream) == [SSEEvent(b"one\ntwo", "ping", "7"), SSEEvent(b"three", "message", "7")]


def test_mixed_line_endings():
    assert decode(b"data: a\r\ndata: b\rdata: c\n\r\n") == [SSEEvent(b"a\nb\nc")]


def test_crlf_split_across_chunks_is_one_line_break():
    # "\r" ends a chunk and "\n" starts the next: still one line break, not a blank line.
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent(b"a\nb")]


def test_lone_cr_at_chunk_end_followed_by_data():
    assert decode(b"data: a\r", b"data: b\r\r") == [SSEEvent(b"a\nb")]


def test_line_split_across_many_chunks():
    payload = b'data: {"id":"chatcmpl-1","choices":[]}\n\n'
    assert decode(*[payload[i : i + 1] for i in range(len(payload))]) == [SSEEvent(payload[6:-2])]


def test_field_parsing_rules():
    stream = (
        b": a comment\n"
        b"data\n"  # no colon: field name only, empty value
        b"data:no-space\n"
        b"data:  two spaces\n"  # only one leading space is removed
        b"unknown: ignored\n"
        b"retry: 1500\n"
        b"\n"
    )
    assert decode(stream) == [SSEEvent(b"\nno-space\n two spaces", retry=1500)]


def test_retry_must_be_digits_and_id_without_nul():
    assert decode(b"retry: soon\nid: a\x00b\ndata: x\n\n") == [SSEEvent(b"x")]


def test_id_persists_and_event_type_resets():
    events = decode(b"id: 1\nevent: delta\ndata: a\n\ndata: b\n\n")
    assert events == [SSEEvent(b"a", "delta", "1"), SSEEvent(b"b", "message", "1")]


def test_blank_line_without_data_dispatches_nothing_and_resets_event():
    assert decode(b"event: x\n\ndata: a\n\n") == [SSEEvent(b"a")]


def test_comment_only_stream():
    assert decode(b": keep-alive\n\n: keep-alive\n\n") == []


def test_empty_data_line_dispatches_empty_event():
    assert decode(b"data:\n\n") == [SSEEvent(b"")]


def test_utf8_bom_is_skipped_even_when_split():
    assert decode(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [SSEEvent(b"x")]
    assert decode(b"\xef\xbb\xbfdata: y\n\n") == [SSEEvent(b"y")]


def test_text_property_decodes_utf8():
    event = decode("data: héllo\n\n".encode())[0]
    assert event.text == "héllo"
    assert SSEEvent(b"\xff").text == "\ufffd"


def test_empty_chunks_are_harmless():
    assert decode(b"", b"data: a\n", b"", b"\n", b"") == [SSEEvent(b"a")]


def test_pending_reports_an_unfinished_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.pending
    assert decoder.feed(b"\n") == [SSEEvent(b"a")]
    assert not decoder.pending
    decoder.feed(b"data: partial")
    assert decoder.pending
    assert decoder.pending_bytes() == b"data: partial"
    decoder = SSEDecoder()
    decoder.feed(b"event: x\ndata: a\nda")
    assert decoder.pending_bytes() == b"event: x\ndata: a\nda"


async def test_aiter_sse_yields_events():
    assert await aparse(b"data: a\n\nda", b"ta: b\n\n") == [SSEEvent(b"a"), SSEEvent(b"b")]


@pytest.mark.parametrize(
    "tail",
    [b"data: cut", b"data: complete line but no blank\n", b"event: only\n", b"data: x\r"],
    ids=["mid-line", "no-blank-line", "event-only", "cr-only"],
)
async def test_truncated_final_event_is_reported_not_emitted(tail):
    received = []
    with pytest.raises(SSETruncated) as caught:
        async for event in aiter_sse(agen([b"data: first\n\n", tail])):
            received.append(event)
    assert received == [SSEEvent(b"first")]
    assert caught.value.partial


async def test_clean_end_is_not_truncation():
    assert await aparse(b"data: a\n\n: trailing comment\n") == [SSEEvent(b"a")]


# ---- properties ----------------------------------------------------------------------------

LINE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=30
)
EVENTS = st.lists(
    st.tuples(st.lists(LINE_TEXT, min_size=1, max_size=3), st.sampled_from(["", "delta", "error"])),
    max_size=6,
)


def encode(events: list[tuple[list[str], str]], newline: bytes) -> bytes:
    out = bytearray()
    for lines, name in events:
        if name:
            out += b"event: " + name.encode() + newline
        for line in lines:
            out += b"data: " + line.encode() + newline
        out += newline
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@given(
    EVENTS,
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_chunking_gives_the_same_events(events, newline, cuts):
    data = encode(events, newline)
    expected = [SSEEvent("\n".join(lines).encode(), name or "message") for lines, name in events]
    assert decode(*split(data, cuts)) == expected


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_arbitrary_bytes_never_crash_and_chunking_does_not_matter(data, cuts):
    whole = SSEDecoder()
    pieces = SSEDecoder()
    assert whole.feed(data) == [event for piece in split(data, cuts) for event in pieces.feed(piece)]
    assert whole.pending == pieces.pending
