"""Gemini `citationMetadata` and `groundingMetadata` -> homa `Citation`s.

- `citationMetadata.citationSources[]` (recitation of web pages or code): url = `uri`, span =
  `startIndex`/`endIndex`. The source `license` has no Citation field and is not kept.
- `groundingMetadata` (Google Search, Maps or file-search grounding, enabled through
  `provider_options.extra_body`): one Citation per (support, chunk) pair, with url/title from the
  chunk's `web`, `retrievedContext`, `maps` or `image` source, `cited_text` from a retrieved
  context's `text`, `source_id` = the chunk's index in `groundingChunks`, and the span from the
  support's `segment`. Chunks that no support references get one Citation each, span unknown (-1).

Offsets: Gemini measures spans in UTF-8 bytes, homa in characters of the answer text (the
model's non-thought text, concatenated). `AnswerText` keeps that text as bytes to convert offsets;
a grounding segment's `partIndex` is resolved against the part offsets of a whole response (a
stream's chunks have no stable part numbering, so there the whole emitted text is the base).
"""

from __future__ import annotations

from typing import Any

from homa.type.v1 import content_pb2

__all__ = ["AnswerText", "citations_from"]

_SOURCE_KINDS = ("web", "retrievedContext", "maps", "image")


class AnswerText:
    """The answer text seen so far, as UTF-8 bytes, with the byte offset of each text part."""

    __slots__ = ("_data", "part_starts")

    def __init__(self) -> None:
        self._data = bytearray()
        self.part_starts: dict[int, int] = {}

    def add(self, text: str, part_index: int | None = None) -> None:
        """Append a text part (record its start under `part_index` when given)."""
        if part_index is not None:
            self.part_starts[part_index] = len(self._data)
        self._data += text.encode("utf-8")

    def chars(self, byte_offset: int) -> int:
        """The character offset of `byte_offset` (clamped to the text; a split character counts
        as not reached)."""
        if byte_offset <= 0:
            return 0
        return len(self._data[:byte_offset].decode("utf-8", "ignore"))


def citations_from(candidate: dict[str, Any], answer: AnswerText) -> list[content_pb2.Citation]:
    """Every citation `candidate` carries (empty when it has none)."""
    citations: list[content_pb2.Citation] = []
    metadata = candidate.get("citationMetadata")
    if isinstance(metadata, dict):
        for source in metadata.get("citationSources") or ():
            if isinstance(source, dict):
                citations.append(_citation_source(source, answer))
    grounding = candidate.get("groundingMetadata")
    if isinstance(grounding, dict):
        citations.extend(_grounding(grounding, answer))
    return citations


def _citation_source(source: dict[str, Any], answer: AnswerText) -> content_pb2.Citation:
    # proto3 JSON omits zero values: a missing startIndex is 0; a missing endIndex is unknown.
    start = answer.chars(int(source.get("startIndex") or 0))
    end = source.get("endIndex")
    return content_pb2.Citation(
        url=str(source.get("uri") or ""),
        start_index=start,
        end_index=answer.chars(int(end)) if end is not None else -1,
    )


def _grounding(grounding: dict[str, Any], answer: AnswerText) -> list[content_pb2.Citation]:
    chunks = grounding.get("groundingChunks") or []
    if not isinstance(chunks, list):
        return []
    citations = []
    referenced: set[int] = set()
    for support in grounding.get("groundingSupports") or ():
        if not isinstance(support, dict):
            continue
        start, end = _segment_span(support.get("segment"), answer)
        for index in support.get("groundingChunkIndices") or ():
            if isinstance(index, int) and 0 <= index < len(chunks):
                referenced.add(index)
                citations.append(_chunk_citation(chunks[index], index, start, end))
    for index, chunk in enumerate(chunks):
        if index not in referenced:
            citations.append(_chunk_citation(chunk, index, -1, -1))
    return citations


def _segment_span(segment: Any, answer: AnswerText) -> tuple[int, int]:
    if not isinstance(segment, dict):
        return -1, -1
    base = answer.part_starts.get(int(segment.get("partIndex") or 0), 0)
    start = base + int(segment.get("startIndex") or 0)
    end_value = segment.get("endIndex")
    if end_value is not None:
        end = base + int(end_value)
    else:
        end = start + len(str(segment.get("text") or "").encode("utf-8"))
    return answer.chars(start), answer.chars(end)


def _chunk_citation(chunk: Any, index: int, start: int, end: int) -> content_pb2.Citation:
    source: dict[str, Any] = {}
    if isinstance(chunk, dict):
        for kind in _SOURCE_KINDS:
            value = chunk.get(kind)
            if isinstance(value, dict):
                source = value
                break
    return content_pb2.Citation(
        url=str(source.get("uri") or source.get("sourceUri") or ""),
        title=str(source.get("title") or ""),
        cited_text=str(source.get("text") or ""),
        start_index=start,
        end_index=end,
        source_id=str(index),
    )
