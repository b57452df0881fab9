"""Token counting (`countTokens`) and model listing (`GET models`, every page)."""

from __future__ import annotations

import pytest

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers._protojson import dict_to_struct
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.gemini import GeminiProvider
from tests.providers.conftest import message
from tests.providers.fakes.gemini_upstream import (  # noqa: F401 - fixtures
    DEFAULT_MODELS,
    Reply,
    gemini_ctx,
    gemini_fake_fixture,
    gemini_provider_fixture,
    gemini_settings,
    gemini_upstream_fixture,
    json_reply,
)


def test_capabilities(gemini_provider):
    assert isinstance(gemini_provider, ChatProvider)
    assert isinstance(gemini_provider, TokenCountingProvider)
    assert isinstance(gemini_provider, ModelListingProvider)
    assert gemini_provider.name == "gemini"
    assert gemini_provider.kind == "gemini"


async def test_count_tokens_sends_the_whole_prompt(gemini_provider, gemini_fake):
    gemini_fake.enqueue(
        json_reply({"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]})
    )
    request = chat_pb2.CountTokensRequest(
        model="gemini/gemini-2.5-flash",
        messages=[message(content_pb2.ROLE_SYSTEM, "Be brief."), message(content_pb2.ROLE_USER, "Hello")],
        tools=[content_pb2.Tool(name="f", parameters=dict_to_struct({"type": "object"}))],
    )
    response = await gemini_provider.count_tokens(request, gemini_ctx())
    assert response == chat_pb2.CountTokensResponse(input_tokens=31, exact=True, method="provider")
    record = gemini_fake.last
    assert record.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert record.body == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
        }
    }


async def test_count_tokens_zero_is_omitted_by_proto3_json(gemini_provider, gemini_fake):
    gemini_fake.enqueue(json_reply({}))
    request = chat_pb2.CountTokensRequest(messages=[message(content_pb2.ROLE_USER, "")])
    response = await gemini_provider.count_tokens(request, gemini_ctx())
    assert response.input_tokens == 0


async def test_count_tokens_rejects_invalid_input_without_calling(gemini_provider, gemini_fake):
    request = chat_pb2.CountTokensRequest(tools=[content_pb2.Tool(name="x")])
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.count_tokens(request, gemini_ctx())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert gemini_fake.requests == []


async def test_count_tokens_protocol_error(gemini_provider, gemini_fake):
    gemini_fake.enqueue(Reply(body=b'{"totalTokens": "many"}', validate=False))
    request = chat_pb2.CountTokensRequest(messages=[message(content_pb2.ROLE_USER, "Hi")])
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.count_tokens(request, gemini_ctx())
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR


async def test_list_models_strips_the_prefix(gemini_provider, gemini_fake):
    assert await gemini_provider.list_models() == DEFAULT_MODELS
    record = gemini_fake.last
    assert record.path == "/v1beta/models"
    assert record.query == {"pageSize": "1000"}


async def test_list_models_follows_every_page(gemini_fake):
    provider = GeminiProvider(
        "gemini", gemini_settings(gemini_fake.base_url, options={"models_page_size": 3})
    )
    try:
        models = await provider.list_models()
    finally:
        await provider.aclose()
    assert models == DEFAULT_MODELS
    pages = [r.query for r in gemini_fake.requests]
    assert pages[0] == {"pageSize": "3"}
    assert pages[1] == {"pageSize": "3", "pageToken": "3"}
    assert len(pages) == -(-len(DEFAULT_MODELS) // 3)


async def test_list_models_stops_on_a_repeated_page_token(gemini_provider, gemini_fake):
    page = {"models": [{"name": "models/a"}], "nextPageToken": "same"}
    gemini_fake.enqueue(json_reply(page), json_reply(page))
    assert await gemini_provider.list_models() == ["a", "a"]
    assert len(gemini_fake.requests) == 2


async def test_list_models_protocol_error(gemini_provider, gemini_fake):
    gemini_fake.enqueue(Reply(body=b'{"models": "none"}', validate=False))
    with pytest.raises(GatewayError) as caught:
        await gemini_provider.list_models()
    assert caught.value.reason == Reason.UPSTREAM_PROTOCOL_ERROR
