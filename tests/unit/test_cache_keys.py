"""Response cache keys and rules (policy/cache/keys.py): normalisation, modes, max age, determinism."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError
from homa_server.policy.cache.keys import CachePlan, cache_key, is_deterministic, parameters_digest, plan

MODEL = "mock/echo"


def request(text: str = "hello", **fields: object) -> chat_pb2.CompleteRequest:
    message = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text=text)])
    return chat_pb2.CompleteRequest(model="echo", messages=[message], **fields)  # type: ignore[arg-type]


def key(req: chat_pb2.CompleteRequest, tenant: str = "acme", model: str = MODEL) -> str:
    return cache_key(req, tenant, model, "unary")


def test_key_is_hex_sha256_and_stable() -> None:
    first = key(request())
    assert len(first) == 64
    assert all(c in "0123456789abcdef" for c in first)
    assert key(request()) == first


@pytest.mark.parametrize(
    "irrelevant",
    [
        {"metadata": {"team": "a", "run": "7"}},
        {"user": "end-user-42"},
        {"conversation_id": "conv_1"},
        {
            "options": chat_pb2.RequestOptions(
                cache=chat_pb2.CACHE_MODE_ON,
                cache_max_age=duration_pb2.Duration(seconds=5),
                timeout=duration_pb2.Duration(seconds=9),
                first_token_timeout=duration_pb2.Duration(seconds=1),
                priority=chat_pb2.PRIORITY_HIGH,
                fallback_models=["other"],
                cache_nondeterministic=True,
            )
        },
    ],
)
def test_irrelevant_fields_do_not_change_the_key(irrelevant: dict[str, object]) -> None:
    assert key(request(**irrelevant)) == key(request())


@pytest.mark.parametrize(
    "relevant",
    [
        {"temperature": 0.0},
        {"top_p": 0.5},
        {"max_output_tokens": 10},
        {"stop": ["x"]},
        {"seed": 3},
        {"tools": [content_pb2.Tool(name="lookup")]},
        {"tool_choice": content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_NONE)},
        {"response_format": content_pb2.ResponseFormat(type=content_pb2.ResponseFormat.TYPE_JSON_OBJECT)},
        {"reasoning": chat_pb2.ReasoningOptions(effort=chat_pb2.REASONING_EFFORT_HIGH)},
    ],
)
def test_relevant_fields_change_the_key(relevant: dict[str, object]) -> None:
    assert key(request(**relevant)) != key(request())


def test_messages_tenant_model_and_shape_change_the_key() -> None:
    base = key(request())
    assert key(request("bye")) != base
    assert key(request(), tenant="other") != base
    assert key(request(), model="mock/other") != base
    assert cache_key(request(), "acme", MODEL, "stream") != base


def test_requested_model_name_is_replaced_by_the_resolved_one() -> None:
    aliased = request()
    aliased.model = "fast"
    assert key(aliased) == key(request())


def test_map_order_does_not_change_the_key() -> None:
    one = request()
    one.tools.add(name="t").parameters.update({"a": 1, "b": {"c": 2, "d": 3}})
    two = request()
    two.tools.add(name="t").parameters.update({"b": {"d": 3, "c": 2}, "a": 1})
    assert key(one) == key(two)


def test_parameters_digest_ignores_messages_only() -> None:
    assert parameters_digest(request("a"), MODEL) == parameters_digest(request("b"), MODEL)
    assert parameters_digest(request(max_output_tokens=5), MODEL) != parameters_digest(request(), MODEL)


@pytest.mark.parametrize(
    ("fields", "deterministic"),
    [
        ({}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.7}, False),
        ({"temperature": 0.7, "seed": 1}, True),
        ({"seed": 0}, True),
    ],
)
def test_determinism_rule(fields: dict[str, object], deterministic: bool) -> None:
    assert is_deterministic(request(**fields)) is deterministic


def make_plan(req: chat_pb2.CompleteRequest, tenant: str = "acme") -> CachePlan | None:
    return plan(req, tenant=tenant, model=MODEL, shape="unary", default_max_age_s=60.0)


def test_nondeterministic_requests_bypass_unless_opted_in() -> None:
    assert make_plan(request(temperature=1.0)) is None
    opted = make_plan(request(temperature=1.0, options=chat_pb2.RequestOptions(cache_nondeterministic=True)))
    assert opted is not None
    assert opted.read
    assert opted.write


def test_conversation_requests_are_never_cached() -> None:
    assert make_plan(request(conversation_id="conv_1")) is None
    on = chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_ON)
    assert make_plan(request(conversation_id="conv_1", options=on)) is None


@pytest.mark.parametrize(
    ("mode", "read", "write"),
    [
        (chat_pb2.CACHE_MODE_UNSPECIFIED, True, True),
        (chat_pb2.CACHE_MODE_ON, True, True),
        (chat_pb2.CACHE_MODE_READ_ONLY, True, False),
        (chat_pb2.CACHE_MODE_WRITE_ONLY, False, True),
    ],
)
def test_modes(mode: int, read: bool, write: bool) -> None:
    decided = make_plan(request(options=chat_pb2.RequestOptions(cache=mode)))  # type: ignore[arg-type]
    assert decided is not None
    assert (decided.read, decided.write) == (read, write)


def test_mode_off_bypasses() -> None:
    assert make_plan(request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_OFF))) is None


def test_max_age_default_explicit_zero_and_negative() -> None:
    default = make_plan(request())
    assert default is not None
    assert default.max_age_s == 60.0
    explicit = make_plan(
        request(options=chat_pb2.RequestOptions(cache_max_age=duration_pb2.Duration(seconds=5)))
    )
    assert explicit is not None
    assert explicit.max_age_s == 5.0
    zero = make_plan(request(options=chat_pb2.RequestOptions(cache_max_age=duration_pb2.Duration())))
    assert zero is not None
    assert not zero.read  # nothing is fresh enough
    assert zero.write
    with pytest.raises(GatewayError) as caught:
        make_plan(request(options=chat_pb2.RequestOptions(cache_max_age=duration_pb2.Duration(seconds=-1))))
    assert caught.value.code == Code.INVALID_ARGUMENT


def test_semantic_eligibility_excludes_tools() -> None:
    plain = make_plan(request())
    with_tools = make_plan(request(tools=[content_pb2.Tool(name="lookup")]))
    assert plain is not None
    assert with_tools is not None
    assert plain.semantic
    assert not with_tools.semantic


def test_plan_key_is_the_tenant_key() -> None:
    a, b = make_plan(request(), "acme"), make_plan(request(), "globex")
    assert a is not None
    assert b is not None
    assert a.key != b.key
    assert a.key == key(request(), "acme")
