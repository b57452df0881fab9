"""A spec-faithful fake of the Gemini API (Generative Language API v1beta) on 127.0.0.1.

It is a real HTTP/1.1 server (uvicorn + Starlette) running in its own thread and event loop, so it
is independent of the tests' (function-scoped) loops and sees client disconnects exactly as Google
would. It sends Google's bytes: `application/json; charset=UTF-8` bodies, `text/event-stream` with
`data: <GenerateContentResponse>\\r\\n\\r\\n` framing and no terminator (the stream ends when the
connection closes), `{"error": google.rpc.Status}` bodies with RetryInfo / QuotaFailure details and
no rate-limit headers, and Google's front-end headers.

Endpoints: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`alt=sse`
required; without it Google answers one JSON array, and so does the fake, after recording the
violation), `:countTokens`, and `GET /v1beta/models`.

Authentication as Google does it: the `x-goog-api-key` header must carry `api_key`; a missing key
is 403 PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT with ErrorInfo `API_KEY_INVALID`. A key
in the `?key=` query parameter is recorded as a violation (the adapter must use the header).

Scripting: `enqueue(reply, ...)` queues replies, served in order to the next requests (any path).
With an empty queue the model name picks the behaviour (`MODEL_BEHAVIOURS`), so the in-process
gateway can be driven by model name too.

Checking: every request body is validated by `tests/providers/gemini_spec.py` (proto, discovery
document, semantics); an invalid one is answered 400 INVALID_ARGUMENT and recorded in
`validation_errors`. Every reply the fake sends (JSON bodies, each SSE chunk, error bodies) is
checked the same way; drift lands in `response_errors`. The `gemini_fake` fixture fails a test
when either list is not empty.

Records: `requests` (method, path, query, headers, parsed JSON body, time, client port) and
`disconnects` (a client that went away before a streamed reply finished, with `time.monotonic()`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pytest
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.providers.base import CallContext
from homa_server.providers.gemini import GeminiProvider
from homa_server.settings import ProviderSettings
from tests.providers.fakes import _server
from tests.providers.fakes._server import (
    ANY_METHOD,
    Disconnect,
    FakeServer,
    ReplySender,
    checked,
    read_request,
)
from tests.providers.fakes.embedding_vectors import gemini_batch_embed_payload
from tests.providers.gemini_spec import (
    EXAMPLES,
    validate_batch_embed_request,
    validate_count_tokens_request,
    validate_error_body,
    validate_generate_content_request,
    validate_response,
)

__all__ = [
    "MODEL_BEHAVIOURS",
    "TEST_KEY",
    "USAGE",
    "Disconnect",
    "FakeGemini",
    "RecordedRequest",
    "Reply",
    "candidate",
    "chunk",
    "error_reply",
    "example_stream",
    "function_call_part",
    "gemini_ctx",
    "gemini_fake_fixture",
    "gemini_provider_fixture",
    "gemini_settings",
    "gemini_upstream_fixture",
    "invalid_key_reply",
    "json_reply",
    "quota_reply",
    "rate_limited_reply",
    "response_json",
    "sse_reply",
    "text_stream",
]

TEST_KEY = "AIzaSyTest-0123456789abcdefghijklmnopqr"
MODEL_VERSION = "gemini-2.5-flash"
RESPONSE_ID = "fx-resp-1"
USAGE = {"promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21}
FRAME_END = b"\r\n\r\n"
# Google front-end headers seen on generativelanguage.googleapis.com answers (no rate-limit or
# request-id headers exist on this API).
_GOOGLE_HEADERS = {
    "vary": "Origin, X-Origin, Referer",
    "server": "scaffolding on HTTPServer2",
    "x-xss-protection": "0",
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "server-timing": "gfet4t7; dur=412",
    "alt-svc": 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000',
}
_JSON_TYPE = "application/json; charset=UTF-8"
_FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "batchEmbedContents")
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        body: the whole body of a non-streamed answer.
        frames: for a streamed answer, the raw bytes written one `send` at a time (already framed).
        headers: extra headers (they override the defaults).
        content_type: media type of the answer.
        delay: seconds to wait before each frame (slow streams), or before a whole body.
        hold: seconds to keep a streamed body open after its last frame (a lingering connection).
        end: "close" ends the body cleanly after the frames; "abort" drops the TCP connection
            without the chunked terminator.
        validate: check the reply against the spec (turn off for deliberately broken bytes).
    """

    status: int = 200
    body: bytes = b""
    frames: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = _JSON_TYPE
    delay: float = 0.0
    hold: float = 0.0
    end: Literal["close", "abort"] = "close"
    validate: bool = True


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status=status, body=orjson.dumps(payload), headers=dict(headers or {}))


def function_call_part(
    name: str, args: dict[str, Any], *, call_id: str | None = None, signature: str | None = None
) -> dict[str, Any]:
    """A `functionCall` part (optionally with Gemini's id and a `thoughtSignature`)."""
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id is not None:
        call["id"] = call_id
    part: dict[str, Any] = {"functionCall": call}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def candidate(
    parts: Sequence[dict[str, Any]] | None = None,
    *,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `Candidate` (index 0) with `parts` as model content; `extra` adds e.g. citationMetadata."""
    result: dict[str, Any] = {}
    if parts is not None:
        result["content"] = {"parts": list(parts), "role": "model"}
    if finish_reason is not None:
        result["finishReason"] = finish_reason
    result["index"] = 0
    result.update(extra)
    return result


def response_json(
    parts: Sequence[dict[str, Any]] = ({"text": "Hello there!"},),
    *,
    finish_reason: str = "STOP",
    usage: dict[str, Any] | None = None,
    response_id: str = RESPONSE_ID,
    **extra: Any,
) -> dict[str, Any]:
    """A whole `GenerateContentResponse` (what `generateContent` returns)."""
    return {
        "candidates": [candidate(parts, finish_reason=finish_reason, **extra)],
        "usageMetadata": USAGE if usage is None else usage,
        "modelVersion": MODEL_VERSION,
        "responseId": response_id,
    }


def chunk(
    parts: Sequence[dict[str, Any]] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    response_id: str = RESPONSE_ID,
    **extra: Any,
) -> dict[str, Any]:
    """One stream chunk: a `GenerateContentResponse` holding only the new parts."""
    result: dict[str, Any] = {}
    if parts is not None or finish_reason is not None or extra:
        result["candidates"] = [candidate(parts, finish_reason=finish_reason, **extra)]
    result["usageMetadata"] = usage if usage is not None else {"promptTokenCount": 12, "totalTokenCount": 12}
    result["modelVersion"] = MODEL_VERSION
    result["responseId"] = response_id
    return result


def sse_reply(
    events: Iterable[dict[str, Any] | bytes],
    *,
    delay: float = 0.0,
    hold: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A streamed answer: dicts become `data: <json>\\r\\n\\r\\n` frames (Google's line endings),
    bytes are sent verbatim. No terminator: the body just ends."""
    frames = [
        item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + FRAME_END for item in events
    ]
    return Reply(
        frames=frames, content_type="text/event-stream", delay=delay, hold=hold, end=end, validate=validate
    )


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    finish_reason: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed text the way Gemini sends it: one chunk per piece, the last one carrying
    `finishReason` and the full usage. `finish_reason=None` leaves it out (an interrupted stream)."""
    events: list[dict[str, Any] | bytes] = [chunk([{"text": piece}]) for piece in pieces[:-1]]
    if finish_reason is None:
        events.append(chunk([{"text": pieces[-1]}]))
    else:
        events.append(
            chunk(
                [{"text": pieces[-1]}], finish_reason=finish_reason, usage=USAGE if usage is None else usage
            )
        )
    return sse_reply(events, **options)


def example_stream(name: str = "streamGenerateContent-alt-sse.sse", **options: Any) -> Reply:
    """The exact bytes of `provider-specs/gemini/examples/<name>`, one frame per event."""
    data = (EXAMPLES / name).read_bytes()
    frames = [frame + FRAME_END for frame in data.split(FRAME_END) if frame.strip()]
    return sse_reply(frames, **options)


def error_reply(
    status: int,
    message: str,
    google_status: str,
    *,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Reply:
    """A Google API error: `{"error": {code, message, status, details?}}`."""
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status}
    if details:
        error["details"] = list(details)
    return json_reply({"error": error}, status, headers)


def rate_limited_reply() -> Reply:
    """429 RESOURCE_EXHAUSTED with the example body (RetryInfo retryDelay "27s")."""
    return Reply(status=429, body=(EXAMPLES / "error-429.json").read_bytes())


def quota_reply(retry_delay: str = "27.5s") -> Reply:
    """429 as Google sends it for a per-minute free-tier quota: QuotaFailure, Help and RetryInfo."""
    return error_reply(
        429,
        "You exceeded your current quota, please check your plan and billing details. "
        "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
        "limit: 10\nPlease retry in 27.5s.",
        "RESOURCE_EXHAUSTED",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _FREE_TIER_METRIC,
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
        ],
    )


def invalid_key_reply() -> Reply:
    """What Google answers for a wrong API key: 400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID."""
    return error_reply(
        400,
        "API key not valid. Please pass a valid API key.",
        "INVALID_ARGUMENT",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    )


def _mid_stream_error() -> Reply:
    error = {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
    return sse_reply([chunk([{"text": "Hel"}]), error])


def _tools(body: Any) -> Reply:
    return example_stream()


def _thinking(body: Any) -> Reply:
    return sse_reply(
        [
            chunk([{"text": "Let me think about it.", "thought": True}]),
            chunk([{"text": "42", "thoughtSignature": "c2lnLXRleHQ="}]),
            chunk(
                [{"text": ""}],
                finish_reason="STOP",
                usage={
                    "promptTokenCount": 10,
                    "candidatesTokenCount": 1,
                    "thoughtsTokenCount": 20,
                    "totalTokenCount": 31,
                },
            ),
        ]
    )


# Behaviour by model name when nothing is queued (usable through the in-process gateway).
MODEL_BEHAVIOURS: dict[str, Callable[[Any], Reply]] = {
    "fake-tools": _tools,
    "fake-parallel-tools": lambda body: sse_reply(
        [
            chunk(
                [
                    function_call_part("get_weather", {"city": "Paris"}, signature="c2lnLTE="),
                    function_call_part("get_time", {"tz": "CET"}),
                ],
                finish_reason="STOP",
                usage=USAGE,
            )
        ]
    ),
    "fake-thinking": _thinking,
    "fake-429": lambda body: rate_limited_reply(),
    "fake-500": lambda body: error_reply(500, "An internal error has occurred.", "INTERNAL"),
    "fake-503": lambda body: error_reply(
        503, "The model is overloaded. Please try again later.", "UNAVAILABLE"
    ),
    "fake-midstream-error": lambda body: _mid_stream_error(),
    "fake-drop": lambda body: text_stream(finish_reason=None),
    "fake-abort": lambda body: text_stream(finish_reason=None, end="abort"),
    "fake-slow": lambda body: text_stream([f"tok{i} " for i in range(200)], delay=0.05),
    "fake-blocked": lambda body: json_reply(
        {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": MODEL_VERSION}
    ),
}

DEFAULT_MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004", *MODEL_BEHAVIOURS]


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class RecordedRequest(_server.RecordedRequest):
    """One request as received, with the model and method its path names."""

    @property
    def model(self) -> str:
        """The model id of a `models/{model}:method` path ("" for other paths)."""
        name = self.path.removeprefix("/v1beta/").rpartition(":")[0]
        return name.removeprefix("models/")

    @property
    def method_name(self) -> str:
        """The custom method (`generateContent`, ...) of the path, or ""."""
        return self.path.rpartition(":")[2] if ":" in self.path else ""


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeGemini(FakeServer[Reply, RecordedRequest]):
    """The fake server. Start with `start()`, stop with `stop()`.

    Args:
        api_key: the key `x-goog-api-key` must carry.
    """

    label = "Gemini"

    def __init__(self, api_key: str = TEST_KEY) -> None:
        self.api_key = api_key
        self.models = list(DEFAULT_MODELS)
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1beta/models", self._list_models, methods=["GET"]),
            Route("/v1beta/{name:path}", self._generate, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=ANY_METHOD),
        ]

    @property
    def base_url(self) -> str:
        """What an adapter uses as its base URL (`http://127.0.0.1:<port>/v1beta`)."""
        return f"http://127.0.0.1:{self.port}/v1beta"

    def _reset_settings(self) -> None:
        """Restore the key and model list."""
        self.api_key = TEST_KEY
        self.models = list(DEFAULT_MODELS)

    # -- handlers ---------------------------------------------------------------------------

    async def _receive(self, request: Request) -> RecordedRequest:
        return self._record(await read_request(request, RecordedRequest))

    def _violation(self, record: RecordedRequest, problems: Iterable[str]) -> None:
        self._add_validation_errors([f"{record.method} {record.path}: {p}" for p in problems])

    def _auth(self, record: RecordedRequest) -> Reply | None:
        if "key" in record.query:
            self._violation(record, ["the API key must travel in x-goog-api-key, not in ?key="])
        key = record.headers.get("x-goog-api-key")
        if key is None:
            return error_reply(403, _NO_KEY, "PERMISSION_DENIED")
        if key != self.api_key:
            return invalid_key_reply()
        return None

    async def _generate(self, request: Request) -> Response:
        record = await self._receive(request)
        name, _, method = record.path.removeprefix("/v1beta/").rpartition(":")
        if method not in _METHODS or not name.startswith(("models/", "tunedModels/")) or name.count("/") != 1:
            message = f"Invalid resource name or method: {record.path}"
            self._violation(record, [message])
            return _Sender(self, record, error_reply(404, message, "NOT_FOUND"))
        denied = self._auth(record)
        if denied is not None:
            return _Sender(self, record, denied)
        problems = self._check_request(record, method)
        if problems:
            self._violation(record, problems)
            reply = error_reply(
                400, "Invalid JSON payload received. " + problems[0][:300], "INVALID_ARGUMENT"
            )
            return _Sender(self, record, reply)
        reply = self._next_reply()
        if reply is None:
            reply = self._default(record, method)
        if method == "streamGenerateContent" and record.query.get("alt") != "sse" and reply.frames:
            reply = _as_json_array(reply)  # what Google sends without alt=sse
        return _Sender(self, record, reply, method=method)

    def _check_request(self, record: RecordedRequest, method: str) -> list[str]:
        problems = []
        if not record.headers.get("content-type", "").startswith("application/json"):
            problems.append("Content-Type must be application/json")
        if method == "streamGenerateContent" and record.query.get("alt") != "sse":
            problems.append("streamGenerateContent must be called with alt=sse")
        if method == "countTokens":
            problems.extend(validate_count_tokens_request(record.raw))
        elif method == "batchEmbedContents":
            problems.extend(validate_batch_embed_request(record.raw))
        else:
            problems.extend(validate_generate_content_request(record.raw))
        return problems

    def _default(self, record: RecordedRequest, method: str) -> Reply:
        if method == "countTokens":
            count = max(1, len(record.raw) // 16)
            return json_reply(
                {"totalTokens": count, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": count}]}
            )
        behaviour = MODEL_BEHAVIOURS.get(record.model)
        if method == "batchEmbedContents" and behaviour is None:
            return json_reply(gemini_batch_embed_payload(record.body))
        if behaviour is not None:
            reply = behaviour(record.body)
            if method == "generateContent" and reply.frames is not None:
                return json_reply(response_json())  # stream behaviours answer unary calls plainly
            return reply
        if record.model not in self.models:
            return error_reply(
                404,
                f"models/{record.model} is not found for API version v1beta, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their supported methods.",
                "NOT_FOUND",
            )
        return text_stream() if method == "streamGenerateContent" else json_reply(response_json())

    async def _list_models(self, request: Request) -> Response:
        record = await self._receive(request)
        denied = self._auth(record)
        if denied is not None:
            return _Sender(self, record, denied)
        reply = self._next_reply()
        if reply is None:
            reply = self._model_page(record)
        return _Sender(self, record, reply, method="list")

    def _model_page(self, record: RecordedRequest) -> Reply:
        size_text = record.query.get("pageSize", "50")
        if not size_text.isdigit() or not 1 <= int(size_text) <= 1000:
            self._violation(record, [f"pageSize {size_text!r} is not an integer in [1, 1000]"])
            return error_reply(400, "Invalid pageSize", "INVALID_ARGUMENT")
        size = int(size_text)
        start = int(record.query.get("pageToken", "0") or 0)
        page = self.models[start : start + size]
        payload: dict[str, Any] = {
            "models": [
                {
                    "name": f"models/{model}",
                    "version": "001",
                    "displayName": model,
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 65536,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
                for model in page
            ]
        }
        if start + size < len(self.models):
            payload["nextPageToken"] = str(start + size)
        return json_reply(payload)

    async def _unknown(self, request: Request) -> Response:
        record = await self._receive(request)
        self._violation(record, ["unknown path"])
        page = b"<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)!!1</title><p><b>404.</b>"
        return _Sender(
            self,
            record,
            Reply(status=404, body=page, content_type="text/html; charset=UTF-8", validate=False),
        )

    # -- used by _Sender --------------------------------------------------------------------

    def _check_reply(self, path: str, method: str, reply: Reply) -> None:
        if not reply.validate:
            return
        problems: list[str] = []
        if reply.frames is not None:
            for frame in reply.frames:
                for line in frame.splitlines():
                    if line.startswith(b"data: "):
                        event = orjson.loads(line[6:])
                        if "error" in event:
                            problems.extend(validate_error_body(event))
                        else:
                            problems.extend(validate_response("GenerateContentResponse", event))
        elif reply.status >= 400:
            problems = validate_error_body(orjson.loads(reply.body))
        else:
            schema = {
                "countTokens": "CountTokensResponse",
                "list": "ListModelsResponse",
                "batchEmbedContents": "BatchEmbedContentsResponse",
            }.get(method, "GenerateContentResponse")
            problems = validate_response(schema, orjson.loads(reply.body))
        self._add_response_errors(path, problems)


def _as_json_array(reply: Reply) -> Reply:
    """The chunks of a streamed reply as the single JSON array Google sends without alt=sse."""
    items = [frame.strip()[6:] for frame in reply.frames or () if frame.startswith(b"data: ")]
    return Reply(body=b"[" + b",\r\n".join(items) + b"]", validate=False)


class _Sender(ReplySender):
    """Writes a `Reply` with Google's headers; checks it against the spec (API calls, errors)."""

    def __init__(self, fake: FakeGemini, record: RecordedRequest, reply: Reply, *, method: str = "") -> None:
        super().__init__(fake, record.path, reply)
        if method or reply.status >= 400:
            fake._check_reply(record.path, method, reply)

    def default_headers(self) -> dict[str, str]:
        headers = {"content-type": self._reply.content_type, **_GOOGLE_HEADERS}
        if self._reply.frames is not None:
            headers["content-disposition"] = "attachment"
        return headers


# --------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module to use them there)
# --------------------------------------------------------------------------------------------


def gemini_settings(base_url: str, **overrides: Any) -> ProviderSettings:
    """Settings for a `GeminiProvider` that talks to the fake at `base_url`."""
    values: dict[str, Any] = {"kind": "gemini", "base_url": base_url, "api_key": SecretStr(TEST_KEY)}
    values.update(overrides)
    return ProviderSettings.model_validate(values)


def gemini_ctx(model: str = MODEL_VERSION, **fields: Any) -> CallContext:
    """A CallContext for `model`."""
    return CallContext(model=model, **fields)


@pytest.fixture(name="gemini_upstream", scope="module")
def gemini_upstream_fixture() -> Iterator[FakeGemini]:
    """A fake Gemini server for the importing module (prefer `gemini_fake`)."""
    fake = FakeGemini().start()
    yield fake
    fake.stop()


@pytest.fixture(name="gemini_fake")
def gemini_fake_fixture(gemini_upstream: FakeGemini) -> Iterator[FakeGemini]:
    """The fake, reset for this test; fails the test on any spec violation, either direction."""
    yield from checked(gemini_upstream, "Gemini")


@pytest.fixture(name="gemini_provider")
async def gemini_provider_fixture(gemini_fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    """A GeminiProvider named "gemini" pointed at the fake (closed after the test)."""
    provider = GeminiProvider("gemini", gemini_settings(gemini_fake.base_url))
    yield provider
    await provider.aclose()
