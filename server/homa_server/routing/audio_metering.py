"""Usage metering of audio calls: one `UsageRecord` per call that reached a provider.

`AudioMeter.close` records the call once (later calls are no-ops): status completed, cancelled
(CancelledError, or the stream closed by the client) or failed (`error_reason` = the GatewayError
reason); `audio_seconds` and token usage as set by the dispatcher; cost from the token prices
(per-minute and per-character prices are not in the price table).
"""

from __future__ import annotations

import asyncio
import logging
import time

from homa.type.v1 import usage_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.errors import GatewayError, Reason
from homa_server.observability.call_state import current_call
from homa_server.providers.base import Provider
from homa_server.routing.metering import feature_name
from homa_server.store.database import now_us
from homa_server.store.records import Recorder, UsageRecord, UsageStatus

__all__ = ["AudioMeter", "audio_duration"]

log = logging.getLogger("homa.audio")


def audio_duration(mime_type: str, data_size: int, header: bytes = b"") -> float:
    """Seconds of audio in `data_size` bytes of PCM ("audio/pcm;rate=N", 16-bit mono) or WAV
    (`header` = the first 44 bytes); 0.0 when it cannot be computed from the bytes."""
    base, _, params = mime_type.partition(";")
    base = base.strip().lower()
    if base in ("audio/pcm", "audio/l16"):
        rate = 24000
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "rate" and value.isdigit():
                rate = int(value)
        return data_size / (rate * 2.0)
    if base in ("audio/wav", "audio/x-wav", "audio/wave") and len(header) >= 44 and header[:4] == b"RIFF":
        channels = int.from_bytes(header[22:24], "little")
        rate = int.from_bytes(header[24:28], "little")
        bits = int.from_bytes(header[34:36], "little")
        per_second = rate * channels * bits / 8
        return max(0, data_size - 44) / per_second if per_second else 0.0
    return 0.0


class AudioMeter:
    """Records the one usage record of an audio call (`close` is idempotent)."""

    def __init__(
        self, recorder: Recorder | None, provider: Provider, model: str, default_method: str
    ) -> None:
        self._recorder = recorder
        self._provider = provider
        self._model = model
        self._method = feature_name(default_method)
        self._started = time.perf_counter()
        self._closed = False
        self.audio_seconds = 0.0
        self.usage = usage_pb2.Usage()

    def close(self, error: BaseException | None) -> None:
        """Record the call: completed without `error`, cancelled on CancelledError/GeneratorExit,
        failed otherwise."""
        if self._closed or self._recorder is None:
            return
        self._closed = True
        try:
            status: UsageStatus = "completed"
            reason = ""
            if isinstance(error, asyncio.CancelledError | GeneratorExit):
                status = "cancelled"
            elif error is not None:
                status = "failed"
                reason = str(error.reason if isinstance(error, GatewayError) else Reason.INTERNAL)
            state = current_call.get()
            principal = state.principal if state is not None else None
            usage = self.usage
            self._recorder.usage(
                UsageRecord(
                    time_us=now_us(),
                    method=self._method,
                    tenant=principal.tenant if principal is not None else "",
                    status=status,
                    request_id=state.request_id if state is not None else "",
                    api_key_id=(principal.key_id or "") if principal is not None else "",
                    principal=principal.subject if principal is not None else "",
                    auth_method=principal.method if principal is not None else "",
                    model=f"{self._provider.name}/{self._model}",
                    provider=self._provider.name,
                    attempts=1,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    audio_seconds=self.audio_seconds,
                    cost_micros=cost_micros(
                        self._provider.kind,
                        self._model,
                        input_tokens=usage.input_tokens,
                        cached_input_tokens=0,
                        output_tokens=usage.output_tokens,
                    ),
                    latency_ms=(time.perf_counter() - self._started) * 1000.0,
                    error_reason=reason,
                )
            )
        except Exception:
            log.exception("audio usage metering failed")
