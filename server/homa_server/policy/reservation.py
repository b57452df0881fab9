"""Reserve before a call, settle after it: the estimate and the `Reservation` handle.

Contract:
    * `estimate_call` prices a request before it is sent: prompt tokens counted locally (tokens.py)
      plus `max_output_tokens` (or the configured default), and the cost of those tokens at list
      price (catalog/pricing.py, micro-USD; unknown prices count 0).
    * A `Reservation` holds what `Limiter.reserve` charged. `settle(tokens=, cost_micros=)` replaces
      the estimate with the real usage: the difference is refunded (or charged) on the same counters
      it was reserved on. It is idempotent — the first settle wins, later ones are no-ops — and never
      raises, so dispatchers call it from `finally` for completed, failed, cancelled and cut calls.
      `release()` settles a call that used nothing (a full refund). A reservation never settled
      (a replica dies) stays charged at its estimate until its windows expire: conservative.
    * Request counts are never refunded: a request that was admitted was made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.policy.backends.base import BackendUnavailableError, LimitBackend
from homa_server.tokens import count_request_tokens

log = logging.getLogger("homa.limits")


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a call is expected to use at most."""

    input_tokens: int
    output_tokens: int
    cost_micros: int

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


def estimate_call(
    request: chat_pb2.CompleteRequest, *, kind: str, model: str, default_max_output: int
) -> Estimate:
    """The upper estimate of one chat call to `model` served by an adapter of `kind`."""
    counted = count_request_tokens(
        chat_pb2.CountTokensRequest(model=model, messages=request.messages, tools=request.tools), model
    )
    output = default_max_output
    if request.HasField("max_output_tokens") and request.max_output_tokens > 0:
        output = request.max_output_tokens
    cost = cost_micros(
        kind, model, input_tokens=counted.input_tokens, cached_input_tokens=0, output_tokens=output
    )
    return Estimate(counted.input_tokens, output, cost)


class Reservation:
    """Tokens and cost reserved for one admitted call (see the module docstring)."""

    def __init__(
        self,
        backend: LimitBackend | None,
        token: str,
        estimate: Estimate | None,
        *,
        token_keys: Sequence[str] = (),
        cost_keys: Sequence[str] = (),
        on_unavailable: Callable[[BackendUnavailableError], None] | None = None,
    ) -> None:
        self.token = token
        self.estimate = estimate
        self._backend = backend
        self._token_keys = tuple(token_keys)
        self._cost_keys = tuple(cost_keys)
        self._on_unavailable = on_unavailable
        self._settled = backend is None or not (self._token_keys or self._cost_keys)

    @property
    def settled(self) -> bool:
        """Whether nothing is left to settle (settled already, or nothing was reserved)."""
        return self._settled

    async def settle(self, *, tokens: int, cost_micros: int) -> None:
        """Replace the estimate with the real `tokens` (input + output) and `cost_micros`; once."""
        if self._settled:
            return
        self._settled = True
        if self._backend is None or self.estimate is None:
            return
        token_delta = max(0, tokens) - self.estimate.tokens
        cost_delta = max(0, cost_micros) - self.estimate.cost_micros
        deltas = [(key, token_delta) for key in self._token_keys]
        deltas += [(key, cost_delta) for key in self._cost_keys]
        try:
            await self._backend.settle(self.token, deltas)
        except BackendUnavailableError as exc:
            if self._on_unavailable is not None:
                self._on_unavailable(exc)
        except Exception:
            log.exception("settling a limiter reservation failed")

    async def release(self) -> None:
        """Settle a call that used nothing: every reserved token and micro-USD is refunded."""
        await self.settle(tokens=0, cost_micros=0)


#: A reservation with nothing to settle (no limit applied, or limits off / failed open).
def unreserved(token: str = "") -> Reservation:
    """A reservation that charged nothing; settling it does nothing."""
    return Reservation(None, token, None)
