"""Three `homa serve` processes sharing Redis: one key's limits hold across all of them.

Each process has its own SQLite database holding the same API key row (keys are looked up by the
hash of their secret), and all three count on the shared Redis (127.0.0.1:6379) under a key prefix
unique to the test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc import aio
from redis.asyncio import Redis

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2
from homa_server.auth.api_keys import generate_secret, hash_secret, secret_prefix
from homa_server.store.api_keys import ApiKeyRepository, StoredKey
from homa_server.store.database import Database, now_us
from tests.conftest import status_details
from tests.integration.limits_support import free_port
from tests.storage import TEST_ENCRYPTION_KEY, fresh_sqlite_url

HOMA = str(Path(sys.executable).parent / "homa")
REDIS_URL = "redis://127.0.0.1:6379/0"
REPLICAS = 3
LONG_TEXT = "lorem ipsum dolor sit amet " * 60  # ~1,600 characters: ~400 output tokens from the mock


async def _add_key(url: str, secret: str, **limits: Any) -> None:
    database = Database(url)
    try:
        now = now_us()
        await ApiKeyRepository(database).create(
            StoredKey(
                api_key_id=f"key_{hash_secret(secret)[:12]}",
                tenant="acme",
                secret_hash=hash_secret(secret),
                secret_prefix=secret_prefix(secret),
                create_time_us=now,
                update_time_us=now,
                scopes=["chat:write"],
                **limits,
            )
        )
    finally:
        await database.aclose()


@contextmanager
def _processes(configs: list[Path], logs: Path) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMA_") and k != "OPENAI_API_KEY"}
    started: list[subprocess.Popen[bytes]] = []
    targets: list[str] = []
    try:
        for i, config in enumerate(configs):
            port = free_port()
            with (logs / f"replica-{i}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [HOMA, "serve", "--config", str(config), "--port", str(port)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            targets.append(f"127.0.0.1:{port}")
        yield targets
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _log_tail(logs: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(logs.glob("*.log")))[-4000:]


async def _wait_ready(targets: list[str], logs: Path) -> None:
    deadline = time.monotonic() + 45
    for target in targets:
        async with aio.insecure_channel(target) as channel:
            while True:
                try:
                    await asyncio.wait_for(channel.channel_ready(), 1.0)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, f"replica {target} not ready:\n{_log_tail(logs)}"


@asynccontextmanager
async def _replicas(tmp_path: Path, prefix: str, keys: dict[str, dict[str, Any]]) -> AsyncIterator[list[str]]:
    configs = []
    for i in range(REPLICAS):
        data_dir = tmp_path / f"replica-{i}"
        data_dir.mkdir()
        url = fresh_sqlite_url(data_dir)
        for secret, limits in keys.items():
            await _add_key(url, secret, **limits)
        config = {
            "logging": {"level": "WARNING"},
            "auth": {"mode": ["api_key"]},
            "storage": {"url": url, "data_dir": str(data_dir), "migrate_on_start": False},
            "encryption": {"keys": [{"id": "test-1", "key": TEST_ENCRYPTION_KEY}]},
            "providers": {"mock": {"kind": "mock", "options": {"scenarios": {"long": {"text": LONG_TEXT}}}}},
            "cache": {"enabled": False},  # every call reaches the limiter (a cache hit is free)
            "limits": {
                "backend": "redis",
                "redis": {"url": REDIS_URL, "key_prefix": prefix, "timeout_s": 1.0},
            },
        }
        path = tmp_path / f"replica-{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        configs.append(path)
    with _processes(configs, tmp_path) as targets:
        await _wait_ready(targets, tmp_path)
        yield targets


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"test:limits:{uuid.uuid4().hex}:"
    yield value
    async with Redis.from_url(REDIS_URL) as client:
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)


def _request(model: str, text: str, max_output: int) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model=model, max_output_tokens=max_output)
    request.messages.add(role=content_pb2.ROLE_USER).parts.add(text=text)
    return request


async def _offer(
    targets: list[str], secret: str, request: chat_pb2.CompleteRequest, total: int, concurrency: int
) -> tuple[list[chat_pb2.CompleteResponse], list[aio.AioRpcError]]:
    """`total` calls spread round-robin over the replicas, `concurrency` in flight."""
    channels = [aio.insecure_channel(t) for t in targets]
    stubs = [chat_grpc.ChatServiceStub(c) for c in channels]
    gate = asyncio.Semaphore(concurrency)
    metadata = (("authorization", f"Bearer {secret}"),)

    async def one(i: int) -> chat_pb2.CompleteResponse | aio.AioRpcError:
        async with gate:
            try:
                return await stubs[i % len(stubs)].Complete(request, metadata=metadata, timeout=30)
            except aio.AioRpcError as error:
                return error

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for channel in channels:
            await channel.close()
    admitted = [o for o in outcomes if isinstance(o, chat_pb2.CompleteResponse)]
    refused = [o for o in outcomes if isinstance(o, aio.AioRpcError)]
    return admitted, refused


async def test_a_key_limit_holds_across_three_replicas(tmp_path: Path, prefix: str) -> None:
    rate_secret, token_secret = generate_secret(), generate_secret()
    token_limit = 8000
    keys = {
        rate_secret: {"rate_limits": {"requests_per_minute": 600}},
        token_secret: {"rate_limits": {"tokens_per_minute": token_limit}},
    }
    async with _replicas(tmp_path, prefix, keys) as targets:
        # 1,200 requests offered quickly to a 600 requests/minute key.
        started = time.monotonic()
        admitted, refused = await _offer(targets, rate_secret, _request("mock/echo", "hi", 16), 1200, 48)
        elapsed = time.monotonic() - started
        assert elapsed < 60, f"the offer took {elapsed:.1f} s: not 'quickly' within one window"
        assert 570 <= len(admitted) <= 630, f"{len(admitted)} admitted"
        assert len(admitted) + len(refused) == 1200
        for error in refused:
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
        details = status_details(refused[0])
        assert details["ErrorInfo"].reason == "RATE_LIMITED"
        violation = details["QuotaFailure"].violations[0]
        assert violation.subject.endswith(" requests_per_minute")
        assert violation.subject.startswith("key:key_")
        assert 0 < details["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 60

        # Tokens per (UTC) minute: start well inside a minute so the whole run is in one window.
        if 60 - time.time() % 60 < 20:
            await asyncio.sleep(60 - time.time() % 60 + 0.5)
        minute = int(time.time() // 60)
        request = _request("mock/long", "write a long text", 400)
        admitted, refused = await _offer(targets, token_secret, request, 90, 12)
        assert int(time.time() // 60) == minute, "the run crossed a minute boundary"
        used = [r.usage.input_tokens + r.usage.output_tokens for r in admitted]
        assert refused, "the offer must exceed the budget"
        assert all(e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
        assert sum(used) <= token_limit + REPLICAS * max(used), (sum(used), max(used))
        assert sum(used) >= token_limit - 2 * max(used), "refunds let the budget be used up"
