"""Venice chat completion JSON -> homa CompleteResponse; model listing; options; deadlines."""

from __future__ import annotations

import logging
import re
import time

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.venice import VeniceProvider
from homa_server.providers.venice.reasoning import decode_signature, encode_signature
from tests.providers.conftest import call_ctx, chat_request, message
from tests.providers.fakes.openai_upstream import Reply
from tests.providers.fakes.venice_upstream import (
    CREATED,
    FakeVenice,
    completion,
    error_reply,
    json_reply,
    model_list,
    venice_settings,
)
from tests.providers.fakes.venice_upstream import venice_fake_fixture as _venice_fake  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_provider_fixture as _venice_provider  # noqa: F401
from tests.providers.fakes.venice_upstream import venice_upstream_fixture as _venice_upstream  # noqa: F401

MODEL = "zai-org-glm-5-1"
CITATIONS = [
    {
        "content": "So, the sky appears blue because the molecules scatter short wavelengths.",
        "date": "2024-08-13 13:45:16",
        "title": "Why is the sky blue? | BBC Sky at Night Magazine",
        "url": "https://www.skyatnightmagazine.com/space-science/why-is-the-sky-blue",
    },
    {"title": "Why is the sky blue?", "url": "https://theconversation.com/why-is-the-sky-blue-246393"},
]


async def complete(provider: VeniceProvider, fake: FakeVenice, payload: dict) -> chat_pb2.CompleteResponse:
    fake.enqueue(json_reply(payload))
    return await provider.complete_chat(chat_request(), call_ctx(MODEL))


async def test_provider_implements_chat_and_listing_but_not_token_counting(venice_provider):
    assert isinstance(venice_provider, ChatProvider)
    assert isinstance(venice_provider, ModelListingProvider)
    assert not isinstance(venice_provider, TokenCountingProvider)
    assert (venice_provider.name, venice_provider.kind) == ("venice", "venice")


async def test_text_answer(venice_provider, venice_fake):
    response = await complete(venice_provider, venice_fake, completion("The sky is blue."))
    assert response == chat_pb2.CompleteResponse(
        id="chatcmpl-a81fbc2d81a7a083bb83ccf9f44c6e5e",
        message=content_pb2.Message(
            role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text="The sky is blue.")]
        ),
        finish_reason=usage_pb2.FINISH_REASON_STOP,
        raw_finish_reason="stop",
        usage=usage_pb2.Usage(input_tokens=612, output_tokens=146, total_tokens=758),
        create_time={"seconds": CREATED},
    )


async def test_parallel_tool_calls_answer(venice_provider, venice_fake):
    payload = completion(
        None,
        tool_calls=[("call_a", "get_weather", '{"city":"Paris"}'), ("call_b", "get_time", '{"tz":"CET"}')],
        finish_reason="tool_calls",
    )
    response = await complete(venice_provider, venice_fake, payload)
    assert [p.tool_call for p in response.message.parts] == [
        content_pb2.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_b", name="get_time", arguments_json='{"tz":"CET"}'),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stop", usage_pb2.FINISH_REASON_STOP),
        ("length", usage_pb2.FINISH_REASON_LENGTH),
        ("tool_calls", usage_pb2.FINISH_REASON_TOOL_CALLS),
    ],
)
async def test_finish_reasons(venice_provider, venice_fake, raw, expected):
    response = await complete(venice_provider, venice_fake, completion(finish_reason=raw))
    assert (response.finish_reason, response.raw_finish_reason) == (expected, raw)


async def test_content_filter_finish_is_a_finish_reason_not_an_error(venice_provider, venice_fake):
    payload = completion("", finish_reason="content_filter")
    venice_fake.enqueue(Reply(body=json_reply(payload).body, validate=False))  # not in the spec's enum
    response = await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert response.finish_reason == usage_pb2.FINISH_REASON_CONTENT_FILTER
    assert response.raw_finish_reason == "content_filter"


async def test_usage_with_cache_reads_writes_and_reasoning(venice_provider, venice_fake):
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "cache_creation_input_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 256},
    }
    response = await complete(venice_provider, venice_fake, completion(usage=usage))
    assert response.usage == usage_pb2.Usage(
        input_tokens=1200,
        cached_input_tokens=1024,
        cache_write_tokens=64,
        output_tokens=300,
        reasoning_tokens=256,
        total_tokens=1500,
    )


async def test_usage_parts_larger_than_their_totals_are_added(venice_provider, venice_fake):
    # A model that reports cache and reasoning tokens outside prompt/completion counts.
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "total_tokens": 110,
        "prompt_tokens_details": {"cached_tokens": 900, "cache_creation_input_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    response = await complete(venice_provider, venice_fake, completion(usage=usage))
    assert response.usage == usage_pb2.Usage(
        input_tokens=1000, cached_input_tokens=900, output_tokens=60, reasoning_tokens=50, total_tokens=1060
    )


async def test_array_content_is_joined(venice_provider, venice_fake):
    payload = completion(None)
    payload["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "The sky "},
        {"type": "text", "text": "is blue.", "cache_control": {"type": "ephemeral"}},
    ]
    response = await complete(venice_provider, venice_fake, payload)
    assert [p.text for p in response.message.parts] == ["The sky is blue."]


async def test_reasoning_content_becomes_a_reasoning_part(venice_provider, venice_fake):
    response = await complete(venice_provider, venice_fake, completion("42", reasoning="6 times 7."))
    assert list(response.message.parts) == [
        content_pb2.Part(reasoning=content_pb2.Reasoning(text="6 times 7.")),
        content_pb2.Part(text="42"),
    ]


async def test_think_block_in_content_becomes_a_reasoning_part(venice_provider, venice_fake):
    response = await complete(venice_provider, venice_fake, completion("<think>\n6 times 7.\n</think>\n\n42"))
    assert list(response.message.parts) == [
        content_pb2.Part(reasoning=content_pb2.Reasoning(text="6 times 7.")),
        content_pb2.Part(text="42"),
    ]


async def test_think_block_is_kept_as_text_when_thinking_is_stripped_or_parsing_is_off(venice_fake):
    content = "<think>x</think>42"
    stripped = chat_request(
        provider_options=chat_pb2.ProviderOptions(
            venice=chat_pb2.VeniceParameters(strip_thinking_response=True)
        )
    )
    provider = VeniceProvider("venice", venice_settings(venice_fake.base_url))
    off = VeniceProvider("venice", venice_settings(venice_fake.base_url, options={"parse_think_tags": False}))
    try:
        venice_fake.enqueue(json_reply(completion(content)), json_reply(completion(content)))
        first = await provider.complete_chat(stripped, call_ctx(MODEL))
        second = await off.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
        await off.aclose()
    assert [p.text for p in first.message.parts] == [content]
    assert [p.text for p in second.message.parts] == [content]


async def test_reasoning_details_and_thought_signature_round_trip(venice_provider, venice_fake):
    details = [
        {
            "type": "reasoning.text",
            "text": "Multiply.",
            "signature": "sig-1",
            "format": "anthropic-claude-v1",
            "index": 0,
        }
    ]
    payload = completion(
        None,
        reasoning="Multiply.",
        reasoning_details=details,
        thought_signature="CiQB-thought",
        tool_calls=[("call_1", "calc", '{"x":"6*7"}')],
        finish_reason="tool_calls",
    )
    response = await complete(venice_provider, venice_fake, payload)
    reasoning = response.message.parts[0].reasoning
    assert reasoning.text == "Multiply."
    assert not reasoning.redacted
    assert decode_signature(reasoning.signature) == (details, "CiQB-thought")

    # Next turn: the assistant message goes back with everything Venice needs.
    follow = chat_request(
        message(content_pb2.ROLE_USER, "6*7?"),
        response.message,
        message(
            content_pb2.ROLE_TOOL,
            content_pb2.Part(tool_result=content_pb2.ToolResult(tool_call_id="call_1", content="42")),
        ),
    )
    follow.tools.add(name="calc")
    await venice_provider.complete_chat(follow, call_ctx(MODEL))
    sent = venice_fake.last.body["messages"][1]
    assert sent["reasoning_content"] == "Multiply."
    assert sent["reasoning_details"] == details
    assert sent["thought_signature"] == "CiQB-thought"


async def test_signature_without_text_is_redacted_reasoning(venice_provider, venice_fake):
    details = [{"type": "reasoning.encrypted", "data": "gAAAA-opaque", "index": 0}]
    response = await complete(venice_provider, venice_fake, completion("42", reasoning_details=details))
    reasoning = response.message.parts[0].reasoning
    assert (reasoning.text, reasoning.redacted) == ("", True)
    assert reasoning.signature == encode_signature(details, None)
    assert response.message.parts[1].text == "42"


async def test_web_search_citations(venice_provider, venice_fake):
    response = await complete(
        venice_provider, venice_fake, completion("Rayleigh scattering^1^.", citations=CITATIONS)
    )
    assert list(response.citations) == [
        content_pb2.Citation(
            url=CITATIONS[0]["url"],
            title=CITATIONS[0]["title"],
            cited_text=CITATIONS[0]["content"],
            start_index=-1,
            end_index=-1,
            source_id="1",
        ),
        content_pb2.Citation(
            url=CITATIONS[1]["url"], title=CITATIONS[1]["title"], start_index=-1, end_index=-1, source_id="2"
        ),
    ]


async def test_malformed_json_body_is_a_protocol_error(venice_provider, venice_fake):
    venice_fake.enqueue(Reply(body=b"{not json", validate=False))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_wrong_shape_is_a_protocol_error(venice_provider, venice_fake):
    venice_fake.enqueue(Reply(body=b'{"choices": "nope"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_slow_answer_past_the_deadline_is_upstream_timeout(venice_provider, venice_fake):
    reply = json_reply(completion())
    reply.delay = 2.0
    venice_fake.enqueue(reply)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.0
    assert (caught.value.code, caught.value.reason) == (Code.DEADLINE_EXCEEDED, Reason.UPSTREAM_TIMEOUT)


async def test_spent_deadline_fails_before_any_request(venice_provider, venice_fake):
    with pytest.raises(GatewayError) as caught:
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL, deadline=time.monotonic() - 1))
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert venice_fake.requests == []


async def test_list_models(venice_provider, venice_fake):
    venice_fake.enqueue(json_reply(model_list(["qwen3-4b", "zai-org-glm-5-1"])))
    assert await venice_provider.list_models() == ["qwen3-4b", "zai-org-glm-5-1"]
    assert venice_fake.last.path == "/api/v1/models"
    assert venice_fake.last.query == {"type": "text"}


async def test_list_models_maps_errors(venice_provider, venice_fake):
    venice_fake.enqueue(error_reply(500, "An unknown error occurred"))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_UNAVAILABLE
    venice_fake.enqueue(Reply(body=b'{"object": "list"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await venice_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_deprecation_warning_is_logged_once_per_model(venice_provider, venice_fake, caplog):
    headers = {
        "x-venice-model-deprecation-warning": "This model is deprecated and will be removed.",
        "x-venice-model-deprecation-date": "2026-12-01T00:00:00.000Z",
    }
    for _ in range(2):
        venice_fake.enqueue(json_reply(completion(), headers=headers))
    with caplog.at_level(logging.WARNING, logger="homa.providers.venice"):
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
        await venice_provider.complete_chat(chat_request(), call_ctx(MODEL))
    warnings = [r for r in caplog.records if r.name == "homa.providers.venice"]
    assert len(warnings) == 1
    assert warnings[0].model == MODEL  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["organization", "project"])
def test_openai_only_settings_are_refused(field):
    with pytest.raises(ValueError, match=rf"providers\.venice\.{field}"):
        VeniceProvider("venice", venice_settings("http://127.0.0.1:1/api/v1", **{field: "org-x"}))


def test_missing_api_key_is_a_settings_error():
    with pytest.raises(ValueError, match=r"providers\.venice\.api_key"):
        VeniceProvider("venice", venice_settings("http://127.0.0.1:1/api/v1", api_key=None))


@pytest.mark.parametrize(
    ("options", "path"),
    [
        (
            {"venice_parameters": {"enable_web_search": "always"}},
            "options.venice_parameters.enable_web_search",
        ),
        ({"venice_parameters": {"enable_x_search": True}}, "options.venice_parameters.enable_x_search"),
        ({"parse_think_tags": "maybe"}, "options.parse_think_tags"),
        ({"unknown": 1}, "options.unknown"),
    ],
)
def test_bad_options_name_the_option(options, path):
    with pytest.raises(ValueError, match=re.escape(f"providers.v1.{path}:")):
        VeniceProvider("v1", venice_settings("http://127.0.0.1:1/api/v1", options=options))


async def test_yaml_booleans_for_web_search_mean_on_and_off(venice_fake):
    options = {"venice_parameters": {"enable_web_search": True}}  # YAML 1.1 reads `on` as true
    provider = VeniceProvider("venice", venice_settings(venice_fake.base_url, options=options))
    try:
        await provider.complete_chat(chat_request(), call_ctx(MODEL))
    finally:
        await provider.aclose()
    assert venice_fake.last.body["venice_parameters"] == {"enable_web_search": "on"}
