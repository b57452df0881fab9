"""Cohere result fields -> homa: finish reasons, usage and citations (shared by whole and streamed
answers), plus the marker that lets a `tool_plan` round-trip as reasoning.

Decisions (also in docs/providers/cohere.md):
- Finish: COMPLETE and STOP_SEQUENCE -> STOP, MAX_TOKENS -> LENGTH, TOOL_CALL -> TOOL_CALLS; the raw
  value is always kept. ERROR and TIMEOUT are failures, not answers: the adapter raises (see
  `error_mapping.finish_error`). Unknown values -> UNSPECIFIED with the raw value.
- Usage comes from `usage.tokens` (what the model processed), not `billed_units` (what is charged,
  which excludes Cohere's own prompt template). `cached_tokens` -> cached_input_tokens (part of the
  input). Cohere reports no reasoning or cache-write counts, so those stay 0. The spec types the
  counts as JSON numbers (Cohere sends e.g. `1661.0`), hence the int conversion.
- Citations: one homa Citation per source of a Cohere citation. Cohere's `text` is the span of the
  answer the sources support (Cohere does not quote the source); it is kept as `cited_text`.
  `start`/`end` are relative to the content block `content_index`; they are shifted by the length of
  the answer text before that block so they index the whole answer, and are -1 for citations of
  thinking or of the tool plan (they do not point into the answer). Document sources give
  `source_id`, `title` and `url` from the document; tool sources give `source_id` (Cohere's
  `<tool_call_id>:<n>`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from homa.type.v1 import content_pb2, usage_pb2

__all__ = [
    "FINISH_FAILURES",
    "FINISH_REASONS",
    "TOOL_PLAN_SIGNATURE",
    "citations_from",
    "usage_from",
]

# Reasoning.signature of a Reasoning part that holds Cohere's `tool_plan` (Cohere has no reasoning
# signatures; this marker is ours). It tells the request builder to send the text back as
# `tool_plan` rather than as thinking content.
TOOL_PLAN_SIGNATURE = b"cohere:tool_plan"

FINISH_REASONS: dict[str, usage_pb2.FinishReason.ValueType] = {
    "COMPLETE": usage_pb2.FINISH_REASON_STOP,
    "STOP_SEQUENCE": usage_pb2.FINISH_REASON_STOP,
    "MAX_TOKENS": usage_pb2.FINISH_REASON_LENGTH,
    "TOOL_CALL": usage_pb2.FINISH_REASON_TOOL_CALLS,
}
FINISH_FAILURES = frozenset({"ERROR", "TIMEOUT"})

_ANSWER_CITATION_TYPES = frozenset({"TEXT_CONTENT"})


def usage_from(usage: Mapping[str, Any]) -> usage_pb2.Usage:
    """Cohere `Usage` -> homa Usage (see the module docstring)."""
    tokens = usage.get("tokens") or {}
    input_tokens = _count(tokens.get("input_tokens"))
    output_tokens = _count(tokens.get("output_tokens"))
    return usage_pb2.Usage(
        input_tokens=input_tokens,
        cached_input_tokens=_count(usage.get("cached_tokens")),
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def citations_from(
    citation: Mapping[str, Any], block_offset: Callable[[int], int | None]
) -> list[content_pb2.Citation]:
    """homa Citations (one per source) for one Cohere `Citation`.

    Args:
        citation: the Cohere citation object.
        block_offset: answer-text length before content block `i`, or None when block `i` is not
            answer text (thinking) or unknown.
    """
    start, end = -1, -1
    if citation.get("type", "TEXT_CONTENT") in _ANSWER_CITATION_TYPES:
        offset = block_offset(int(citation.get("content_index") or 0))
        raw_start, raw_end = citation.get("start"), citation.get("end")
        if offset is not None and isinstance(raw_start, int) and isinstance(raw_end, int):
            start, end = raw_start + offset, raw_end + offset
    text = citation.get("text") or ""
    sources = citation.get("sources") or [{}]
    return [_citation(source, text, start, end) for source in sources]


def _citation(source: Mapping[str, Any], text: str, start: int, end: int) -> content_pb2.Citation:
    result = content_pb2.Citation(cited_text=text, start_index=start, end_index=end)
    document = source.get("document")
    source_id = source.get("id") or (document.get("id") if isinstance(document, dict) else None)
    if isinstance(source_id, str):
        result.source_id = source_id
    if isinstance(document, dict):
        title = document.get("title")
        if isinstance(title, str):
            result.title = title
        url = document.get("url")
        if isinstance(url, str):
            result.url = url
    return result


def _count(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return int(value)
    return 0
