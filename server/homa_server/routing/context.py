"""Context-window policy for server-side conversations: what history fits in the model's window.

Contract:
    * The window comes from the capability table (`catalog/table.py`, by provider kind and model),
      else `conversations.default_context_window`. The reply's room is `max_output_tokens` of the
      request, else `conversations.reserve_output_tokens` (capped by the model's own output limit).
      Input is counted with `tokens.py` (OpenAI chat framing; an estimate for other vendors).
    * History is cut only at turn boundaries: a turn starts at a user message and holds the assistant
      replies and tool results that follow, so a tool result never loses its call. System and
      developer messages are pinned (always kept, in their order); so are the new messages and, when
      they continue the last turn (tool results), that whole turn.
    * `fit` keeps the newest whole turns that fit; it raises CONTEXT_LENGTH_EXCEEDED (INVALID_ARGUMENT)
      when even the pinned messages do not fit, so no request the model must reject for length is sent.
    * `summary_request` builds the SUMMARIZE policy's call: the previous summary and the folded turns
      as a plain-text transcript (oldest lines dropped to fit the summary model's window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.catalog.table import model_table
from homa_server.errors import Code, GatewayError, Reason
from homa_server.routing.resolver import Target
from homa_server.tokens import count_request_tokens

PINNED_ROLES = frozenset({content_pb2.ROLE_SYSTEM, content_pb2.ROLE_DEVELOPER})

SUMMARY_INSTRUCTIONS = (
    "You maintain the memory of a conversation. Summarise the transcript below (and the earlier "
    "summary, if any) so that the conversation can continue without it: keep facts, names, numbers, "
    "decisions, open questions and the user's preferences. Answer with the summary only."
)
SUMMARY_PREFIX = "Summary of the earlier part of this conversation:\n"


@dataclass(frozen=True, slots=True)
class Limits:
    """Token room of one call: the model's window and the part reserved for the reply."""

    window: int
    reserve: int

    @property
    def input_budget(self) -> int:
        """Tokens the request's input may use."""
        return self.window - self.reserve


def limits_for(
    target: Target, requested_output: int | None, default_window: int, default_reserve: int
) -> Limits:
    """The window and reply reserve for `target` (see the module docstring)."""
    entry = model_table().entry(target.provider.kind, target.model)
    window = entry.context_window if entry is not None and entry.context_window > 0 else default_window
    if requested_output is not None and requested_output > 0:
        return Limits(window, requested_output)
    reserve = default_reserve
    if entry is not None and entry.max_output_tokens > 0:
        reserve = min(reserve, entry.max_output_tokens)
    return Limits(window, reserve)


def context_exceeded(needed: int, limits: Limits, what: str) -> GatewayError:
    """INVALID_ARGUMENT / CONTEXT_LENGTH_EXCEEDED with the numbers (never the contents)."""
    return GatewayError(
        f"{what} needs {needed} input tokens but the model's context window of {limits.window} tokens "
        f"leaves {limits.input_budget} after reserving {limits.reserve} for the reply",
        Code.INVALID_ARGUMENT,
        Reason.CONTEXT_LENGTH_EXCEEDED,
        metadata={
            "input_tokens": str(needed),
            "context_window": str(limits.window),
            "reserved_output_tokens": str(limits.reserve),
        },
    )


class TokenMeter:
    """Counts input tokens of messages for one model and tool set (tokens.py framing)."""

    def __init__(self, model: str, tools: Sequence[content_pb2.Tool] = ()) -> None:
        self._model = model
        self._primer = count_request_tokens(chat_pb2.CountTokensRequest(), model).input_tokens
        #: Reply primer plus tool definitions: paid once per request.
        self.fixed = count_request_tokens(chat_pb2.CountTokensRequest(tools=tools), model).input_tokens

    def message(self, message: content_pb2.Message) -> int:
        """Tokens one message adds (framing included)."""
        counted = count_request_tokens(chat_pb2.CountTokensRequest(messages=[message]), self._model)
        return counted.input_tokens - self._primer

    def total(self, messages: Sequence[content_pb2.Message]) -> int:
        """Input tokens of a request with `messages` and the meter's tools."""
        return self.fixed + sum(self.message(m) for m in messages)


def turn_starts(turns: Sequence[content_pb2.Message]) -> list[int]:
    """Indexes where a turn starts (0 and every user message)."""
    return [i for i, m in enumerate(turns) if i == 0 or m.role == content_pb2.ROLE_USER]


@dataclass(frozen=True, slots=True)
class Fit:
    """Outcome of `fit`: history `turns[keep_from:]` is kept; `tokens` is the request's input."""

    keep_from: int
    tokens: int


def fit(
    meter: TokenMeter,
    pinned: Sequence[content_pb2.Message],
    turns: Sequence[content_pb2.Message],
    new: Sequence[content_pb2.Message],
    budget: int,
) -> Fit | None:
    """Keep the newest whole turns of `turns` that fit with `pinned` and `new` in `budget` tokens.

    Returns None when the pinned messages, the new ones and the turn they continue do not fit.
    """
    first_new = next((m for m in new if m.role not in PINNED_ROLES), None)
    starts = turn_starts(turns)
    required = len(turns)
    if turns and first_new is not None and first_new.role != content_pb2.ROLE_USER:
        required = starts[-1]  # the new messages continue the last turn (tool results)
    costs = [meter.message(m) for m in turns]
    used = meter.fixed + sum(meter.message(m) for m in (*pinned, *new)) + sum(costs[required:])
    if used > budget:
        return None
    keep_from = required
    for start in reversed([s for s in starts if s < required]):
        extra = sum(costs[start:keep_from])
        if used + extra > budget:
            break
        used += extra
        keep_from = start
    return Fit(keep_from, used)


def _transcript_line(message: content_pb2.Message) -> str:
    role = content_pb2.Role.Name(message.role).removeprefix("ROLE_").lower()
    pieces: list[str] = []
    for part in message.parts:
        kind = part.WhichOneof("kind")
        if kind == "text":
            pieces.append(part.text)
        elif kind == "tool_call":
            pieces.append(f"[called {part.tool_call.name}({part.tool_call.arguments_json})]")
        elif kind == "tool_result":
            pieces.append(f"[tool result: {part.tool_result.content}]")
        elif kind in ("inline_data", "file_uri", "document"):
            pieces.append(f"[{kind.replace('_', ' ')}]")
    return f"{role}: {' '.join(pieces)}"


def _text_message(role: content_pb2.Role.ValueType, text: str) -> content_pb2.Message:
    message = content_pb2.Message(role=role)
    message.parts.add(text=text)
    return message


def summary_message(text: str) -> content_pb2.Message:
    """The system message carrying a stored summary in front of the kept history."""
    return _text_message(content_pb2.ROLE_SYSTEM, SUMMARY_PREFIX + text)


def summary_request(
    model: str,
    previous: content_pb2.Message | None,
    folded: Sequence[content_pb2.Message],
    limits: Limits,
) -> chat_pb2.CompleteRequest:
    """The call that folds `folded` (and the `previous` summary) into a new summary.

    Raises:
        GatewayError: CONTEXT_LENGTH_EXCEEDED when not even the instructions fit the summary model.
    """
    meter = TokenMeter(model)
    head = _text_message(content_pb2.ROLE_SYSTEM, SUMMARY_INSTRUCTIONS)
    lines = [_transcript_line(m) for m in folded]
    if previous is not None:
        lines.insert(0, "earlier summary: " + " ".join(p.text for p in previous.parts))
    empty = meter.message(_text_message(content_pb2.ROLE_USER, ""))
    base = meter.fixed + meter.message(head) + empty
    if base > limits.input_budget:
        raise context_exceeded(base, limits, "the summary request")
    costs = [meter.message(_text_message(content_pb2.ROLE_USER, line + "\n")) - empty for line in lines]
    first = 0
    while first < len(lines) and base + sum(costs[first:]) > limits.input_budget:
        first += 1
    while True:  # the per-line estimate may differ from the joined text by a few tokens: check
        body = _text_message(content_pb2.ROLE_USER, "\n".join(lines[first:]) or "(nothing to add)")
        if first >= len(lines) or meter.total([head, body]) <= limits.input_budget:
            break
        first += 1
    request = chat_pb2.CompleteRequest(model=model, max_output_tokens=limits.reserve)
    request.messages.extend([head, body])
    return request
