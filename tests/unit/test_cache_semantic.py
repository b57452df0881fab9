"""The optional semantic cache (policy/cache/semantic.py, embedders.py): similar prompts served from the
cache within the same tenant, model and parameters, never with tools; invalidation; embedder loading.
A deterministic fake embedder drives most tests; the local MiniLM model one paraphrase check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import pytest

from homa.type.v1 import content_pb2
from homa_server.auth.principal import Principal
from homa_server.observability.call_state import CallState, current_call
from homa_server.policy.cache.backends.base import Invalidation
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.factory import build_cache
from homa_server.policy.cache.flow import complete_through_cache
from homa_server.policy.cache.semantic import SemanticCache, load_embedder, prompt_text
from homa_server.policy.cache.service import ResponseCache
from homa_server.settings import CacheSettings, Settings
from tests.unit.test_cache_service import MODEL, Calls, request


@pytest.fixture
def call_state() -> Iterator[CallState]:
    state = CallState(request_id="req-1", method="/homa.chat.v1.ChatService/Complete")
    state.principal = Principal(
        subject="alice", tenant="acme", scopes=frozenset({"chat:write"}), method="jwt"
    )
    token = current_call.set(state)
    yield state
    current_call.reset(token)


def fake_vector(text: str) -> list[float]:
    """Deterministic 'embedding': bag of lower-cased words hashed into 32 buckets."""
    vector = [0.0] * 32
    for word in text.lower().replace("?", " ").replace("!", " ").split():
        vector[hashlib.sha256(word.encode()).digest()[0] % 32] += 1.0
    return vector


async def fake_embedder(text: str) -> Sequence[float]:
    return fake_vector(text)


def make_fake_embedder() -> object:
    """Factory for `cache.semantic.embedder: tests.unit.test_cache_semantic:make_fake_embedder`."""
    return fake_embedder


def semantic_cache(threshold: float = 0.9) -> ResponseCache:
    semantic = SemanticCache(fake_embedder, threshold=threshold, max_entries=10, ttl_s=3600)
    return ResponseCache(MemoryBackend(100, 1 << 20), CacheSettings(enabled=True), semantic)


async def test_semantic_hit_for_a_similar_prompt(call_state: CallState) -> None:
    cache, calls = semantic_cache(), Calls()
    await complete_through_cache(
        cache,
        request("What is the capital of France?"),
        tenant="acme",
        model=MODEL,
        recorder=None,
        call=calls.unary,
    )
    got = await complete_through_cache(
        cache,
        request("what is the capital of france !"),
        tenant="acme",
        model=MODEL,
        recorder=None,
        call=calls.unary,
    )
    assert calls.count == 1
    assert call_state.trailers["homa-cache"] == "HIT"
    assert got.route.attempt == 0
    await complete_through_cache(
        cache,
        request("Tell me a long story about dragons"),
        tenant="acme",
        model=MODEL,
        recorder=None,
        call=calls.unary,
    )
    assert calls.count == 2


async def test_semantic_cache_respects_tenant_model_parameters_and_tools(call_state: CallState) -> None:
    cache, calls = semantic_cache(), Calls()
    await complete_through_cache(
        cache, request("capital of France?"), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    similar = "Capital of France"
    await complete_through_cache(
        cache, request(similar), tenant="globex", model=MODEL, recorder=None, call=calls.unary
    )
    await complete_through_cache(
        cache, request(similar), tenant="acme", model="mock/x", recorder=None, call=calls.unary
    )
    await complete_through_cache(
        cache,
        request(similar, max_output_tokens=5),
        tenant="acme",
        model=MODEL,
        recorder=None,
        call=calls.unary,
    )
    tools = [content_pb2.Tool(name="lookup")]
    await complete_through_cache(
        cache,
        request("capital of France?", tools=tools),
        tenant="acme",
        model=MODEL,
        recorder=None,
        call=calls.unary,
    )
    await complete_through_cache(
        cache, request(similar, tools=tools), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert calls.count == 6


async def test_semantic_entries_are_invalidated_too(call_state: CallState) -> None:
    cache, calls = semantic_cache(), Calls()
    await complete_through_cache(
        cache, request("capital of France?"), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert await cache.invalidate(Invalidation("tenant", "acme", None)) == 1
    await complete_through_cache(
        cache, request("Capital of France"), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert calls.count == 2


def test_prompt_text_refuses_non_text_parts() -> None:
    assert prompt_text(request("hi")) == f"{content_pb2.ROLE_USER}:hi"
    image = request()
    image.messages[0].parts.add(inline_data=content_pb2.InlineData(mime_type="image/png", data=b"x"))
    assert prompt_text(image) is None


def test_embedder_is_loaded_from_settings() -> None:
    embedder = load_embedder("tests.unit.test_cache_semantic:make_fake_embedder")
    assert embedder is fake_embedder
    with pytest.raises(ValueError, match=r"package\.module:factory"):
        load_embedder("no-colon")
    settings = Settings(
        cache={
            "enabled": True,
            "semantic": {"enabled": True, "embedder": "tests.unit.test_cache_semantic:make_fake_embedder"},
        }  # type: ignore[arg-type]
    )
    built = build_cache(settings)
    assert built is not None
    assert built.semantic is not None


async def test_local_minilm_embedder_serves_a_paraphrase(call_state: CallState) -> None:
    embed = load_embedder("homa_server.policy.cache.embedders:local_minilm")
    semantic = SemanticCache(embed, threshold=0.8, max_entries=10, ttl_s=3600)
    cache, calls = ResponseCache(MemoryBackend(100, 1 << 20), CacheSettings(enabled=True), semantic), Calls()
    for text in ("How do I reset my password?", "How can I reset my password?", "Best pizza toppings"):
        await complete_through_cache(
            cache, request(text), tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert calls.count == 2  # the paraphrase was a hit, the unrelated prompt a miss
