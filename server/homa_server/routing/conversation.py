"""Chat turns on a server-side conversation: history in, the new turn and its reply appended.

Contract (Complete and StreamComplete with `conversation_id`; Converse does not take conversations):
    * The conversation must belong to the caller's tenant (else NOT_FOUND, as if missing); the request
      must carry at least one new message; its model defaults to the conversation's.
    * The provider request is the stored history (pinned system messages, then the SUMMARIZE policy's
      summary, then the kept turns) followed by the request's messages, fitted to the model's context
      window by the conversation's policy (routing/context.py): TRIM drops the oldest whole turns,
      SUMMARIZE folds them into a stored summary with one call to `conversations.summary_model` (else
      the conversation's model), FAIL answers CONTEXT_LENGTH_EXCEEDED. No policy sends a request the
      model must reject for length.
    * After the reply, the new messages and the reply are appended in one transaction. Streams relay
      every event as it comes and append when they end — also when cut or cancelled, with the partial
      reply marked `complete=false`. A call that fails before any content stores nothing. The append
      runs in its own task (shielded from the caller's cancellation, bounded by `append_timeout_s`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.auth.tenancy import current_principal, visible_tenant
from homa_server.errors import invalid_field
from homa_server.routing.chat import ChatDispatcher
from homa_server.routing.context import (
    PINNED_ROLES,
    Limits,
    TokenMeter,
    context_exceeded,
    fit,
    limits_for,
    summary_message,
    summary_request,
)
from homa_server.routing.resolver import ModelResolver, Target
from homa_server.settings import ConversationSettings
from homa_server.store.conversations import ConversationStore, StoredConversation, StoredMessage

if TYPE_CHECKING:
    from homa_server.app import Gateway

log = logging.getLogger("homa.conversations")

TRIM, SUMMARIZE, FAIL = (
    chat_pb2.CONTEXT_POLICY_TRIM,
    chat_pb2.CONTEXT_POLICY_SUMMARIZE,
    chat_pb2.CONTEXT_POLICY_FAIL,
)
#: (target, requested output tokens or None) -> the call's window and reply reserve.
LimitsOf = Callable[[Target, int | None], Limits]


@dataclass(frozen=True, slots=True)
class _Turn:
    conversation: StoredConversation
    new: list[content_pb2.Message]
    request: chat_pb2.CompleteRequest  # what the provider receives


@dataclass(slots=True)
class _Plan:
    """What fitting one turn into the context window works with."""

    conversation: StoredConversation
    meter: TokenMeter
    limits: Limits
    pinned: list[content_pb2.Message]
    summary: list[content_pb2.Message]  # zero or one system message
    new: list[content_pb2.Message]
    model: str
    deadline: float | None
    request_id: str


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class ReplyBuilder:
    """Accumulates a streamed reply into the assistant message to store.

    Text and refusal deltas become one text part, reasoning deltas one reasoning part per
    `reasoning_index` (text and signature together), complete `tool_call` events tool-call parts.
    Tool-call fragments are not stored: a call cut mid-way would be invalid history.
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: dict[int, content_pb2.Reasoning] = {}
        self._calls: list[content_pb2.ToolCall] = []
        self.has_content = False
        self.finished = False

    def add(self, event: chat_pb2.StreamCompleteResponse) -> None:
        """Take one stream event."""
        kind = event.WhichOneof("event")
        if kind == "delta":
            delta = event.delta
            self._text.extend(t for t in (delta.text, delta.refusal) if t)
            if delta.reasoning or delta.reasoning_signature or delta.reasoning_redacted:
                block = self._reasoning.setdefault(delta.reasoning_index, content_pb2.Reasoning())
                block.text += delta.reasoning
                block.signature += delta.reasoning_signature
                block.redacted = block.redacted or delta.reasoning_redacted
            self.has_content = self.has_content or bool(
                delta.text or delta.refusal or delta.reasoning or delta.reasoning_signature
            )
        elif kind == "tool_call":
            self._calls.append(event.tool_call)
            self.has_content = True
        elif kind == "tool_call_delta":
            self.has_content = True
        elif kind == "finish":
            self.finished = True

    def message(self) -> content_pb2.Message:
        """The assistant message accumulated so far."""
        message = content_pb2.Message(role=content_pb2.ROLE_ASSISTANT)
        for index in sorted(self._reasoning):
            message.parts.add(reasoning=self._reasoning[index])
        if self._text:
            message.parts.add(text="".join(self._text))
        for call in self._calls:
            message.parts.add(tool_call=call)
        return message


class ConversationTurns:
    """Runs chat requests that name a conversation (see the module docstring)."""

    def __init__(
        self,
        store: ConversationStore,
        dispatcher: ChatDispatcher,
        resolver: ModelResolver,
        settings: ConversationSettings,
        *,
        limits_of: LimitsOf | None = None,
        append_timeout_s: float = 10.0,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._resolver = resolver
        self._settings = settings
        self._limits_of = limits_of or self._catalog_limits
        self._append_timeout_s = append_timeout_s
        self._pending: set[asyncio.Task[int]] = set()

    @classmethod
    def for_gateway(cls, gateway: Gateway) -> ConversationTurns | None:
        """The layer over the gateway's storage, dispatcher and settings; None when storage is not open."""
        if gateway.database is None or gateway.keyring is None:
            return None
        store = ConversationStore(gateway.database, gateway.keyring)
        return cls(store, gateway.dispatcher, gateway.resolver, gateway.settings.conversations)

    def _catalog_limits(self, target: Target, requested_output: int | None) -> Limits:
        settings = self._settings
        return limits_for(
            target, requested_output, settings.default_context_window, settings.reserve_output_tokens
        )

    async def drain(self) -> None:
        """Wait for appends still running after their callers went away (before closing storage)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # --- preparing the provider request -------------------------------------------------------

    async def _prepare(
        self, request: chat_pb2.CompleteRequest, deadline: float | None, request_id: str
    ) -> _Turn:
        if not request.messages:
            raise invalid_field("messages", "at least one new message is required")
        conversation = await self._store.get(request.conversation_id, visible_tenant(current_principal()))
        model = request.model or conversation.model
        target = self._resolver.resolve(model)
        requested = request.max_output_tokens if request.HasField("max_output_tokens") else None
        history = await self._store.messages(conversation)
        plan = _Plan(
            conversation=conversation,
            meter=TokenMeter(target.model, request.tools),
            limits=self._limits_of(target, requested),
            pinned=[m.message for m in history if m.message.role in PINNED_ROLES],
            summary=[conversation.summary] if conversation.summary is not None else [],
            new=list(request.messages),
            model=model,
            deadline=deadline,
            request_id=request_id,
        )
        start = conversation.summary_upto
        turns = [m for m in history if m.message.role not in PINNED_ROLES and m.index >= start]
        kept = await self._fit(plan, turns)
        out = chat_pb2.CompleteRequest()
        out.CopyFrom(request)
        out.ClearField("conversation_id")
        out.model = model
        del out.messages[:]
        out.messages.extend([*plan.pinned, *plan.summary, *kept, *plan.new])
        return _Turn(conversation, plan.new, out)

    async def _fit(self, plan: _Plan, turns: list[StoredMessage]) -> list[content_pb2.Message]:
        """The history turns to send, after applying the conversation's policy (may store a summary)."""
        meter, limits, pinned, new = plan.meter, plan.limits, plan.pinned, plan.new
        messages = [t.message for t in turns]
        budget = limits.input_budget
        found = fit(meter, [*pinned, *plan.summary], messages, new, budget)
        if found is None:
            raise context_exceeded(meter.total([*pinned, *plan.summary, *new]), limits, "the new turn")
        if found.keep_from == 0:
            return messages
        policy = plan.conversation.context_policy or TRIM
        if policy == FAIL:
            needed = meter.total([*pinned, *plan.summary, *messages, *new])
            raise context_exceeded(needed, limits, "the conversation")
        if policy == SUMMARIZE:
            room = max(64, min(1024, budget // 4))
            framing = meter.message(summary_message(""))
            folded = fit(meter, pinned, messages, new, budget - room - framing)
            if folded is not None and folded.keep_from > 0:
                text = await self._summarize(plan, messages[: folded.keep_from], room)
                fresh = summary_message(text)
                cut = folded.keep_from
                upto = turns[cut].index if cut < len(turns) else turns[-1].index + 1
                await self._store.set_summary(plan.conversation, fresh, upto)
                plan.summary[:] = [fresh]
                messages = messages[folded.keep_from :]
                found = fit(meter, [*pinned, *plan.summary], messages, new, budget)
                if found is None:
                    raise context_exceeded(
                        meter.total([*pinned, *plan.summary, *new]), limits, "the new turn"
                    )
        return messages[found.keep_from :]

    async def _summarize(self, plan: _Plan, folded: list[content_pb2.Message], room: int) -> str:
        """One call to the summary model folding `folded` and the previous summary into text."""
        name = self._settings.summary_model or plan.model
        limits = self._limits_of(self._resolver.resolve(name), room)
        request = summary_request(name, plan.conversation.summary, folded, limits)
        reply = await self._dispatcher.complete(request, _remaining(plan.deadline), plan.request_id)
        return "".join(p.text for p in reply.message.parts if p.WhichOneof("kind") == "text").strip()

    # --- running the turn ---------------------------------------------------------------------

    async def _append(self, turn: _Turn, reply: content_pb2.Message, complete: bool) -> None:
        """Append the new messages and the reply in one transaction, in a task the caller's
        cancellation does not stop (bounded by `append_timeout_s`)."""
        items = [(m, True) for m in turn.new] + [(reply, complete)]
        task = asyncio.ensure_future(
            asyncio.wait_for(self._store.append(turn.conversation, items), self._append_timeout_s)
        )
        self._pending.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[int]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conversation append failed", exc_info=task.exception())

    async def complete(
        self, request: chat_pb2.CompleteRequest, remaining: float | None, request_id: str = ""
    ) -> chat_pb2.CompleteResponse:
        """A whole completion on the conversation; the turn is stored before the answer returns.

        Raises:
            GatewayError: NOT_FOUND, INVALID_ARGUMENT (CONTEXT_LENGTH_EXCEEDED), or as the dispatcher.
        """
        deadline = None if remaining is None else time.monotonic() + remaining
        turn = await self._prepare(request, deadline, request_id)
        response = await self._dispatcher.complete(turn.request, _remaining(deadline), request_id)
        reply = content_pb2.Message()
        reply.CopyFrom(response.message)
        if reply.role == content_pb2.ROLE_UNSPECIFIED:
            reply.role = content_pb2.ROLE_ASSISTANT
        await self._append(turn, reply, True)
        return response

    async def stream(
        self, request: chat_pb2.CompleteRequest, remaining: float | None, request_id: str = ""
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        """A streamed completion on the conversation; events are relayed as they come.

        The turn is appended when the stream ends, is cut or is closed by the caller (partial reply
        marked incomplete); nothing is stored when it ends before any content.
        """
        deadline = None if remaining is None else time.monotonic() + remaining
        turn = await self._prepare(request, deadline, request_id)
        reply = ReplyBuilder()
        try:
            async with aclosing(
                self._dispatcher.stream(turn.request, _remaining(deadline), request_id)
            ) as events:
                async for event in events:
                    reply.add(event)
                    yield event
        finally:
            if reply.finished or reply.has_content:
                await self._append(turn, reply.message(), reply.finished)
