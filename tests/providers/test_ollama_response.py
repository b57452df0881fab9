"""Ollama JSON answers -> homa `CompleteResponse` (through the fake), and model listing."""

from __future__ import annotations

import orjson
import pytest

from homa.type.v1 import content_pb2, usage_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.ollama import OllamaProvider
from homa_server.providers.ollama.chat_response import finish_reason, parse_chat_response, usage_from
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes.ollama_upstream import (  # noqa: F401 - the *_fixture functions are fixtures
    MODEL_BEHAVIOURS,
    FakeOllama,
    Reply,
    chat_response,
    error_reply,
    json_reply,
    ollama_fake_fixture,
    ollama_provider_fixture,
    ollama_settings,
    ollama_upstream_fixture,
)


async def complete(provider: OllamaProvider, model: str = "llama3.2"):
    return await provider.complete_chat(chat_request(), call_ctx(model))


async def test_capabilities(ollama_provider):
    assert isinstance(ollama_provider, ChatProvider)
    assert isinstance(ollama_provider, ModelListingProvider)
    # Ollama has no token-counting endpoint: the gateway falls back to its local estimate.
    assert not isinstance(ollama_provider, TokenCountingProvider)


async def test_text_answer(ollama_provider, ollama_fake):
    response = await complete(ollama_provider)
    assert response.message.role == content_pb2.ROLE_ASSISTANT
    assert [p.text for p in response.message.parts] == ["Hello! How can I help you today?"]
    assert response.finish_reason == usage_pb2.FINISH_REASON_STOP
    assert response.raw_finish_reason == "stop"
    assert response.usage == usage_pb2.Usage(input_tokens=26, output_tokens=18, total_tokens=44)
    assert response.create_time.ToJsonString() == "2025-10-26T17:15:24.097767Z"
    assert response.id == ""  # Ollama has no completion id


async def test_tool_calls_get_stable_ids(ollama_provider, ollama_fake):
    ollama_fake.enqueue(
        json_reply(
            chat_response(
                "", tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET", "fmt": [24]})]
            )
        )
    )
    response = await complete(ollama_provider)
    calls = [p.tool_call for p in response.message.parts]
    assert calls == [
        content_pb2.ToolCall(id="call_0", name="get_weather", arguments_json='{"city":"Paris"}'),
        content_pb2.ToolCall(id="call_1", name="get_time", arguments_json='{"tz":"CET","fmt":[24]}'),
    ]
    assert response.finish_reason == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert response.raw_finish_reason == "stop"


async def test_tool_call_id_from_the_server_is_kept(ollama_provider, ollama_fake):
    payload = chat_response("", tool_calls=[("get_weather", {"city": "Paris"})])
    payload["message"]["tool_calls"][0]["id"] = "call_srv_1"
    ollama_fake.enqueue(json_reply(payload))
    response = await complete(ollama_provider)
    assert response.message.parts[0].tool_call.id == "call_srv_1"


async def test_thinking_becomes_a_leading_reasoning_part(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply(chat_response("2", thinking="1+1 is 2.")))
    response = await complete(ollama_provider)
    assert [p.WhichOneof("kind") for p in response.message.parts] == ["reasoning", "text"]
    assert response.message.parts[0].reasoning == content_pb2.Reasoning(text="1+1 is 2.")


async def test_structured_output_is_text(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply(chat_response('{"age": 22, "available": false}')))
    response = await complete(ollama_provider)
    assert orjson.loads(response.message.parts[0].text) == {"age": 22, "available": False}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("stop", usage_pb2.FINISH_REASON_STOP),
        ("length", usage_pb2.FINISH_REASON_LENGTH),
        ("load", usage_pb2.FINISH_REASON_UNSPECIFIED),
        ("unload", usage_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_finish_reasons(ollama_provider, ollama_fake, raw, reason):
    ollama_fake.enqueue(json_reply(chat_response("x", done_reason=raw)))
    response = await complete(ollama_provider)
    assert (response.finish_reason, response.raw_finish_reason) == (reason, raw)


async def test_missing_done_reason_is_a_natural_stop(ollama_provider, ollama_fake):
    # api.md's older non-streamed examples have no done_reason at all.
    ollama_fake.enqueue(json_reply(chat_response("x", done_reason=None)))
    response = await complete(ollama_provider)
    assert (response.finish_reason, response.raw_finish_reason) == (usage_pb2.FINISH_REASON_STOP, "")


def test_finish_mapping_table():
    assert finish_reason("stop", tool_calls=True) == usage_pb2.FINISH_REASON_TOOL_CALLS
    assert finish_reason("length", tool_calls=True) == usage_pb2.FINISH_REASON_LENGTH
    assert finish_reason("something-new", tool_calls=False) == usage_pb2.FINISH_REASON_UNSPECIFIED


def test_usage_normalisation():
    assert usage_from({"prompt_eval_count": 1200, "eval_count": 300}) == usage_pb2.Usage(
        input_tokens=1200, output_tokens=300, total_tokens=1500
    )
    # A fully cached prompt: Ollama omits prompt_eval_count (Go omitempty).
    assert usage_from({"eval_count": 5}) == usage_pb2.Usage(output_tokens=5, total_tokens=5)
    assert usage_from({"done": True}) is None
    assert usage_from({"prompt_eval_count": True, "eval_count": "7"}) == usage_pb2.Usage()


async def test_no_counts_means_no_usage(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply(chat_response("", done_reason="load", counts={})))
    response = await complete(ollama_provider)
    assert not response.HasField("usage")


def test_wrong_shapes_are_protocol_errors():
    for payload in ({"done": True}, {"message": "text"}, {"message": {"tool_calls": [{"function": {}}]}}, []):
        with pytest.raises(GatewayError) as caught:
            parse_chat_response("ollama", payload)
        assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_non_json_body_is_a_protocol_error(ollama_provider, ollama_fake):
    ollama_fake.enqueue(Reply(body=b"<html>proxy</html>", content_type="text/html", validate=False))
    with pytest.raises(GatewayError) as caught:
        await complete(ollama_provider)
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
    assert caught.value.retryable


async def test_error_object_in_a_200_answer_is_not_a_success(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply({"error": "an error was encountered while running the model"}))
    with pytest.raises(GatewayError) as caught:
        await complete(ollama_provider)
    assert caught.value.code == Code.UNAVAILABLE


# ---- model listing -----------------------------------------------------------------------------


async def test_list_models(ollama_provider, ollama_fake):
    models = await ollama_provider.list_models()
    assert models[:2] == ["llama3.2", "qwen3:8b"]
    assert set(MODEL_BEHAVIOURS) <= set(models)
    assert (ollama_fake.last.method, ollama_fake.last.path) == ("GET", "/api/tags")


async def test_list_models_falls_back_to_model_field(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply({"models": [{"model": "gemma4:latest"}, {"name": "qwen3"}, {"size": 1}]}))
    assert await ollama_provider.list_models() == ["gemma4:latest", "qwen3"]


async def test_empty_model_list(ollama_provider, ollama_fake):
    ollama_fake.enqueue(json_reply({"models": []}))
    assert await ollama_provider.list_models() == []


async def test_list_models_errors(ollama_provider, ollama_fake):
    ollama_fake.enqueue(error_reply(500, "boom"), json_reply({"data": []}))
    with pytest.raises(GatewayError) as caught:
        await ollama_provider.list_models()
    assert caught.value.code == Code.UNAVAILABLE
    with pytest.raises(GatewayError) as caught:
        await ollama_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_wrong_base_url_gets_a_hint(ollama_fake: FakeOllama):
    provider = OllamaProvider("ollama", ollama_settings(f"{ollama_fake.base_url}/v1"))
    try:
        with pytest.raises(GatewayError) as caught:
            await provider.list_models()
    finally:
        await provider.aclose()
    assert caught.value.code == Code.NOT_FOUND
    assert "base_url" in caught.value.message
