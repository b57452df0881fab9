"""The shared plumbing the OpenAI adapter stands on: `_http` (timeouts, transport errors,
Retry-After) and `_protojson` (Struct <-> plain values)."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._http import TimeoutPolicy, build_client, parse_retry_after, transport_error
from homa_server.providers._protojson import dict_to_struct, python_to_value, struct_to_dict, value_to_python
from homa_server.providers.base import CallContext
from homa_server.settings import ProviderSettings

SETTINGS = ProviderSettings(kind="openai", connect_timeout_s=5.0, read_timeout_s=60.0, max_connections=7)


# ---- _http -------------------------------------------------------------------------------------


def test_timeout_without_deadline_uses_settings():
    timeout = TimeoutPolicy(SETTINGS).for_call(CallContext(model="m"))
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5.0, 60.0, 60.0, 60.0)


def test_timeout_is_bounded_by_the_deadline():
    timeout = TimeoutPolicy(SETTINGS).for_call(CallContext(model="m", deadline=time.monotonic() + 2.0))
    assert timeout.connect is not None
    assert timeout.read is not None
    assert 1.5 < timeout.read <= 2.0
    assert timeout.connect == pytest.approx(timeout.read, abs=0.01)
    assert timeout.write == timeout.read == timeout.pool


def test_long_deadline_keeps_the_connect_timeout():
    timeout = TimeoutPolicy(SETTINGS).for_call(CallContext(model="m", deadline=time.monotonic() + 30.0))
    assert timeout.connect == 5.0
    assert timeout.read is not None
    assert 29.0 < timeout.read <= 30.0


def test_spent_deadline_raises():
    with pytest.raises(GatewayError) as caught:
        TimeoutPolicy(SETTINGS).for_call(CallContext(model="m", deadline=time.monotonic() - 0.1))
    assert caught.value.code == Code.DEADLINE_EXCEEDED


async def test_client_uses_pool_limits_and_http11():
    client = build_client(SETTINGS, headers={"X-A": "1"})
    try:
        assert client.headers["x-a"] == "1"
        assert client.timeout.connect == 5.0
        assert not client.follow_redirects
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (httpx.ConnectError("refused"), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        (httpx.ConnectTimeout("slow"), Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT),
        (httpx.ReadTimeout("slow"), Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT),
        (httpx.PoolTimeout("busy"), Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT),
        (httpx.ReadError("reset"), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
        (httpx.RemoteProtocolError("bad"), Code.UNAVAILABLE, Reason.UPSTREAM_UNAVAILABLE),
    ],
)
def test_transport_errors(exc, code, reason):
    error = transport_error("openai", exc)
    assert (error.code, error.reason, error.retryable) == (code, reason, True)
    assert error.metadata["provider"] == "openai"


def test_transport_error_message_has_no_url():
    exc = httpx.ConnectError("boom https://api.example.com/v1?key=secret")
    assert "secret" not in transport_error("p", exc).message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "200"}, 0.2),
        ({"retry-after-ms": "200", "retry-after": "9"}, 0.2),
        ({"retry-after-ms": "nope", "retry-after": "9"}, 9.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers, expected):
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_retry_after_http_date():
    now = 1_800_000_000.0
    headers = httpx.Headers({"Retry-After": formatdate(now + 30, usegmt=True)})
    assert parse_retry_after(headers, now=now) == pytest.approx(30.0)
    past = httpx.Headers({"Retry-After": formatdate(now - 30, usegmt=True)})
    assert parse_retry_after(past, now=now) == 0.0


# ---- _protojson ----------------------------------------------------------------------------


def test_integral_numbers_come_back_as_int():
    schema = {
        "type": "array",
        "maxItems": 3,
        "items": {"type": "number", "minimum": 0.5},
        "x": [1, 2.0, -0.0],
    }
    result = struct_to_dict(dict_to_struct(schema))
    assert result == {
        "type": "array",
        "maxItems": 3,
        "items": {"type": "number", "minimum": 0.5},
        "x": [1, 2, 0],
    }
    assert type(result["maxItems"]) is int
    assert type(result["items"]["minimum"]) is float


def test_huge_numbers_stay_float():
    assert value_to_python(python_to_value(2.0**60)) == 2.0**60
    assert type(value_to_python(python_to_value(2.0**60))) is float


def test_empty_containers_and_nulls_round_trip():
    data = {"a": {}, "b": [], "c": None, "d": [[], {}], "e": False, "f": ""}
    assert struct_to_dict(dict_to_struct(data)) == data


def test_unset_value_is_none():
    assert value_to_python(struct_pb2.Value()) is None


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": float("inf")}])
def test_non_json_numbers_are_rejected(bad):
    with pytest.raises(ValueError, match="not a JSON number"):
        dict_to_struct(bad)


@pytest.mark.parametrize("bad", [{"x": b"bytes"}, {"x": object()}, {1: "int key"}])
def test_unsupported_types_are_rejected(bad):
    with pytest.raises(TypeError):
        dict_to_struct(bad)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6))
def test_round_trip_is_exact_for_json_values(data):
    assert struct_to_dict(dict_to_struct(data)) == data
