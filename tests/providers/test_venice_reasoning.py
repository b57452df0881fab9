"""Reasoning helpers: the `<think>` splitter, the signature envelope, and their use by the decoder."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from homa_server.providers.venice.chat_stream import VeniceStreamDecoder
from homa_server.providers.venice.reasoning import (
    ThinkSplitter,
    decode_signature,
    encode_signature,
    split_think,
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<think>\nhmm\n</think>\n\nAnswer", ("hmm", "Answer")),
        ("  \n<think>a\n\nb</think>c", ("a\n\nb", "c")),
        ("<think></think>x", ("", "x")),
        ("Answer <think>not reasoning</think>", ("", "Answer <think>not reasoning</think>")),
        ("<thin", ("", "<thin")),
        ("<think>cut off by max tokens", ("cut off by max tokens", "")),
        ("<think>a</thinker> b</think>c </think>", ("a</thinker> b", "c </think>")),
        ("plain text ", ("", "plain text ")),
    ],
)
def test_split_think(content, expected):
    assert split_think(content) == expected


@given(
    st.sampled_from(
        [
            "<think>\n reasoning about </thinker> things\n</think>\n\nThe answer is 42 </think>.",
            "\n<think>a\n\n b \n</think>c",
            "no tags here, just <think> text",
            "<think>unterminated </thi",
        ]
    ),
    st.lists(st.integers(1, 6), min_size=1, max_size=40),
)
def test_any_chunking_gives_the_same_split(content, sizes):
    splitter = ThinkSplitter()
    pieces = []
    position = 0
    for size in sizes * (len(content) // len(sizes) + 1):
        if position >= len(content):
            break
        pieces += splitter.feed(content[position : position + size])
        position += size
    pieces += splitter.flush()
    reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
    text = "".join(text for kind, text in pieces if kind == "text")
    assert (reasoning, text) == split_think(content)
    assert all(piece for _, piece in pieces)  # no empty pieces (no empty deltas)


def test_signature_envelope_round_trips():
    details = [{"type": "reasoning.encrypted", "data": "opaque==", "index": 0}]
    signature = encode_signature(details, "thought")
    assert signature.startswith(b"venice.v1:")
    assert decode_signature(signature) == (details, "thought")
    assert encode_signature(None, None) == b""
    assert encode_signature([], "") == b""


@pytest.mark.parametrize(
    "signature",
    [b"", b"EqQBCkYIBxgCKkD-anthropic", b"venice.v1:{broken", b"venice.v1:[1, 2]"],
)
def test_foreign_or_broken_signatures_are_ignored(signature):
    assert decode_signature(signature) == ([], "")


def test_entries_without_a_type_are_dropped():
    signature = b'venice.v1:{"reasoning_details": [{"type": "reasoning.text"}, {"text": "no type"}, 3]}'
    assert decode_signature(signature) == ([{"type": "reasoning.text"}], "")


def test_decoder_merges_streamed_reasoning_details_by_index():
    decoder = VeniceStreamDecoder("venice", "m", think_tags=True)
    for delta in (
        {"reasoning_details": [{"type": "reasoning.text", "text": "Six", "index": 0}]},
        {"reasoning_details": [{"type": "reasoning.text", "text": " times", "index": 0}]},
        {"reasoning_details": [{"type": "reasoning.text", "signature": "sig", "index": 0}]},
        {"reasoning_details": [{"type": "reasoning.encrypted", "data": "AAA", "index": 1}]},
        {"reasoning_details": [{"type": "reasoning.encrypted", "data": "BBB", "index": 1}]},
        {"reasoning_details": [{"type": "reasoning.summary", "summary": "no index"}]},
    ):
        decoder.feed(b'{"id": "c", "choices": [{"index": 0, "delta": ' + orjson.dumps(delta) + b"}]}")
    events = decoder.done()
    assert decode_signature(events[0].delta.reasoning_signature)[0] == [
        {"type": "reasoning.text", "text": "Six times", "index": 0, "signature": "sig"},
        {"type": "reasoning.encrypted", "data": "AAABBB", "index": 1},
        {"type": "reasoning.summary", "summary": "no index"},
    ]
    assert events[-1].HasField("finish")


def test_reasoning_details_text_is_reasoning_when_no_reasoning_content():
    decoder = VeniceStreamDecoder("venice", "m", think_tags=True)
    events = decoder.feed(
        b'{"id": "c", "choices": [{"index": 0, "delta": {"reasoning_details": '
        b'[{"type": "reasoning.text", "text": "Hmm", "index": 0}]}}]}'
    )
    assert [e.delta.reasoning for e in events] == ["Hmm"]
