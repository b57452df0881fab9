"""The response cache service and the dispatcher wrappers (policy/cache/service.py, flow.py, replay.py):
hits and misses, max age, stream capture rules, failing backends, usage records of hits, the stored
format, and the semantic cache with a deterministic fake embedder."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.auth.principal import Principal
from homa_server.observability.call_state import CallState, current_call
from homa_server.policy.cache.backends.base import Slot
from homa_server.policy.cache.backends.memory import MemoryBackend
from homa_server.policy.cache.backends.redis import RedisBackend
from homa_server.policy.cache.entry import BytesSerializer, CorruptEntryError, Entry, decode, encode
from homa_server.policy.cache.factory import build_backend, build_cache
from homa_server.policy.cache.flow import complete_through_cache, stream_through_cache
from homa_server.policy.cache.keys import CachePlan
from homa_server.policy.cache.service import ResponseCache
from homa_server.settings import CacheSettings, Settings
from homa_server.store.records import MemoryRecorder

MODEL = "mock/echo"


def request(text: str = "hello", **fields: object) -> chat_pb2.CompleteRequest:
    message = content_pb2.Message(role=content_pb2.ROLE_USER, parts=[content_pb2.Part(text=text)])
    return chat_pb2.CompleteRequest(model="echo", messages=[message], **fields)  # type: ignore[arg-type]


def answer(text: str) -> chat_pb2.CompleteResponse:
    return chat_pb2.CompleteResponse(
        id="cmpl-1",
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text=text)]),
        finish_reason=usage_pb2.FINISH_REASON_STOP,
        usage=usage_pb2.Usage(input_tokens=3, output_tokens=2),
        route=usage_pb2.Route(provider="mock", model="echo", attempt=1),
    )


def stream_events(text: str, finish: bool = True) -> list[chat_pb2.StreamCompleteResponse]:
    events = [
        chat_pb2.StreamCompleteResponse(route=usage_pb2.Route(provider="mock", model="echo", attempt=1)),
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=text[:2])),
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=text[2:])),
        chat_pb2.StreamCompleteResponse(usage=usage_pb2.Usage(input_tokens=3, output_tokens=2)),
    ]
    if finish:
        events.append(
            chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish(reason=usage_pb2.FINISH_REASON_STOP))
        )
    return events


def make_cache(**settings: object) -> ResponseCache:
    return ResponseCache(MemoryBackend(100, 1 << 20), CacheSettings(**{"enabled": True, **settings}))  # type: ignore[arg-type]


class Calls:
    """A fake provider call counting its invocations."""

    def __init__(self, text: str = "hi there") -> None:
        self.count = 0
        self.text = text

    async def unary(self) -> chat_pb2.CompleteResponse:
        self.count += 1
        return answer(self.text)

    async def stream(self, finish: bool = True) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        self.count += 1
        for event in stream_events(self.text, finish):
            yield event


@pytest.fixture
def call_state() -> CallState:
    state = CallState(request_id="req-1", method="/homa.chat.v1.ChatService/Complete")
    state.principal = Principal(
        subject="alice", tenant="acme", scopes=frozenset({"chat:write"}), method="jwt"
    )
    token = current_call.set(state)
    yield state  # type: ignore[misc]
    current_call.reset(token)


async def test_unary_miss_then_hit_with_trailers_route_and_usage(call_state: CallState) -> None:
    cache, calls, recorder = make_cache(), Calls(), MemoryRecorder()
    first = await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=recorder, call=calls.unary
    )
    assert call_state.trailers["homa-cache"] == "MISS"
    key = call_state.trailers["homa-cache-key"]
    assert first.route.attempt == 1
    second = await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=recorder, call=calls.unary
    )
    assert calls.count == 1
    assert call_state.trailers["homa-cache"] == "HIT"
    assert call_state.trailers["homa-cache-key"] == key
    assert call_state.trailers["homa-attempts"] == "0"
    assert call_state.trailers["homa-provider"] == "mock"
    assert second.route.attempt == 0
    assert second.message == first.message
    assert second.usage == first.usage
    [hit] = recorder.usage_records
    assert hit.cache_hit
    assert (hit.input_tokens, hit.output_tokens, hit.cost_micros) == (0, 0, 0)
    assert (hit.tenant, hit.status, hit.model, hit.method) == (
        "acme",
        "completed",
        "mock/echo",
        "chat.Complete",
    )


async def test_bypass_sets_no_trailer_and_stores_nothing(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    off = request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_OFF))
    for _ in range(2):
        await complete_through_cache(cache, off, tenant="acme", model=MODEL, recorder=None, call=calls.unary)
    assert calls.count == 2
    assert "homa-cache" not in call_state.trailers
    await complete_through_cache(None, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary)
    assert "homa-cache" not in call_state.trailers
    disabled = ResponseCache(MemoryBackend(100, 1 << 20), CacheSettings(enabled=False))
    await complete_through_cache(
        disabled, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert "homa-cache" not in call_state.trailers


async def test_read_only_never_writes_and_write_only_never_reads(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    read_only = request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_READ_ONLY))
    write_only = request(options=chat_pb2.RequestOptions(cache=chat_pb2.CACHE_MODE_WRITE_ONLY))
    for _ in range(2):
        await complete_through_cache(
            cache, read_only, tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert calls.count == 2
    assert call_state.trailers["homa-cache"] == "MISS"
    for _ in range(2):
        await complete_through_cache(
            cache, write_only, tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert calls.count == 4
    assert call_state.trailers["homa-cache"] == "MISS"
    await complete_through_cache(
        cache, read_only, tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert calls.count == 4
    assert call_state.trailers["homa-cache"] == "HIT"


async def test_max_age_rejects_older_entries(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    cache_plan = cache.plan(request(), tenant="acme", model=MODEL, shape="unary")
    assert cache_plan is not None
    old = Entry.of_response(
        answer("old"), tenant="acme", model=MODEL, now_us=time.time_ns() // 1000 - 10_000_000
    )
    await cache.backend.put(cache_plan_slot(cache_plan), encode(old), 60)
    fresh_only = request(options=chat_pb2.RequestOptions(cache_max_age=duration_pb2.Duration(seconds=5)))
    await complete_through_cache(
        cache, fresh_only, tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert call_state.trailers["homa-cache"] == "MISS"
    assert calls.count == 2
    lenient = request(options=chat_pb2.RequestOptions(cache_max_age=duration_pb2.Duration(seconds=3600)))
    await cache.backend.put(cache_plan_slot(cache_plan), encode(old), 60)
    got = await complete_through_cache(
        cache, lenient, tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert call_state.trailers["homa-cache"] == "HIT"
    assert got.message.parts[0].text == "old"


def cache_plan_slot(cache_plan: CachePlan) -> Slot:
    return Slot(cache_plan.key, cache_plan.tenant, cache_plan.model)


async def test_nondeterministic_requests_are_not_cached_unless_opted_in(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    hot = request(temperature=0.9)
    for _ in range(2):
        await complete_through_cache(cache, hot, tenant="acme", model=MODEL, recorder=None, call=calls.unary)
    assert calls.count == 2
    assert "homa-cache" not in call_state.trailers
    opted = request(temperature=0.9, options=chat_pb2.RequestOptions(cache_nondeterministic=True))
    for _ in range(2):
        await complete_through_cache(
            cache, opted, tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert calls.count == 3
    assert call_state.trailers["homa-cache"] == "HIT"


async def test_tenants_never_share_entries(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    await complete_through_cache(
        cache, request(), tenant="globex", model=MODEL, recorder=None, call=calls.unary
    )
    assert calls.count == 2
    assert call_state.trailers["homa-cache"] == "MISS"
    assert isinstance(cache.backend, MemoryBackend)
    assert len(cache.backend) == 2


async def collect(
    gen: AsyncGenerator[chat_pb2.StreamCompleteResponse, None],
) -> list[chat_pb2.StreamCompleteResponse]:
    return [event async for event in gen]


async def test_stream_is_stored_after_finish_and_replayed(call_state: CallState) -> None:
    cache, calls, recorder = make_cache(), Calls("hello world"), MemoryRecorder()
    first = await collect(
        stream_through_cache(
            cache, request(), tenant="acme", model=MODEL, recorder=recorder, events=calls.stream
        )
    )
    assert call_state.trailers["homa-cache"] == "MISS"
    replayed = await collect(
        stream_through_cache(
            cache, request(), tenant="acme", model=MODEL, recorder=recorder, events=calls.stream
        )
    )
    assert calls.count == 1
    assert call_state.trailers["homa-cache"] == "HIT"
    assert replayed[0].route == usage_pb2.Route(provider="mock", model="echo", attempt=0)
    assert replayed[1:] == first[1:]
    assert replayed[-1].HasField("finish")
    assert recorder.usage_records[0].cache_hit
    assert recorder.usage_records[0].method == "chat.Complete"  # the RPC's name comes from the call state


async def test_unary_and_stream_entries_are_separate(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    await collect(
        stream_through_cache(cache, request(), tenant="acme", model=MODEL, recorder=None, events=calls.stream)
    )
    assert call_state.trailers["homa-cache"] == "MISS"
    assert calls.count == 2


async def test_stream_without_finish_or_failing_is_not_stored(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()

    async def cut() -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        calls.count += 1
        for event in stream_events("partial", finish=False):
            yield event

    async def failing() -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        calls.count += 1
        yield stream_events("x")[0]
        raise RuntimeError("upstream died")

    await collect(
        stream_through_cache(cache, request(), tenant="acme", model=MODEL, recorder=None, events=cut)
    )
    with pytest.raises(RuntimeError):
        await collect(
            stream_through_cache(cache, request(), tenant="acme", model=MODEL, recorder=None, events=failing)
        )
    await collect(
        stream_through_cache(cache, request(), tenant="acme", model=MODEL, recorder=None, events=calls.stream)
    )
    assert call_state.trailers["homa-cache"] == "MISS"
    assert calls.count == 3


async def test_stream_closed_early_by_the_client_is_not_stored(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    gen = stream_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=None, events=calls.stream
    )
    await anext(gen)
    await gen.aclose()
    await collect(
        stream_through_cache(cache, request(), tenant="acme", model=MODEL, recorder=None, events=calls.stream)
    )
    assert call_state.trailers["homa-cache"] == "MISS"


async def test_too_large_answers_are_not_stored(call_state: CallState) -> None:
    cache, calls = make_cache(max_entry_bytes=1024), Calls("x" * 5000)
    for _ in range(2):
        await complete_through_cache(
            cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
        await collect(
            stream_through_cache(
                cache, request(), tenant="acme", model=MODEL, recorder=None, events=calls.stream
            )
        )
    assert calls.count == 4


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_backend_is_a_miss_never_an_error(call_state: CallState) -> None:
    settings = CacheSettings(enabled=True, timeout_s=0.2)
    cache = ResponseCache(RedisBackend(f"redis://127.0.0.1:{unused_port()}/0", "t", 0.2), settings)
    calls = Calls()
    started = time.monotonic()
    for _ in range(2):
        await complete_through_cache(
            cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert time.monotonic() - started < 5
    assert calls.count == 2
    assert call_state.trailers["homa-cache"] == "MISS"
    assert cache.errors >= 2
    await cache.aclose()


async def test_slow_backend_is_bounded_by_the_timeout(call_state: CallState) -> None:
    class Stuck(MemoryBackend):
        async def get(self, slot):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

    cache = ResponseCache(Stuck(10, 1 << 20), CacheSettings(enabled=True, timeout_s=0.05))
    calls = Calls()
    await complete_through_cache(
        cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
    )
    assert calls.count == 1
    assert cache.errors == 1


async def test_corrupt_or_foreign_values_are_misses(call_state: CallState) -> None:
    cache, calls = make_cache(), Calls()
    cache_plan = cache.plan(request(), tenant="acme", model=MODEL, shape="unary")
    assert cache_plan is not None
    for junk in (
        b"",
        b"garbage",
        encode(Entry.of_response(answer("x"), tenant="globex", model=MODEL, now_us=1)),
    ):
        await cache.backend.put(cache_plan_slot(cache_plan), junk, 60)
        await complete_through_cache(
            cache, request(), tenant="acme", model=MODEL, recorder=None, call=calls.unary
        )
    assert calls.count == 3


def test_entry_round_trip_and_rejection() -> None:
    entry = Entry.of_events(stream_events("abcdef"), tenant="acme", model=MODEL, now_us=123)
    data = encode(entry)
    assert decode(data) == entry
    assert decode(data).events() == stream_events("abcdef")
    for bad in (b"", data[:5], data[:-1], b"\x80\x04pickle"):
        with pytest.raises(CorruptEntryError):
            decode(bad)
    with pytest.raises(CorruptEntryError):
        decode(data).response()


def test_serializer_refuses_anything_but_bytes() -> None:
    serializer = BytesSerializer()
    assert serializer.dumps(b"ok") == b"ok"
    assert serializer.loads(b"ok") == b"ok"
    assert serializer.loads(None) is None
    for value in ({"a": 1}, "text", 3, [b"x"]):
        with pytest.raises(TypeError):
            serializer.dumps(value)


def test_no_pickle_in_the_cache_code() -> None:
    root = Path(__file__).resolve().parents[2] / "server" / "homa_server"
    sources = [*(root / "policy" / "cache").rglob("*.py"), root / "rpc" / "admin_cache.py"]
    assert len(sources) >= 10
    forbidden = re.compile(
        r"import\s+(c?pickle|dill|marshal|shelve)|from\s+(c?pickle|dill)\s|\bpickle\.[a-z_]+\(|PickleSerializer"
    )
    for source in sources:
        assert not forbidden.search(source.read_text()), source


def test_factory_builds_the_configured_backend(tmp_path: Path) -> None:
    base = {"storage": {"data_dir": str(tmp_path)}}
    kinds = {
        "memory": "memory",
        "redis": "redis",
        "memcached": "memcached",
        "filesystem": "filesystem",
    }
    for backend, name in kinds.items():
        settings = Settings(**base, cache={"backend": backend})  # type: ignore[arg-type]
        assert build_backend(settings).name == name
    assert build_cache(Settings(cache={"enabled": False})) is None  # type: ignore[arg-type]
    assert build_cache(Settings()) is not None  # on by default (deterministic requests only)
