"""A spec-faithful fake of the Azure OpenAI data plane on 127.0.0.1, for adapter and gateway tests.

A real HTTP/1.1 server (uvicorn + Starlette) in its own thread and event loop, like the OpenAI fake,
so it sees client disconnects exactly as Azure would. It serves
`POST /openai/deployments/{deployment}/chat/completions?api-version=...` and answers everything
else with Azure's `404 {"error": {"code": "404", "message": "Resource not found"}}`.

It sends Azure's bytes: JSON completions with `prompt_filter_results` and per-choice
`content_filter_results`; `text/event-stream` with `data: <json>\\n\\n` frames, the prompt-filter
chunk first (`choices: []`, empty `id`/`model`/`object`, `created: 0`), content chunks carrying
`content_filter_results`, a usage chunk only when the request asked for
`stream_options.include_usage`, then `data: [DONE]`; errors as `{"error": {...}}` with the
`apim-request-id`, `x-request-id`, `x-ms-region`, `x-ratelimit-remaining-*`, `retry-after` and
`retry-after-ms` headers.

Authentication: by default an `api-key` header equal to `key` is required; with `auth = "entra"`
an `Authorization: Bearer <key>` instead. A request carrying neither is a spec violation; a wrong
value gets Azure's 401. Unknown deployments get Azure's 404 `DeploymentNotFound`.

Checking: every request is validated against the spec of its api-version (`tests/providers/
azure_spec.py`, including undeclared body fields); violations are answered 400 (or 401/404 as
Azure does) and recorded in `validation_errors`. Every reply (JSON bodies and each SSE chunk) is
checked against the spec's schemas; drift lands in `response_errors`. One documented exception:
Azure's filter-annotation chunks (`"object": ""`) break the chunk schema's `object` enum in live
traffic, so only their filter results are validated.

Scripting: `enqueue(reply, ...)` queues replies for the next requests; with an empty queue the
deployment name picks the behaviour (`DEPLOYMENT_BEHAVIOURS`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.settings import ProviderSettings
from tests.providers.azure_spec import (
    spec_for,
    validate_azure_embeddings_response,
    validate_azure_request,
    validate_azure_schema,
)
from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    RecordedRequest,
    Reply,
    ReplySender,
    checked,
    json_reply,
    read_request,
)
from tests.providers.fakes.openai_embeddings import embeddings_reply

__all__ = [
    "AZURE_KEY",
    "CHAT_PATH",
    "DEPLOYMENTS",
    "DEPLOYMENT_BEHAVIOURS",
    "Disconnect",
    "FakeAzure",
    "Reply",
    "azure_fake",
    "azure_provider",
    "azure_settings",
    "azure_upstream",
    "chat_completion",
    "chunk",
    "content_filter_reply",
    "error_reply",
    "json_reply",
    "prompt_filter_chunk",
    "rate_limited_reply",
    "sse_reply",
    "text_stream",
    "tool_calls_stream",
    "usage_chunk",
]

AZURE_KEY = "0123456789abcdef0123456789abcdef"  # the shape of an Azure resource key (32 hex)
DONE_FRAME = b"data: [DONE]\n\n"
CREATED = 1727185525
MODEL = "gpt-4o-2024-08-06"
FINGERPRINT = "fp_67802d9a6d"
CHAT_PATH = "/openai/deployments/{deployment}/chat/completions"
EMBEDDINGS_PATH = "/openai/deployments/{deployment}/embeddings"
# Deployments that exist on the fake resource (others answer 404 DeploymentNotFound).
DEPLOYMENTS = {"gpt-4o", "gpt-4o-mini", "o3-mini", "prod-gpt4o"}
USAGE = {
    "completion_tokens": 16,
    "completion_tokens_details": {
        "accepted_prediction_tokens": 0,
        "audio_tokens": 0,
        "reasoning_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
    "prompt_tokens": 61,
    "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
    "total_tokens": 77,
}
_SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTER = {
    "hate": _SAFE,
    "protected_material_code": {"filtered": False, "detected": False},
    "protected_material_text": {"filtered": False, "detected": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": _SAFE,
            "jailbreak": {"filtered": False, "detected": False},
            "self_harm": _SAFE,
            "sexual": _SAFE,
            "violence": _SAFE,
        },
    }
]
# Headers Azure sends on every answer (values as seen in live traffic).
_AZURE_HEADERS = {
    "x-ms-region": "Sweden Central",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-remaining-tokens": "99000",
    "x-ms-rai-invoked": "true",
    "x-content-type-options": "nosniff",
    "azureml-model-session": "d089-20240925111223",
}
_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
_BAD_TOKEN = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)
_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please "
    "read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


def chat_completion(
    content: str | None = "Hello there!",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    refusal: str | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    completion_id: str = "chatcmpl-AzFx1",
) -> dict[str, Any]:
    """An Azure `createChatCompletionResponse`; `tool_calls` are (id, name, arguments) triples."""
    message: dict[str, Any] = {"content": content, "refusal": refusal, "role": "assistant"}
    if tool_calls:
        message["tool_calls"] = [
            {"function": {"arguments": arguments, "name": name}, "id": call_id, "type": "function"}
            for call_id, name, arguments in tool_calls
        ]
    if context is not None:
        message["context"] = context
    choice_filter = {} if tool_calls else CHOICE_FILTER
    return {
        "choices": [
            {
                "content_filter_results": choice_filter,
                "finish_reason": finish_reason,
                "index": 0,
                "logprobs": None,
                "message": message,
            }
        ],
        "created": CREATED,
        "id": completion_id,
        "model": MODEL,
        "object": "chat.completion",
        "prompt_filter_results": PROMPT_FILTER,
        "system_fingerprint": FINGERPRINT,
        "usage": USAGE if usage is None else usage,
    }


def prompt_filter_chunk() -> dict[str, Any]:
    """The chunk Azure sends first: no choices, placeholder id/model/object, the prompt's filter results."""
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTER,
    }


def chunk(
    delta: dict[str, Any],
    *,
    finish_reason: str | None = None,
    filtered: bool = True,
    completion_id: str = "chatcmpl-AzFx1",
) -> dict[str, Any]:
    """A `chat.completion.chunk` with one choice (content chunks carry filter results)."""
    return {
        "choices": [
            {
                "content_filter_results": CHOICE_FILTER if filtered else {},
                "delta": delta,
                "finish_reason": finish_reason,
                "index": 0,
                "logprobs": None,
            }
        ],
        "created": CREATED,
        "id": completion_id,
        "model": MODEL,
        "object": "chat.completion.chunk",
        "system_fingerprint": FINGERPRINT,
    }


def usage_chunk(usage: dict[str, Any] | None = None, completion_id: str = "chatcmpl-AzFx1") -> dict[str, Any]:
    """The extra last chunk of `stream_options.include_usage`: no choices, cumulative usage."""
    return {
        "choices": [],
        "created": CREATED,
        "id": completion_id,
        "model": MODEL,
        "object": "chat.completion.chunk",
        "system_fingerprint": FINGERPRINT,
        "usage": USAGE if usage is None else usage,
    }


def sse_reply(
    events: Iterable[dict[str, Any] | bytes],
    *,
    done: bool = True,
    delay: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A streamed answer: dicts become `data: <json>\\n\\n` frames, bytes are sent verbatim."""
    frames = [
        item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + b"\n\n" for item in events
    ]
    if done:
        frames.append(DONE_FRAME)
    return Reply(
        frames=frames,
        content_type="text/event-stream; charset=utf-8",
        delay=delay,
        end=end,
        validate=validate,
    )


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    finish_reason: str = "stop",
    usage: dict[str, Any] | Literal[False] | None = False,
    **options: Any,
) -> Reply:
    """Streamed text as Azure sends it: prompt-filter chunk, role chunk, content chunks, finish
    chunk, and a usage chunk when `usage` is not False (None = the default usage)."""
    events: list[dict[str, Any] | bytes] = [
        prompt_filter_chunk(),
        chunk({"content": "", "refusal": None, "role": "assistant"}, filtered=False),
    ]
    events.extend(chunk({"content": piece}) for piece in pieces)
    events.append(chunk({}, finish_reason=finish_reason, filtered=False))
    if usage is not False:
        events.append(usage_chunk(usage))
    return sse_reply(events, **options)


def tool_calls_stream(
    calls: Sequence[tuple[str, str, Sequence[str]]],
    *,
    usage: dict[str, Any] | Literal[False] | None = False,
    **options: Any,
) -> Reply:
    """Streamed (parallel) tool calls: (id, name, argument pieces) per call, fragments per index."""
    events: list[dict[str, Any] | bytes] = [prompt_filter_chunk()]
    for index, (call_id, name, pieces) in enumerate(calls):
        head = {
            "function": {"arguments": "", "name": name},
            "id": call_id,
            "index": index,
            "type": "function",
        }
        delta: dict[str, Any] = {"tool_calls": [head]}
        if index == 0:
            delta = {"content": None, "refusal": None, "role": "assistant", "tool_calls": [head]}
        events.append(chunk(delta, filtered=False))
        events.extend(
            chunk({"tool_calls": [{"function": {"arguments": p}, "index": index}]}, filtered=False)
            for p in pieces
        )
    events.append(chunk({}, finish_reason="tool_calls", filtered=False))
    if usage is not False:
        events.append(usage_chunk(usage))
    return sse_reply(events, **options)


def error_reply(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Reply:
    """An Azure `errorResponse`: `{"error": {"code", "message", ...extra}}`."""
    return json_reply({"error": {"code": code, "message": message, **extra}}, status, headers)


def rate_limited_reply(seconds: int = 2, headers: dict[str, str] | None = None) -> Reply:
    """429 as Azure sends it: code "429", the delay in the message and in retry-after(-ms)."""
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
        "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after "
        f"{seconds} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to "
        "further increase the default rate limit."
    )
    default = {
        "retry-after": str(seconds),
        "retry-after-ms": str(seconds * 1000),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-remaining-tokens": "0",
    }
    default.update(headers or {})
    return error_reply(429, "429", message, default)


def content_filter_reply(*, observed: bool = False) -> Reply:
    """400 for a prompt stopped by the content filter.

    The default follows the spec (`inner_error.content_filter_results`); `observed=True` sends the
    spelling seen in live traffic (`innererror.content_filter_result`, `type: null`, `status`),
    which the spec does not describe (so it is not schema-checked).
    """
    results = {
        "hate": _SAFE,
        "jailbreak": {"filtered": False, "detected": False},
        "self_harm": _SAFE,
        "sexual": _SAFE,
        "violence": {"filtered": True, "severity": "medium"},
    }
    if observed:
        error: dict[str, Any] = {
            "message": _FILTER_MESSAGE,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results},
        }
        reply = json_reply({"error": error}, 400)
        reply.validate = False
        return reply
    inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_results": results}
    return error_reply(400, "content_filter", _FILTER_MESSAGE, param="prompt", inner_error=inner)


def _deployment_not_found() -> Reply:
    return error_reply(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the "
        "last 5 minutes, please wait a moment and try again.",
    )


def _mid_stream_error() -> Reply:
    error = {
        "error": {"code": "server_error", "message": "The server had an error while processing your request."}
    }
    return sse_reply(
        [
            prompt_filter_chunk(),
            chunk({"content": "", "role": "assistant"}),
            chunk({"content": "Hel"}),
            error,
        ],
        done=False,
    )


def _default_chat(body: Any) -> Reply:
    if isinstance(body, dict) and body.get("stream") is True:
        options = body.get("stream_options") or {}
        return text_stream(usage=None if options.get("include_usage") else False)
    return json_reply(chat_completion())


def _tools_reply(body: Any) -> Reply:
    if isinstance(body, dict) and body.get("stream") is True:
        return tool_calls_stream([("call_fx1", "get_weather", ['{"city":', '"Paris"}'])])
    completion = chat_completion(
        None, tool_calls=[("call_fx1", "get_weather", '{"city":"Paris"}')], finish_reason="tool_calls"
    )
    return json_reply(completion)


# Behaviour by deployment name when nothing is queued.
DEPLOYMENT_BEHAVIOURS: dict[str, Callable[[Any], Reply]] = {
    "fake-tools": _tools_reply,
    "fake-parallel-tools": lambda body: tool_calls_stream(
        [("call_a", "get_weather", ['{"city":', '"Paris"}']), ("call_b", "get_time", ['{"tz":"CET"}'])]
    ),
    "fake-429": lambda body: rate_limited_reply(),
    "fake-500": lambda body: error_reply(
        500, "InternalServerError", "The service is temporarily unable to process your request."
    ),
    "fake-content-filter": lambda body: content_filter_reply(),
    "fake-midstream-error": lambda body: _mid_stream_error(),
    "fake-drop": lambda body: text_stream(done=False),
    "fake-abort": lambda body: text_stream(done=False, end="abort"),
    "fake-slow": lambda body: text_stream([f"tok{i} " for i in range(200)], delay=0.05),
}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class AzureRequest(RecordedRequest):
    """One request as received, with the deployment its path names."""

    @property
    def deployment(self) -> str:
        """The deployment named in the path ("" for other paths)."""
        parts = self.path.split("/")
        return parts[3] if len(parts) > 4 and parts[2] == "deployments" else ""


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeAzure(FakeServer[Reply, AzureRequest]):
    """The fake resource. Start with `start()` (or as a context manager), stop with `stop()`.

    Attributes:
        auth: "api_key" (an `api-key` header) or "entra" (`Authorization: Bearer`).
        key: the credential value expected.
    """

    label = "Azure"

    def __init__(self) -> None:
        self.auth: Literal["api_key", "entra"] = "api_key"
        self.key = AZURE_KEY
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(CHAT_PATH, self._chat, methods=["POST"]),
            Route(EMBEDDINGS_PATH, self._chat, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>/openai`)."""
        return f"http://127.0.0.1:{self.port}/openai"

    def _reset_settings(self) -> None:
        """Back to api-key auth with the default key."""
        self.auth = "api_key"
        self.key = AZURE_KEY

    # -- handlers ---------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        record = self._record(await read_request(request, AzureRequest))
        path, query, headers = record.path, record.query, record.headers
        api_version = query.get("api-version", "")
        problems = validate_azure_request(
            record.method,
            path,
            query,
            record.raw or None,
            headers,
            content_type=headers.get("content-type", "application/json").split(";")[0],
        )
        if "api-key" in headers and "authorization" in headers:
            problems.append("both api-key and Authorization sent: Azure expects exactly one credential")
        if problems:
            self._add_validation_errors([f"{record.method} {path}: {p}" for p in problems])
            return _Sender(self, path, api_version, self._rejection(problems[0]), check=False)
        denied = self._check_credentials(headers)
        if denied is not None:
            return _Sender(self, path, api_version, denied)
        reply = self._next_reply()
        if reply is None and path.endswith("/embeddings"):
            reply = embeddings_reply(record.body)
        if reply is None:
            reply = self._default(record.deployment, record.body)
        return _Sender(self, path, api_version, reply)

    def _rejection(self, problem: str) -> Reply:
        """What Azure answers to a request that breaks the spec."""
        if problem.startswith("SecurityValidationError"):
            return error_reply(401, "401", _ACCESS_DENIED)
        if problem.startswith("MissingRequiredParameter"):
            return error_reply(404, "404", "Resource not found")
        message = "Request does not match the Azure OpenAI spec: " + problem.splitlines()[0]
        return error_reply(400, "BadRequest", message, type="invalid_request_error")

    def _check_credentials(self, headers: dict[str, str]) -> Reply | None:
        if self.auth == "entra":
            if headers.get("authorization") != f"Bearer {self.key}":
                return error_reply(401, "401", _BAD_TOKEN)
        elif headers.get("api-key") != self.key:
            return error_reply(401, "401", _ACCESS_DENIED)
        return None

    def _default(self, deployment: str, body: Any) -> Reply:
        behaviour = DEPLOYMENT_BEHAVIOURS.get(deployment)
        if behaviour is not None:
            return behaviour(body)
        if deployment not in DEPLOYMENTS:
            return _deployment_not_found()
        return _default_chat(body)

    async def _unknown(self, request: Request) -> Response:
        return _Sender(self, request.url.path, "", error_reply(404, "404", "Resource not found"), check=False)

    # -- used by _Sender --------------------------------------------------------------------

    def check_reply(self, api_version: str, reply: Reply, path: str = "") -> list[str]:
        """Problems of `reply` against the spec of `api_version` (see the module docstring)."""
        if not reply.validate:
            return []
        spec = spec_for(api_version)
        if path.endswith("/embeddings") and reply.frames is None and reply.status < 400:
            return validate_azure_embeddings_response(spec, orjson.loads(reply.body))
        if reply.frames is None:
            schema = "errorResponse" if reply.status >= 400 else "createChatCompletionResponse"
            return validate_azure_schema(spec, schema, orjson.loads(reply.body))
        problems: list[str] = []
        for frame in reply.frames:
            if not frame.startswith(b"data: ") or frame == DONE_FRAME:
                continue
            event = orjson.loads(frame[6:])
            if "error" in event:
                problems.extend(validate_azure_schema(spec, "errorResponse", event))
            elif event.get("object") == "":
                problems.extend(_check_annotation(spec, event))
            else:
                problems.extend(validate_azure_schema(spec, "createChatCompletionStreamResponse", event))
        return problems

    def _next_id(self) -> str:
        number = next(self._ids)
        return f"{number:08x}-0000-4000-8000-{number:012x}"


def _check_annotation(spec: Path, event: dict[str, Any]) -> list[str]:
    """A filter-annotation chunk: placeholders as Azure sends them, filter results per the spec."""
    problems = [
        f"annotation chunk: {key} should be {value!r}"
        for key, value in (("id", ""), ("model", ""), ("created", 0))
        if event.get(key) != value
    ]
    if "prompt_filter_results" in event:
        problems.extend(validate_azure_schema(spec, "promptFilterResults", event["prompt_filter_results"]))
    for choice in event.get("choices", ()):
        problems.extend(
            validate_azure_schema(
                spec, "contentFilterChoiceResults", choice.get("content_filter_results", {})
            )
        )
    return problems


class _Sender(ReplySender):
    """Writes a `Reply` with Azure's headers; checks it against the spec of `api_version`."""

    def __init__(
        self, fake: FakeAzure, path: str, api_version: str, reply: Reply, *, check: bool = True
    ) -> None:
        super().__init__(fake, path, reply)
        self._fake: FakeAzure = fake
        if check:
            fake._add_response_errors(path, fake.check_reply(api_version, reply, path))

    def default_headers(self) -> dict[str, str]:
        return {
            "content-type": self._reply.content_type,
            "apim-request-id": self._fake._next_id(),
            "x-request-id": self._fake._next_id(),
            **_AZURE_HEADERS,
        }


# --------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module to use them)
# --------------------------------------------------------------------------------------------


def azure_settings(base_url: str, **options: Any) -> ProviderSettings:
    """Settings for an `azure_openai` adapter talking to the fake at `base_url`."""
    return ProviderSettings.model_validate(
        {"kind": "azure_openai", "base_url": base_url, "api_key": SecretStr(AZURE_KEY), "options": options}
    )


@pytest.fixture(scope="session")
def azure_upstream() -> Iterator[FakeAzure]:
    """The session's fake Azure resource (prefer `azure_fake`, which resets and checks it)."""
    fake = FakeAzure().start()
    yield fake
    fake.stop()


@pytest.fixture
def azure_fake(azure_upstream: FakeAzure) -> Iterator[FakeAzure]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    yield from checked(azure_upstream, "Azure OpenAI")


@pytest.fixture
async def azure_provider(azure_fake: FakeAzure) -> AsyncIterator[AzureOpenAIProvider]:
    """An AzureOpenAIProvider named "azure" (GA api-version, api-key auth) pointed at the fake."""
    provider = AzureOpenAIProvider("azure", azure_settings(azure_fake.base_url))
    yield provider
    await provider.aclose()
