"""Usage metering of chat calls: one `UsageRecord` per admitted call, whatever way it ends.

Contract:
    * A `UsageMeter` is created once a call is admitted (validated, resolved, allowed: the provider
      is about to be called) and `close(exc)` records it exactly once (later calls are no-ops), so
      dispatchers call it from a `finally`.
    * Status: completed (no error, or the client went away after the `finish` event), cancelled
      (CancelledError, or the stream generator closed early by the client), interrupted (stream cut:
      UPSTREAM_STREAM_INTERRUPTED, or a failure after provider output was delivered, e.g. the
      deadline mid-stream), failed (any other error; `error_reason` is the GatewayError reason).
    * Tokens: the last (cumulative) usage the provider reported. A cancelled or interrupted call
      without any usage report carries estimates: input tokens counted from the request with the
      local tokenizer (tokens.py), output tokens from the text actually delivered.
    * Cost: `catalog.pricing.cost_micros` on those tokens. Records never hold message contents.
"""

from __future__ import annotations

import asyncio
import logging
import time

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import usage_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.errors import GatewayError, Reason
from homa_server.observability.call_state import current_call
from homa_server.store.database import now_us
from homa_server.store.records import Recorder, UsageRecord, UsageStatus
from homa_server.tokens import count_request_tokens, encoding_name_for, get_encoding

log = logging.getLogger("homa.usage")


def feature_name(default: str) -> str:
    """The current RPC as "service.Method" ("/homa.chat.v1.ChatService/Converse" → "chat.Converse")."""
    state = current_call.get()
    if state is None or "/" not in state.method:
        return default
    service, _, method = state.method.rpartition("/")
    parts = service.strip("/").split(".")
    area = parts[1] if len(parts) >= 3 and parts[0] == "homa" else parts[-1]
    return f"{area}.{method}"


class UsageMeter:
    """Observes one admitted chat call and records its usage once (see the module docstring)."""

    def __init__(
        self,
        recorder: Recorder,
        request: chat_pb2.CompleteRequest,
        *,
        provider: str,
        kind: str,
        model: str,
        method: str,
        attempts: int = 1,
    ) -> None:
        self._recorder = recorder
        self._request = request
        self._provider, self._kind, self._model = provider, kind, model
        self._method = feature_name(method)
        self._attempts = attempts
        self._started = time.perf_counter()
        self._usage: usage_pb2.Usage | None = None
        self._delivered: list[str] = []
        self._output_seen = False
        self._finished = False
        self._closed = False

    def route(self, *, provider: str, kind: str, model: str, attempts: int) -> None:
        """Follow the serving deployment: call on each attempt (retries, fallbacks); the last one wins."""
        self._provider, self._kind, self._model = provider, kind, model
        self._attempts = attempts

    def served_by(self, provider: str, kind: str, model: str, attempts: int) -> None:
        """The deployment and number of the latest attempt (fallback and retries move the call)."""
        self._provider, self._kind, self._model = provider, kind, model
        self._attempts = attempts

    def set_usage(self, usage: usage_pb2.Usage) -> None:
        """The provider's (cumulative) usage so far."""
        self._usage = usage

    def observe(self, event: chat_pb2.StreamCompleteResponse) -> None:
        """Note one stream event delivered to the client."""
        kind = event.WhichOneof("event")
        if kind == "usage":
            self._usage = event.usage
        elif kind == "finish":
            self._finished = True
        elif kind == "delta":
            self._output_seen = True
            self._delivered.append(event.delta.text)
            self._delivered.append(event.delta.reasoning)
        elif kind == "tool_call_delta":
            self._output_seen = True
            self._delivered.append(event.tool_call_delta.arguments_json)
        elif kind == "tool_call":
            self._output_seen = True

    def _status(self, exc: BaseException | None) -> tuple[UsageStatus, str]:
        if exc is None or (self._finished and isinstance(exc, GeneratorExit | asyncio.CancelledError)):
            return "completed", ""
        if isinstance(exc, GeneratorExit | asyncio.CancelledError):
            return "cancelled", ""
        reason = exc.reason if isinstance(exc, GatewayError) else Reason.INTERNAL
        if reason == Reason.UPSTREAM_STREAM_INTERRUPTED or self._output_seen:
            return "interrupted", str(reason)
        return "failed", str(reason)

    def _estimate(self) -> usage_pb2.Usage:
        encoding = get_encoding(encoding_name_for(self._model))
        counted = count_request_tokens(
            chat_pb2.CountTokensRequest(
                model=self._model, messages=self._request.messages, tools=self._request.tools
            ),
            self._model,
        )
        output = len(encoding.encode_ordinary("".join(self._delivered)))
        return usage_pb2.Usage(input_tokens=counted.input_tokens, output_tokens=output)

    def close(self, exc: BaseException | None) -> None:
        """Record the call (once); `exc` is what ended it, None for success. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            status, reason = self._status(exc)
            usage = self._usage
            if usage is None:
                usage = self._estimate() if status in ("cancelled", "interrupted") else usage_pb2.Usage()
            self._recorder.usage(self._record(status, reason, usage))
        except Exception:
            log.exception("usage metering failed")

    def _record(self, status: UsageStatus, reason: str, usage: usage_pb2.Usage) -> UsageRecord:
        state = current_call.get()
        principal = state.principal if state is not None else None
        return UsageRecord(
            time_us=now_us(),
            method=self._method,
            tenant=principal.tenant if principal is not None else "",
            status=status,
            request_id=state.request_id if state is not None else "",
            api_key_id=(principal.key_id or "") if principal is not None else "",
            principal=principal.subject if principal is not None else "",
            auth_method=principal.method if principal is not None else "",
            model=f"{self._provider}/{self._model}",
            provider=self._provider,
            attempts=self._attempts,
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_micros=cost_micros(
                self._kind,
                self._model,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
            ),
            latency_ms=(time.perf_counter() - self._started) * 1000.0,
            error_reason=reason,
        )
