"""The incremental NDJSON line splitter: framing, line endings, chunk boundaries, truncation, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homa_server.providers._ndjson import NDJSONDecoder, NDJSONLineTooLong, NDJSONTruncated, aiter_ndjson


def decode(*chunks: bytes) -> list[bytes]:
    decoder = NDJSONDecoder()
    lines = [line for chunk in chunks for line in decoder.feed(chunk)]
    assert not decoder.pending
    return lines


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def aparse(*chunks: bytes, strict: bool = True) -> list[bytes]:
    return [line async for line in aiter_ndjson(agen(chunks), strict=strict)]


def test_ollama_style_lines():
    body = b'{"message":{"content":"Hel"},"done":false}\n{"done":true,"done_reason":"stop"}\n'
    assert [orjson.loads(line)["done"] for line in decode(body)] == [False, True]


def test_crlf_and_lf_endings():
    assert decode(b'{"a":1}\r\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']


def test_crlf_split_across_chunks():
    assert decode(b'{"a":1}\r', b'\n{"b":2}\r\n') == [b'{"a":1}', b'{"b":2}']


def test_blank_and_whitespace_lines_are_skipped():
    assert decode(b'\n{"a":1}\n\n  \r\n\t\n{"b":2}\n\n') == [b'{"a":1}', b'{"b":2}']


def test_line_split_across_many_chunks():
    line = b'{"model":"llama3.2","message":{"role":"assistant","content":"x"},"done":false}\n'
    assert decode(*[line[i : i + 1] for i in range(len(line))]) == [line[:-1]]


def test_several_lines_in_one_chunk_and_a_remainder():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert decoder.pending
    assert decoder.pending_bytes() == b'{"c"'
    assert decoder.feed(b":3}\n") == [b'{"c":3}']
    assert not decoder.pending


def test_empty_chunks_are_ignored():
    assert decode(b"", b'{"a":1}', b"", b"\n", b"") == [b'{"a":1}']


async def test_async_iteration():
    assert await aparse(b'{"a":1}\n{"b"', b":2}\n") == [b'{"a":1}', b'{"b":2}']


async def test_truncated_last_line_raises_after_earlier_lines():
    received = []
    with pytest.raises(NDJSONTruncated) as caught:
        async for line in aiter_ndjson(agen([b'{"a":1}\n{"done":tr'])):
            received.append(line)
    assert received == [b'{"a":1}']
    assert caught.value.partial == b'{"done":tr'


async def test_lenient_mode_yields_an_unterminated_last_line():
    assert await aparse(b'{"a":1}\n{"b":2}\r', strict=False) == [b'{"a":1}', b'{"b":2}']


async def test_trailing_whitespace_is_not_truncation():
    assert await aparse(b'{"a":1}\n  ') == [b'{"a":1}']


def test_line_limit_without_newline():
    decoder = NDJSONDecoder(max_line_bytes=10)
    decoder.feed(b"12345")
    with pytest.raises(NDJSONLineTooLong):
        decoder.feed(b"678901")


def test_line_limit_with_newline():
    with pytest.raises(NDJSONLineTooLong):
        NDJSONDecoder(max_line_bytes=4).feed(b"123456\n")
    with pytest.raises(NDJSONLineTooLong):
        NDJSONDecoder(max_line_bytes=4).feed(b"1\n123456")


def test_limit_counts_one_line_not_the_stream():
    decoder = NDJSONDecoder(max_line_bytes=8)
    for _ in range(100):
        assert decoder.feed(b'{"a":1}\n') == [b'{"a":1}']


_json_values = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20), st.booleans()),
    max_size=4,
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(_json_values, max_size=8), st.data())
def test_any_chunking_gives_the_same_lines(values, data):
    body = b"".join(orjson.dumps(value) + data.draw(st.sampled_from([b"\n", b"\r\n"])) for value in values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=10)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert [orjson.loads(line) for line in decode(*chunks)] == values
