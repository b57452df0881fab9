"""Usage metering of image calls: one `UsageRecord` per Generate, StreamGenerate, Edit or
CreateVariation call, however it ends.

`ImageMeter.close(error)` records exactly once (later calls are no-ops), so dispatchers call it from
a `finally`. Status: completed (no error), cancelled (CancelledError or GeneratorExit: the client
went away), interrupted (a stream that failed after delivering at least one image), failed (any
other error; `error_reason` is the GatewayError reason). `images` is the number of images returned
(or streamed) and the tokens are those the provider reported (GPT image models bill in tokens).
Analyze is metered by the chat path it runs through. Records never hold prompts or image bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from homa.type.v1 import usage_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.errors import GatewayError, Reason
from homa_server.observability.call_state import current_call
from homa_server.routing.metering import feature_name
from homa_server.store.database import now_us
from homa_server.store.records import Recorder, UsageRecord, UsageStatus

__all__ = ["ImageMeter"]

log = logging.getLogger("homa.image")


class ImageMeter:
    """Collects what one image call produced and records it once on `close`."""

    def __init__(
        self, recorder: Recorder | None, method: str, provider_name: str, provider_kind: str, model: str
    ) -> None:
        self._recorder = recorder
        self._method = method
        self._provider = provider_name
        self._kind = provider_kind
        self._model = model
        self._started = time.perf_counter()
        self._closed = False
        self.images = 0
        self.usage = usage_pb2.Usage()

    def close(self, error: BaseException | None) -> None:
        """Record the call (first call only); never raises."""
        if self._closed or self._recorder is None:
            self._closed = True
            return
        self._closed = True
        try:
            self._recorder.usage(self._record(error))
        except Exception:
            log.exception("image usage metering failed")

    def _record(self, error: BaseException | None) -> UsageRecord:
        status: UsageStatus = "completed"
        reason = ""
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            status = "cancelled"
        elif error is not None:
            status = "interrupted" if self.images else "failed"
            reason = str(error.reason if isinstance(error, GatewayError) else Reason.INTERNAL)
        state = current_call.get()
        principal = state.principal if state is not None else None
        return UsageRecord(
            time_us=now_us(),
            method=feature_name(self._method),
            tenant=principal.tenant if principal is not None else "",
            status=status,
            request_id=state.request_id if state is not None else "",
            api_key_id=(principal.key_id or "") if principal is not None else "",
            principal=principal.subject if principal is not None else "",
            auth_method=principal.method if principal is not None else "",
            model=f"{self._provider}/{self._model}",
            provider=self._provider,
            attempts=1,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            images=self.images,
            cost_micros=cost_micros(
                self._kind,
                self._model,
                input_tokens=self.usage.input_tokens,
                cached_input_tokens=0,
                output_tokens=self.usage.output_tokens,
            ),
            latency_ms=(time.perf_counter() - self._started) * 1000.0,
            error_reason=reason,
        )
