"""Authentication and options: SigV4 identical to botocore's own clients, session tokens, the
default credential chain, refreshable credentials, Bedrock API keys, and settings validation."""

from __future__ import annotations

import datetime
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import botocore.auth
import botocore.session
import httpx
import orjson
import pytest
from botocore.credentials import RefreshableCredentials

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.bedrock.auth import SigV4Auth
from homa_server.providers.bedrock.chat_request import build_converse_body
from homa_server.providers.bedrock.options import resolve_options
from homa_server.settings import ProviderSettings
from tests.providers.bedrock_spec import Credential
from tests.providers.conftest import call_ctx, chat_request, collect
from tests.providers.fakes.bedrock_upstream import (
    ACCESS_KEY,
    MODEL,
    REGION,
    SECRET_KEY,
    SESSION_TOKEN,
    FakeBedrock,
    bedrock_settings,
    checked_fake,
    running_fake,
)

FROZEN = datetime.datetime(2026, 1, 2, 3, 4, 5)  # botocore's clock is naive UTC
GOLDEN_MODEL = "amazon.titan-text-express-v1"  # no ':' so botocore's path spelling equals ours


@pytest.fixture(scope="module")
def bedrock_upstream() -> Iterator[FakeBedrock]:
    yield from running_fake()


@pytest.fixture
def fake(bedrock_upstream: FakeBedrock) -> Iterator[FakeBedrock]:
    yield from checked_fake(bedrock_upstream)


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """An environment where botocore's chain finds nothing unless a test adds it (no files, no IMDS)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime.datetime:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FROZEN)
    return FROZEN


async def adapter_for(settings: ProviderSettings) -> AsyncIterator[BedrockProvider]:
    adapter = BedrockProvider("bedrock", settings)
    try:
        yield adapter
    finally:
        await adapter.aclose()


# ---- golden comparison with botocore's own client -----------------------------------------------


def botocore_request(operation: str, token: str | None = None, **params: Any) -> Any:
    """What botocore's bedrock-runtime client sends for `operation` (captured, never sent)."""
    session = botocore.session.get_session()
    client = session.create_client(
        "bedrock-runtime",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=token,
    )
    captured: list[Any] = []

    class Captured(Exception):  # noqa: N818 - control flow, not an error
        pass

    def before_send(request: Any, **_: Any) -> None:
        captured.append(request)
        raise Captured

    client.meta.events.register("before-send.bedrock-runtime.*", before_send)
    try:
        with pytest.raises(Captured):
            getattr(client, operation)(**params)
    finally:
        client.close()
    return captured[0]


@pytest.mark.parametrize("token", [None, SESSION_TOKEN], ids=["keys", "session-token"])
def test_signature_equals_botocores_for_the_same_request(frozen_clock, token):
    golden = botocore_request(
        "converse", token, modelId=GOLDEN_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}]
    )
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in golden.headers.items()}
    request = httpx.Request(
        "POST",
        golden.url,
        headers={"Content-Type": headers["Content-Type"], "User-Agent": "homa-gateway"},
        content=golden.body,
    )
    credentials = Credential(ACCESS_KEY, SECRET_KEY, token).frozen
    SigV4Auth(credentials, REGION).sign(request, credentials)
    assert request.headers["Authorization"] == headers["Authorization"]
    assert request.headers["X-Amz-Date"] == headers["X-Amz-Date"] == "20260102T030405Z"
    assert request.headers.get("X-Amz-Security-Token") == headers.get("X-Amz-Security-Token")


def test_body_and_path_equal_botocores_serialisation():
    params: dict[str, Any] = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}},
                ],
            }
        ],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }
    golden = botocore_request("converse", modelId=GOLDEN_MODEL, **params)
    request = chat_request(
        content_pb2.Message(role=content_pb2.ROLE_SYSTEM, parts=[content_pb2.Part(text="Be brief.")]),
        content_pb2.Message(
            role=content_pb2.ROLE_USER,
            parts=[
                content_pb2.Part(text="What is this?"),
                content_pb2.Part(inline_data=content_pb2.InlineData(mime_type="image/png", data=b"\x89PNG")),
            ],
        ),
        tools=[content_pb2.Tool(name="get_weather")],
        tool_choice=content_pb2.ToolChoice(mode=content_pb2.ToolChoice.MODE_REQUIRED),
        max_output_tokens=100,
        temperature=0.5,
        stop=["END"],
    )
    assert build_converse_body(request) == orjson.loads(golden.body)
    assert golden.url.endswith(f"/model/{GOLDEN_MODEL}/converse")


# ---- credentials through the fake -----------------------------------------------------------------


async def test_session_token_is_sent_and_signed(fake):
    async for adapter in adapter_for(bedrock_settings(fake, auth="session")):
        await collect(adapter.stream_chat(chat_request(), call_ctx(MODEL)))
    headers = fake.last.headers
    assert headers["x-amz-security-token"] == SESSION_TOKEN
    assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1]


async def test_bearer_api_key(fake):
    async for adapter in adapter_for(bedrock_settings(fake, auth="bearer")):
        await adapter.complete_chat(chat_request(), call_ctx(MODEL))
        await adapter.list_models()
    for recorded in fake.requests:
        assert recorded.headers["authorization"].startswith("Bearer ABSK")
        assert "x-amz-date" not in recorded.headers


async def test_extra_headers_are_sent_and_signed(fake):
    settings = bedrock_settings(fake, headers={"X-Team": "search"})
    async for adapter in adapter_for(settings):
        await adapter.complete_chat(chat_request(), call_ctx(MODEL))
    assert fake.last.headers["x-team"] == "search"
    assert "x-team" in fake.last.headers["authorization"]


async def test_default_credential_chain_from_the_environment(fake, aws_environment):
    aws_environment.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_environment.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    async for adapter in adapter_for(bedrock_settings(fake, auth="none")):
        await adapter.complete_chat(chat_request(), call_ctx(MODEL))
    assert f"Credential={ACCESS_KEY}/" in fake.last.headers["authorization"]


def test_no_credentials_anywhere_fails_at_start(fake, aws_environment):
    with pytest.raises(ValueError, match=r"providers\.bedrock: no AWS credentials found"):
        BedrockProvider("bedrock", bedrock_settings(fake, auth="none"))


async def test_refreshable_credentials_refresh_off_the_event_loop(fake, monkeypatch):
    fake.credentials["AKIDREFRESHED0000001"] = Credential("AKIDREFRESHED0000001", "refreshed-secret", "tok-2")
    threads: list[str] = []

    def refresh() -> dict[str, str]:
        threads.append(threading.current_thread().name)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {
            "access_key": "AKIDREFRESHED0000001",
            "secret_key": "refreshed-secret",
            "token": "tok-2",
            "expiry_time": expiry.isoformat(),
        }

    expired = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)).isoformat()
    credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": "tok-1", "expiry_time": expired},
        refresh_using=refresh,
        method="test-refresh",
    )
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: credentials)
    async for adapter in adapter_for(bedrock_settings(fake, auth="none")):
        await adapter.complete_chat(chat_request(), call_ctx(MODEL))
        await adapter.complete_chat(chat_request(), call_ctx(MODEL))
    assert len(threads) == 1  # refreshed once, then the new expiry holds
    assert threads[0] != threading.main_thread().name
    assert all("Credential=AKIDREFRESHED0000001/" in r.headers["authorization"] for r in fake.requests)
    assert fake.last.headers["x-amz-security-token"] == "tok-2"


def test_sync_clients_can_use_the_signer_too(frozen_clock):
    credentials = Credential(ACCESS_KEY, SECRET_KEY).frozen
    auth = SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), REGION)
    request = httpx.Request(
        "GET", "https://bedrock.us-east-1.amazonaws.com/foundation-models?byOutputModality=TEXT"
    )
    flow = auth.sync_auth_flow(request)
    signed = next(flow)
    expected = httpx.Request("GET", request.url)
    SigV4Auth(credentials, REGION).sign(expected, credentials)
    assert signed.headers["Authorization"] == expected.headers["Authorization"]


# ---- options ----------------------------------------------------------------------------------------


def test_region_from_the_environment(fake, aws_environment):
    aws_environment.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    settings = ProviderSettings(kind="bedrock", api_key="ABSKx", options={})  # type: ignore[arg-type]
    resolved = resolve_options("bedrock", settings.options)
    assert resolved.region == "eu-west-3"
    assert resolved.control_base_url == "https://bedrock.eu-west-3.amazonaws.com"
    aws_environment.setenv("AWS_REGION", "ap-south-1")  # AWS_REGION wins, as in the SDKs
    assert resolve_options("bedrock", {}).region == "ap-south-1"


def test_default_endpoints_follow_the_region(aws_environment):
    adapter = BedrockProvider(
        "bedrock",
        ProviderSettings(kind="bedrock", api_key="ABSKx", options={"region": "eu-central-1"}),  # type: ignore[arg-type]
    )
    assert adapter._model_urls("m.x-v1:0").converse == httpx.URL(
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/m.x-v1:0/converse"
    )
    assert (
        str(adapter._models_url)
        == "https://bedrock.eu-central-1.amazonaws.com/foundation-models?byOutputModality=TEXT"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"providers\.bedrock\.options\.region: required"),
        ({"region": "US East"}, r"providers\.bedrock\.options\.region: .*AWS region"),
        ({"region": "us-east-1", "regoin": "x"}, r"providers\.bedrock\.options\.regoin: Extra inputs"),
        (
            {"region": "us-east-1", "access_key_id": "AKID"},
            r"options\.access_key_id: access_key_id and secret_access_key",
        ),
        ({"region": "us-east-1", "session_token": "t"}, r"options\.session_token: needs"),
        ({"region": "us-east-1", "control_base_url": "ftp://x"}, r"options\.control_base_url: .*http"),
        ({"region": "us-east-1", "throttling_retry_after_s": -1}, r"options\.throttling_retry_after_s"),
        ({"region": "us-east-1", "list_inference_profiles": "often"}, r"options\.list_inference_profiles"),
    ],
)
def test_invalid_options(aws_environment, options, message):
    with pytest.raises(ValueError, match=message):
        BedrockProvider("bedrock", ProviderSettings(kind="bedrock", api_key="ABSKx", options=options))  # type: ignore[arg-type]


def test_api_key_and_static_keys_are_exclusive(fake):
    settings = bedrock_settings(fake, auth="keys", api_key="ABSKx")
    with pytest.raises(ValueError, match=r"providers\.bedrock\.api_key: .*mutually exclusive"):
        BedrockProvider("bedrock", settings)


def test_secrets_do_not_appear_in_option_errors():
    with pytest.raises(ValueError, match="access_key_id") as caught:
        resolve_options("bedrock", {"region": "us-east-1", "secret_access_key": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(caught.value)


async def test_count_tokens_and_list_models_are_signed(fake):
    async for adapter in adapter_for(bedrock_settings(fake)):
        await adapter.count_tokens(
            chat_pb2.CountTokensRequest(
                messages=[content_pb2.Message(role=3, parts=[content_pb2.Part(text="x")])]
            ),
            call_ctx(MODEL),
        )
        await adapter.list_models()
    assert [r.action for r in fake.requests] == [
        "count-tokens",
        "foundation-models",
        "inference-profiles",
        "inference-profiles",
    ]
    # The fake recomputed every signature (query strings included) and found no problem.
