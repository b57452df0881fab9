"""Error-mapping pieces every vendor's error_mapping.py shares.

What is shared is what is the same to the letter across vendors: the UPSTREAM_PROTOCOL_ERROR
error, the classification record (`ErrorClass`) and the credentials class every vendor uses, the
"<provider> <summary> (<where>)[: <detail>]" message with its credential hint, the scrubbing of
upstream messages (each vendor passes its own pattern of key-like tokens), and the
`x-should-retry` override. What differs per vendor stays there: its other classes (their
summaries differ), how a status and body are classified, the metadata each vendor reports, and
the retry delay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from homa_server.errors import Code, GatewayError, Reason

__all__ = [
    "CREDENTIALS",
    "MAX_MESSAGE",
    "ErrorClass",
    "compose_message",
    "protocol_error",
    "safe_message",
    "should_retry",
]

MAX_MESSAGE = 500  # upstream messages are cut after this many characters


def protocol_error(provider: str, detail: str) -> GatewayError:
    """The upstream answered with something that is not its protocol (bad JSON, wrong shape,
    wrong content type, corrupt framing).

    UNAVAILABLE and retryable, like an HTTP 502 from a proxy: the upstream, not the caller, is at
    fault and another attempt or deployment may well work.
    """
    return GatewayError(
        f"{provider} sent an invalid response: {detail}",
        Code.UNAVAILABLE,
        Reason.UPSTREAM_PROTOCOL_ERROR,
        retryable=True,
        metadata={"provider": provider},
    )


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """How one kind of upstream failure is reported."""

    code: Code
    reason: Reason
    retryable: bool
    summary: str  # "{provider} <summary> (<where>)"
    detail: bool = True  # append the (scrubbed) upstream message


CREDENTIALS = ErrorClass(
    Code.INTERNAL, Reason.UPSTREAM_CREDENTIALS_REJECTED, False, "rejected the gateway's credentials", False
)


def safe_message(message: object, secret: re.Pattern[str]) -> str:
    """`message` with whatever `secret` matches replaced by "[redacted]", cut at `MAX_MESSAGE`
    characters; "" for an empty message or one that is not a string."""
    if not isinstance(message, str) or not message:
        return ""
    cleaned = secret.sub("[redacted]", message)
    if len(cleaned) > MAX_MESSAGE:
        cleaned = cleaned[:MAX_MESSAGE] + "..."
    return cleaned


def compose_message(
    provider: str, kind: ErrorClass, where: str, detail: str, *, hint: str = "check its API key settings"
) -> str:
    """ "{provider} {summary} ({where})", then ": {detail}" when `kind` shows details and there is
    one, else "; {hint}" for rejected credentials. `detail` must already be scrubbed."""
    message = f"{provider} {kind.summary} ({where})"
    if detail and kind.detail:
        return f"{message}: {detail}"
    if kind is CREDENTIALS:
        return f"{message}; {hint}"
    return message


def should_retry(kind: ErrorClass, headers: Mapping[str, str]) -> bool:
    """`kind.retryable`, unless the upstream overrules it with `x-should-retry: true|false` (as
    the OpenAI and Anthropic SDKs let it)."""
    value = headers.get("x-should-retry")
    return kind.retryable if value not in ("true", "false") else value == "true"
