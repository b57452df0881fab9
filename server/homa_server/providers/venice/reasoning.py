"""Reasoning on Venice: opaque signatures that must round-trip, and `<think>` blocks in content.

Signatures. Some Venice models return `reasoning_details` (a list of typed objects, e.g. Gemini's
thought signatures or encrypted reasoning) and Gemini over its native transport `thought_signature`
on the assistant message; Venice asks for both to be sent back verbatim on the next turn. homa keeps
them in `Reasoning.signature` as one opaque envelope: `b"venice.v1:"` + the JSON object
`{"reasoning_details": [...], "thought_signature": "..."}` (only the keys Venice sent). A signature
without that prefix comes from another provider (a conversation that moved between providers) and
means nothing to Venice, so `decode_signature` ignores it rather than failing the call.

`<think>` blocks. Reasoning models served raw put their thoughts in the answer text as
`<think>…</think>` before the answer. `ThinkSplitter` turns such a content stream into reasoning and
text pieces incrementally: only a block that opens the content (after optional whitespace) counts,
so an answer that merely mentions the tag is left alone. While a tag may be forming across chunks,
only its possible start (and whitespace before it) is held back. Whitespace around the block is
layout and is dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

__all__ = ["Piece", "ThinkSplitter", "decode_signature", "details_text", "encode_signature", "split_think"]

_PREFIX = b"venice.v1:"
_OPEN = "<think>"
_CLOSE = "</think>"

Piece = tuple[Literal["reasoning", "text"], str]


def encode_signature(details: list[dict[str, Any]] | None, thought_signature: str | None) -> bytes:
    """The envelope for `Reasoning.signature`, or b"" when Venice sent neither field."""
    payload: dict[str, Any] = {}
    if details:
        payload["reasoning_details"] = details
    if thought_signature:
        payload["thought_signature"] = thought_signature
    if not payload:
        return b""
    return _PREFIX + orjson.dumps(payload)


def decode_signature(signature: bytes) -> tuple[list[dict[str, Any]], str]:
    """`reasoning_details` and `thought_signature` from an envelope; ([], "") for anything else.

    Entries that do not have Venice's shape (an object with a string `type`) are dropped: sending
    them would make Venice reject the whole request.
    """
    if not signature.startswith(_PREFIX):
        return [], ""
    try:
        payload = orjson.loads(signature[len(_PREFIX) :])
    except orjson.JSONDecodeError:
        return [], ""
    if not isinstance(payload, dict):
        return [], ""
    raw = payload.get("reasoning_details")
    details = (
        [item for item in raw if isinstance(item, dict) and isinstance(item.get("type"), str)]
        if isinstance(raw, list)
        else []
    )
    thought = payload.get("thought_signature")
    return details, thought if isinstance(thought, str) else ""


def details_text(details: Any) -> str:
    """Readable text carried by `reasoning_details` entries (used when no `reasoning_content` came)."""
    if not isinstance(details, list):
        return ""
    return "".join(
        item["text"] for item in details if isinstance(item, dict) and isinstance(item.get("text"), str)
    )


class ThinkSplitter:
    """Incremental splitter of content that may open with a `<think>` block. One per answer."""

    __slots__ = ("_buffer", "_leading", "_state")

    def __init__(self) -> None:
        self._state: Literal["start", "think", "after", "text"] = "start"
        self._buffer = ""  # undecided start, or a possible partial closing tag
        self._leading = True  # no reasoning emitted yet: whitespace after "<think>" is layout

    def feed(self, text: str) -> list[Piece]:
        """Pieces that are certain after `text` (possibly none while a tag may be forming)."""
        if self._state == "text":
            return [("text", text)]
        pieces: list[Piece] = []
        if self._state == "start":
            self._buffer += text
            head = self._buffer.lstrip()
            if len(head) < len(_OPEN) and _OPEN.startswith(head):
                return pieces  # still undecided (only whitespace or a partial "<think>")
            if not head.startswith(_OPEN):
                self._state = "text"
                text, self._buffer = self._buffer, ""
                return [("text", text)]
            self._state = "think"
            text, self._buffer = head[len(_OPEN) :], ""
        if self._state == "think":
            if self._leading:
                text = text.lstrip()
                self._leading = not text
            text = self._buffer + text
            end = text.find(_CLOSE)
            if end < 0:
                # Hold back a possible partial "</think>" and trailing whitespace (which is layout
                # if the tag follows); emit the rest.
                body = text[: len(text) - _partial_close(text)]
                certain = body.rstrip()
                self._buffer = text[len(certain) :]
                if certain:
                    pieces.append(("reasoning", certain))
                return pieces
            self._buffer = ""
            reasoning = text[:end].rstrip()
            if reasoning:
                pieces.append(("reasoning", reasoning))
            self._state = "after"
            text = text[end + len(_CLOSE) :]
        # "after": drop the blank lines between the block and the answer.
        text = text.lstrip()
        if text:
            self._state = "text"
            pieces.append(("text", text))
        return pieces

    def flush(self) -> list[Piece]:
        """What is still held at the end of the content (an unclosed block counts as reasoning)."""
        held, self._buffer = self._buffer, ""
        if not held:
            return []
        if self._state == "think":
            held = held.rstrip()
            return [("reasoning", held)] if held else []
        return [("text", held)] if self._state == "start" else []


def split_think(content: str) -> tuple[str, str]:
    """(reasoning, text) of a whole answer; reasoning is "" when it does not open with `<think>`."""
    splitter = ThinkSplitter()
    pieces = splitter.feed(content) + splitter.flush()
    reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
    return reasoning, "".join(text for kind, text in pieces if kind == "text")


def _partial_close(text: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of "</think>"."""
    for size in range(min(len(_CLOSE) - 1, len(text)), 0, -1):
        if _CLOSE.startswith(text[-size:]):
            return size
    return 0
