"""Fixtures for provider adapter tests: spec-validated fake upstreams and adapters pointed at them.

The OpenAI fake runs once per session (its own thread and loop); each test gets it reset, and at
teardown the test fails if any request the adapter sent broke the OpenAPI spec or the fake itself
sent something off-spec.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers.base import CallContext
from homa_server.providers.openai import OpenAIProvider
from homa_server.settings import ProviderSettings
from tests.providers.fakes.openai_upstream import FakeOpenAI

OPENAI_TEST_KEY = "sk-test-0123456789abcdef"


def openai_settings(base_url: str, **overrides: object) -> ProviderSettings:
    """Settings for an adapter that talks to the fake at `base_url`."""
    values: dict[str, object] = {
        "kind": "openai",
        "base_url": base_url,
        "api_key": SecretStr(OPENAI_TEST_KEY),
        "organization": "org-fx",
        "project": "proj_fx",
    }
    values.update(overrides)
    return ProviderSettings.model_validate(values)


@pytest.fixture
async def openai_provider(openai_fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    """An OpenAIProvider named "openai" pointed at the fake (closed after the test)."""
    provider = OpenAIProvider("openai", openai_settings(openai_fake.base_url))
    yield provider
    await provider.aclose()


def message(role: int, *parts: content_pb2.Part | str, name: str = "") -> content_pb2.Message:
    """A homa message; plain strings become text parts."""
    return content_pb2.Message(
        role=role,  # type: ignore[arg-type]
        parts=[content_pb2.Part(text=p) if isinstance(p, str) else p for p in parts],
        name=name,
    )


def chat_request(*messages: content_pb2.Message, **fields: object) -> chat_pb2.CompleteRequest:
    """A CompleteRequest (one user "Hi" message when none are given)."""
    if not messages:
        messages = (message(content_pb2.ROLE_USER, "Hi"),)
    return chat_pb2.CompleteRequest(model="openai/gpt-4o-mini", messages=messages, **fields)  # type: ignore[arg-type]


def call_ctx(model: str = "gpt-4o-mini", **fields: object) -> CallContext:
    """A CallContext for `model`."""
    return CallContext(model=model, **fields)  # type: ignore[arg-type]


async def collect(
    stream: AsyncIterator[chat_pb2.StreamCompleteResponse],
) -> list[chat_pb2.StreamCompleteResponse]:
    """Every event of a stream."""
    return [event async for event in stream]
