"""Pure parts of auditing: the canonical form and hash, action names, address masking, key hints."""

from __future__ import annotations

import hashlib
import json

import pytest

from homa_server.auth.principal import Principal
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import CallState
from homa_server.rpc.interceptors.access_audit import AccessAuditor, action_name, mask_peer, principal_hint
from homa_server.store.audit import CANONICAL_FIELDS, GENESIS_HASH, canonical_form, event_hash
from homa_server.store.records import MemoryRecorder

EVENT = {
    "sequence": 1,
    "event_id": "evt_1",
    "time_us": 5,
    "actor": "key_1",
    "tenant": "acme",
    "auth_method": "api_key",
    "action": "api_key.create",
    "resource": "apiKeys/key_2",
    "outcome": 1,
    "reason": "",
    "request_id": "r",
    "client_address": "10.0.0.0/24",
    "details": {"z": 1, "a": {"y": "é", "b": 2}},
    "prev_hash": GENESIS_HASH,
    "hash": "ignored",
}


def test_canonical_form_is_sorted_compact_ascii_json_without_hash() -> None:
    text = canonical_form(EVENT)
    assert "hash" not in json.loads(text)
    assert set(json.loads(text)) == set(CANONICAL_FIELDS)
    assert text.startswith('{"action":"api_key.create","actor":"key_1","auth_method":"api_key",')
    assert '"details":{"a":{"b":2,"y":"\\u00e9"},"z":1}' in text
    assert " " not in text.replace("api_key.", "")
    expected = hashlib.sha256((GENESIS_HASH + text).encode()).hexdigest()
    assert event_hash(GENESIS_HASH, EVENT) == expected
    assert event_hash(GENESIS_HASH, {**EVENT, "hash": "other"}) == expected
    assert event_hash(GENESIS_HASH, {**EVENT, "actor": "key_9"}) != expected
    assert event_hash("1" * 64, EVENT) != expected


@pytest.mark.parametrize(
    ("method", "action"),
    [
        ("/homa.chat.v1.ChatService/Complete", "chat.ChatService/Complete"),
        ("/homa.admin.v1.AdminService/ListAuditEvents", "admin.AdminService/ListAuditEvents"),
        ("/grpc.health.v1.Health/Check", None),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
        ("garbage", None),
    ],
)
def test_action_names(method: str, action: str | None) -> None:
    assert action_name(method) == action


@pytest.mark.parametrize(
    ("peer", "masked"),
    [
        ("ipv4:203.0.113.77:50211", "203.0.113.0/24"),
        ("ipv6:[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"),
        ("ipv6:[::1]:5000", "::/64"),
        ("unix:/tmp/sock", "unix"),
        ("ipv4:not-an-ip:1", "ipv4"),
    ],
)
def test_client_address_is_masked(peer: str, masked: str) -> None:
    assert mask_peer(peer) == masked


def test_principal_hint_is_only_an_api_key_prefix() -> None:
    key = "homa_sk_" + "AbCd" + "s3cr3t" * 6
    assert principal_hint((("authorization", f"Bearer {key}"),)) == "homa_sk_AbCd"
    assert principal_hint((("authorization", "Bearer eyJhbGciOi.eyJzdWIiOiJib2IifQ.sig"),)) == ""
    assert principal_hint((("authorization", "Bearer homa_sk_"),)) == ""
    assert principal_hint(()) == ""


def _state(principal: Principal | None = None) -> CallState:
    return CallState(request_id="req-1", method="/homa.chat.v1.ChatService/Complete", principal=principal)


def test_outcomes_and_record_access_switch() -> None:
    recorder = MemoryRecorder()
    auditor = AccessAuditor(recorder, record_access=False)
    principal = Principal("bob", "acme", frozenset(), "api_key", key_id="key_7")
    auditor.finished(_state(principal), None, False, (), "ipv4:1.2.3.4:5")
    assert recorder.audit_records == []  # plain access is not recorded when record_access is off
    limited = GatewayError("slow down", Code.RESOURCE_EXHAUSTED, Reason.UPSTREAM_RATE_LIMITED)
    auditor.finished(_state(principal), limited, False, (), "ipv4:1.2.3.4:5")
    failed = GatewayError("x", Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE)
    auditor.finished(_state(principal), failed, False, (), "")
    AccessAuditor(recorder).finished(_state(principal), failed, False, (), "")
    (denied, failure) = recorder.audit_records
    assert (denied.actor, denied.outcome, denied.reason, denied.client_address) == (
        "key_7",
        2,
        "UPSTREAM_RATE_LIMITED",
        "1.2.3.0/24",
    )
    assert (failure.outcome, failure.reason, failure.client_address) == (3, "UPSTREAM_UNAVAILABLE", "")
