"""Cost of a call from the model table's list prices, in integer micro-USD.

Contract: `cost_micros(kind, model, ...)` prices the tokens of one call served by a provider of adapter
`kind` as provider-side `model`:
    * prices are USD per million tokens, i.e. exactly micro-USD per token;
    * input tokens include cached ones: when the table has a `cached_input` price, cached tokens are
      charged at it and the rest at `input`; otherwise every input token is charged at `input`;
    * output tokens include reasoning tokens (reasoning is not charged twice);
    * an unknown price (unlisted model, or price left out) counts as 0;
    * the total is rounded half-up to a whole micro-USD once, at the end.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from homa_server.catalog.table import model_table

_ZERO = Decimal(0)


def cost_micros(
    kind: str, model: str, *, input_tokens: int, cached_input_tokens: int, output_tokens: int
) -> int:
    """Cost in micro-USD of the given token counts for `model` served by an adapter of `kind`."""
    entry = model_table().entry(kind, model)
    if entry is None:
        return 0
    price = entry.price
    cached = min(max(cached_input_tokens, 0), max(input_tokens, 0))
    if price.cached_input is not None:
        total = (input_tokens - cached) * (price.input or _ZERO) + cached * price.cached_input
    else:
        total = input_tokens * (price.input or _ZERO)
    total += output_tokens * (price.output or _ZERO)
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
