"""Provider-independent checks of an EmbedRequest, before routing (no upstream call is made).

Every problem is reported at once as INVALID_ARGUMENT with one BadRequest field violation each:
no inputs or more than `MAX_INPUTS`, an input with no content, an empty text, an empty image,
`dimensions` outside 1..`MAX_DIMENSIONS`, unknown enum values. Model-specific limits (supported
dimensions, text-only models, token limits) are the adapters' to check.
"""

from __future__ import annotations

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import FieldViolation, invalid_argument

__all__ = ["MAX_DIMENSIONS", "MAX_INPUTS", "validate_embed_request"]

MAX_INPUTS = 2048
MAX_DIMENSIONS = 65536
_REPORTED = 20  # at most this many per-input violations are listed


def validate_embed_request(request: embedding_pb2.EmbedRequest) -> None:
    """Raise INVALID_ARGUMENT listing every problem of `request`; return None when it is valid."""
    violations: list[FieldViolation] = []
    count = len(request.inputs)
    if count == 0:
        violations.append(FieldViolation("inputs", "at least one input is required"))
    elif count > MAX_INPUTS:
        violations.append(FieldViolation("inputs", f"at most {MAX_INPUTS} inputs per request, got {count}"))
    per_input: list[FieldViolation] = []
    for i, item in enumerate(request.inputs):
        kind = item.WhichOneof("content")
        if kind is None:
            per_input.append(FieldViolation(f"inputs[{i}]", "set text or image"))
        elif kind == "text" and not item.text.strip():
            per_input.append(FieldViolation(f"inputs[{i}].text", "must not be empty"))
        elif kind == "image" and not item.image.data:
            per_input.append(FieldViolation(f"inputs[{i}].image.data", "must not be empty"))
    violations.extend(per_input[:_REPORTED])
    if request.HasField("dimensions") and not 1 <= request.dimensions <= MAX_DIMENSIONS:
        violations.append(FieldViolation("dimensions", f"must be between 1 and {MAX_DIMENSIONS}"))
    if request.input_type not in embedding_pb2.EmbeddingInputType.values():
        violations.append(FieldViolation("input_type", "unknown value"))
    if request.encoding not in embedding_pb2.EmbeddingEncoding.values():
        violations.append(FieldViolation("encoding", "unknown value"))
    if violations:
        more = len(per_input) - _REPORTED
        suffix = f" (and {more} more invalid inputs)" if more > 0 else ""
        raise invalid_argument(
            f"invalid embed request: {violations[0].field}: {violations[0].description}{suffix}", *violations
        )
