"""Access auditing: one audit record per Homa RPC, built when the call ends.

Contract (used by rpc/interceptors/gateway.py; see docs/audit.md):
    * `action` is "<package short>.<Service>/<Method>", e.g. "chat.ChatService/Complete" for
      "/homa.chat.v1.ChatService/Complete". Health and reflection are never audited.
    * `outcome`: SUCCESS when the call ended OK; DENIED for UNAUTHENTICATED, PERMISSION_DENIED and
      RESOURCE_EXHAUSTED; FAILURE for every other status (cancellation included, reason CANCELLED).
    * A call rejected while authenticating (UNAUTHENTICATED, or the identity provider unavailable)
      becomes action "auth.failed" with actor "" and, for a Homa API key (`homa_sk_...`), the key's
      public prefix (first 12 characters) as `details.principal_hint`. Nothing else of a credential
      is ever recorded, and no claim of an unverified token is read.
    * The client address is masked: IPv4 to its /24 ("203.0.113.0/24"), IPv6 to its /64.
    * With `record_access` false only denied calls and failed authentications are recorded.
    * The recorder call is a non-blocking append (store/records.Recorder); nothing here awaits.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from typing import Any, Final

from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState
from homa_server.store.records import (
    OUTCOME_DENIED,
    OUTCOME_FAILURE,
    OUTCOME_SUCCESS,
    AuditRecord,
    Recorder,
)

AUTH_FAILED_ACTION: Final = "auth.failed"
API_KEY_PREFIX: Final = "homa_sk_"
#: Characters of an API key that are public (its stored `secret_prefix`).
API_KEY_HINT_CHARS: Final = 12
_DENIED_CODES: Final = frozenset({Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED})
_AUTH_STAGE_CODES: Final = frozenset({Code.UNAUTHENTICATED, Code.UNAVAILABLE})
CANCELLED: Final = GatewayError("cancelled", Code.CANCELLED, Reason.CANCELLED)


def action_name(method: str) -> str | None:
    """ "chat.ChatService/Complete" for "/homa.chat.v1.ChatService/Complete"; None for non-Homa methods."""
    service, _, rpc = method.lstrip("/").partition("/")
    parts = service.split(".")
    if len(parts) < 3 or parts[0] != "homa" or not rpc:
        return None
    return f"{parts[1]}.{parts[-1]}/{rpc}"


@functools.lru_cache(maxsize=4096)
def mask_peer(peer: str) -> str:
    """The masked client address of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5", "unix:...")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
        prefix = 24
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]").split("%")[0]
        prefix = 64
    else:
        return kind
    try:
        return str(ipaddress.ip_network(f"{host}/{prefix}", strict=False))
    except ValueError:
        return kind


def principal_hint(metadata: Any) -> str:
    """The public prefix of a Homa API key presented in `authorization`, else ""."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            token = value.strip().partition(" ")[2].strip()
            if token.startswith(API_KEY_PREFIX) and len(token) > API_KEY_HINT_CHARS:
                return token[:API_KEY_HINT_CHARS]
    return ""


class AccessAuditor:
    """Builds and records the audit record of each finished Homa RPC (see the module docstring)."""

    __slots__ = ("record_access", "recorder")

    def __init__(self, recorder: Recorder, record_access: bool = True) -> None:
        self.recorder = recorder
        self.record_access = record_access

    def finished(
        self,
        state: CallState,
        error: GatewayError | None,
        authenticating: bool,
        metadata: Any,
        peer: str,
    ) -> None:
        """Record the end of one call.

        Args:
            state: the call's state (method, request id, principal if authenticated).
            error: the error it ended with; None for success.
            authenticating: the error was raised before a Principal was established.
            metadata: the invocation metadata (only `authorization`'s API-key prefix is read).
            peer: `context.peer()`.
        """
        action = action_name(state.method)
        if action is None:
            return
        outcome = OUTCOME_SUCCESS
        if error is not None:
            outcome = OUTCOME_DENIED if error.code in _DENIED_CODES else OUTCOME_FAILURE
        details: dict[str, Any] = {}
        if error is not None and authenticating and error.code in _AUTH_STAGE_CODES:
            details = {"rpc": action}
            hint = principal_hint(metadata)
            if hint:
                details["principal_hint"] = hint
            action = AUTH_FAILED_ACTION
        elif outcome != OUTCOME_DENIED and not self.record_access:
            return
        principal = state.principal
        self.recorder.audit(
            AuditRecord(
                time_us=time.time_ns() // 1000,
                actor=(principal.key_id or principal.subject) if principal is not None else "",
                action=action,
                outcome=outcome,
                tenant=principal.tenant if principal is not None else "",
                auth_method=principal.method if principal is not None else "",
                reason=str(error.reason) if error is not None else "",
                request_id=state.request_id,
                client_address=mask_peer(peer) if peer else "",
                details=details,
            )
        )
