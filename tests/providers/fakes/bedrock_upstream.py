"""A spec-faithful fake of Amazon Bedrock (runtime and control plane) on 127.0.0.1, for adapter tests.

It is a real HTTP/1.1 server (uvicorn + Starlette) in its own thread and event loop, so it sees
client disconnects exactly as AWS would. It sends AWS's bytes: `application/json` bodies;
ConverseStream as `application/vnd.amazon.eventstream` binary messages (prelude, string headers,
JSON payload, CRC32s; the example files of provider-specs/bedrock are served verbatim); errors as
`{"message": ...}` with `x-amzn-ErrorType: <Code>:http://internal.amazon.com/coral/...`; and
`x-amzn-RequestId` on every answer. No rate-limit headers: Bedrock sends none.

Routes (the model id is taken from the raw, still percent-encoded path, the way AWS routes: an
unencoded '/' from an ARN would not reach the model):
`POST /model/{modelId}/converse | converse-stream | count-tokens`, and the control plane's
`GET /foundation-models` and `GET /inference-profiles` (point `control_base_url` here too).

Checking, per request: SigV4 is recomputed with botocore for the request's own `X-Amz-Date`
(`bedrock_spec.verify_sigv4`), or the bearer key is compared; the body goes through botocore's
ParamValidator plus enum/maximum/pattern checks; control-plane query strings are checked against
their operation. Failures are answered the way AWS answers them (403 / 400) and recorded in
`auth_errors` / `validation_errors`. Every reply the fake sends (JSON bodies, error bodies, each
stream event) is checked against the output shapes; drift lands in `response_errors`.

Scripting: `enqueue(reply, ...)` queues replies for the next requests (any path). With an empty
queue the model id picks the behaviour (`MODEL_BEHAVIOURS`). Records: `requests` and
`disconnects` (with `time.monotonic()` stamps).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from botocore.eventstream import EventStreamBuffer
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homa_server.settings import ProviderSettings
from tests.providers.bedrock_spec import (
    EXAMPLES,
    Credential,
    event_frame,
    exception_frame,
    split_frames,
    validate_control_query,
    validate_error,
    validate_event,
    validate_output,
    validate_request,
    verify_sigv4,
)
from tests.providers.fakes._server import Disconnect, FakeServer, Reply, ReplySender, json_reply, read_request
from tests.providers.fakes.bedrock_embeddings import (
    invoke_reply,
    validate_invoke_body,
    validate_invoke_output,
)

__all__ = [
    "ACCESS_KEY",
    "API_KEY",
    "MODEL",
    "MODEL_BEHAVIOURS",
    "REGION",
    "SECRET_KEY",
    "SESSION_ACCESS_KEY",
    "SESSION_SECRET_KEY",
    "SESSION_TOKEN",
    "USAGE",
    "Disconnect",
    "FakeBedrock",
    "RecordedRequest",
    "Reply",
    "bedrock_settings",
    "checked_fake",
    "converse_response",
    "error_reply",
    "example_stream",
    "json_reply",
    "running_fake",
    "stream_exception",
    "stream_reply",
    "text_stream",
    "throttling_reply",
    "tool_stream",
]

REGION = "us-east-1"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# AWS's documentation example key pair style; never real credentials.
ACCESS_KEY = "AKIDEXAMPLEHOMA00001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_ACCESS_KEY = "ASIAEXAMPLEHOMA00002"
SESSION_SECRET_KEY = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLWhvbWE="
USAGE = {"inputTokens": 25, "outputTokens": 12, "totalTokens": 37}
METRICS = {"latencyMs": 321}
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_EVENTSTREAM = "application/vnd.amazon.eventstream"
_RUNTIME_ACTIONS = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "count-tokens": "CountTokens",
    "invoke": "InvokeModel",
}
_CONTROL_PATHS = {
    "/foundation-models": "ListFoundationModels",
    "/inference-profiles": "ListInferenceProfiles",
}


# --------------------------------------------------------------------------------------------
# Replies and their builders
# --------------------------------------------------------------------------------------------


def converse_response(
    content: Sequence[dict[str, Any]] | None = None,
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `ConverseResponse` (content blocks default to one text block)."""
    blocks = list(content) if content is not None else [{"text": "Hello there!"}]
    return {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop_reason,
        "usage": USAGE if usage is None else usage,
        "metrics": METRICS,
    }


def error_reply(status: int, error_type: str, message: str, *, validate: bool = True) -> Reply:
    """An AWS error: `{"message"}` body, `x-amzn-ErrorType` header."""
    reply = json_reply({"message": message}, status, {"x-amzn-errortype": error_type + _ERROR_TYPE_SUFFIX})
    reply.validate = validate
    return reply


def throttling_reply() -> Reply:
    """429 ThrottlingException, as Bedrock sends it (no retry headers)."""
    return error_reply(429, "ThrottlingException", "Too many requests, please wait before trying again.")


Event = tuple[str, dict[str, Any]] | bytes


def stream_reply(
    events: Iterable[Event],
    *,
    delay: float = 0.0,
    end: Literal["close", "abort"] = "close",
    validate: bool = True,
) -> Reply:
    """A ConverseStream answer: (event type, payload) pairs become event messages; bytes are sent
    verbatim (already framed)."""
    frames = [
        item if isinstance(item, bytes) else event_frame(item[0], orjson.dumps(item[1])) for item in events
    ]
    return Reply(frames=frames, content_type=_EVENTSTREAM, delay=delay, end=end, validate=validate)


def stream_exception(exception_type: str, message: str) -> bytes:
    """An exception message for a stream (`throttlingException`, `modelStreamErrorException`, ...)."""
    return exception_frame(exception_type, orjson.dumps({"message": message}))


def _tail(stop_reason: str, usage: dict[str, Any] | None) -> list[Event]:
    return [
        ("messageStop", {"stopReason": stop_reason}),
        ("metadata", {"usage": USAGE if usage is None else usage, "metrics": METRICS}),
    ]


def text_stream(
    pieces: Sequence[str] = ("Hello", " there!"),
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    complete: bool = True,
    **options: Any,
) -> Reply:
    """Streamed text as Bedrock sends it: messageStart, text deltas (no contentBlockStart for
    text), contentBlockStop, then messageStop and metadata (left out when not `complete`)."""
    events: list[Event] = [("messageStart", {"role": "assistant"})]
    events.extend(("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0}) for p in pieces)
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    if complete:
        events.extend(_tail(stop_reason, usage))
    return stream_reply(events, **options)


def tool_stream(
    calls: Sequence[tuple[str, str, Sequence[str]]],
    *,
    text: str | None = None,
    usage: dict[str, Any] | None = None,
    **options: Any,
) -> Reply:
    """Streamed (parallel) tool calls: (toolUseId, name, input fragments) per call, each in its own
    content block after an optional text block."""
    events: list[Event] = [("messageStart", {"role": "assistant"})]
    index = 0
    if text is not None:
        events.append(("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": 0}))
        events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for call_id, name, pieces in calls:
        events.append(
            (
                "contentBlockStart",
                {"start": {"toolUse": {"toolUseId": call_id, "name": name}}, "contentBlockIndex": index},
            )
        )
        events.extend(
            ("contentBlockDelta", {"delta": {"toolUse": {"input": p}}, "contentBlockIndex": index})
            for p in pieces
        )
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.extend(_tail("tool_use", usage))
    return stream_reply(events, **options)


def example_stream(name: str, **options: Any) -> Reply:
    """The exact bytes of `provider-specs/bedrock/examples/<name>`, one message per send."""
    return Reply(frames=split_frames((EXAMPLES / name).read_bytes()), content_type=_EVENTSTREAM, **options)


def _tools_reply(action: str) -> Reply:
    if action == "converse-stream":
        return example_stream("converse-stream-tool-use.eventstream")
    block = {"toolUse": {"toolUseId": "tooluse_fx1", "name": "get_weather", "input": {"city": "Paris"}}}
    return json_reply(converse_response([{"text": "Let me check."}, block], stop_reason="tool_use"))


# Behaviour by model id when nothing is queued.
MODEL_BEHAVIOURS: dict[str, Callable[[str], Reply]] = {
    "fake-tools": _tools_reply,
    "fake-parallel-tools": lambda action: tool_stream(
        [("tooluse_a", "get_weather", ['{"city":', '"Paris"}']), ("tooluse_b", "get_time", ['{"tz":"CET"}'])]
    ),
    "fake-throttle": lambda action: throttling_reply(),
    "fake-500": lambda action: error_reply(500, "InternalServerException", "Internal server error"),
    "fake-403": lambda action: error_reply(
        403, "AccessDeniedException", "You don't have access to the model with the specified model ID."
    ),
    "fake-midstream-error": lambda action: example_stream("converse-stream-throttling.eventstream"),
    "fake-drop": lambda action: text_stream(complete=False),
    "fake-abort": lambda action: text_stream(complete=False, end="abort"),
    "fake-slow": lambda action: text_stream([f"tok{i} " for i in range(200)], delay=0.05),
}

FOUNDATION_MODELS = [MODEL, "amazon.nova-pro-v1:0", "meta.llama3-1-70b-instruct-v1:0"]
INFERENCE_PROFILES = [
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.amazon.nova-pro-v1:0",
    "us.meta.llama3-2-90b-instruct-v1:0",
]


def _foundation_models() -> Reply:
    summaries = [
        {
            "modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{model_id}",
            "modelId": model_id,
            "modelName": model_id.split(".")[1][:20],
            "providerName": model_id.split(".")[0][:20],
            "inputModalities": ["TEXT"],
            "outputModalities": ["TEXT"],
            "responseStreamingSupported": True,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": "ACTIVE"},
        }
        for model_id in FOUNDATION_MODELS
    ]
    return json_reply({"modelSummaries": summaries})


def _inference_profiles(query: dict[str, str]) -> Reply:
    """Two pages, one profile per page after the first two, to exercise nextToken paging."""
    start = int(query.get("nextToken", "0") or 0)
    page = INFERENCE_PROFILES[start : start + 2]
    summaries = [
        {
            "inferenceProfileName": f"US {profile_id.split('.')[1]} {start + i}",
            "inferenceProfileArn": f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/{profile_id}",
            "models": [
                {"modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{profile_id.split('.', 1)[1]}"}
            ],
            "inferenceProfileId": profile_id,
            "status": "ACTIVE",
            "type": "SYSTEM_DEFINED",
        }
        for i, profile_id in enumerate(page)
    ]
    payload: dict[str, Any] = {"inferenceProfileSummaries": summaries}
    if start + 2 < len(INFERENCE_PROFILES):
        payload["nextToken"] = str(start + 2)
    return json_reply(payload)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received."""

    method: str
    path: str  # raw, still percent-encoded
    query: str
    model_id: str  # decoded from the path ("" for control-plane calls)
    action: str  # converse, converse-stream, count-tokens, foundation-models, inference-profiles
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    raw: bytes
    time: float  # time.monotonic()
    client_port: int  # equal ports mean a reused keep-alive connection


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeBedrock(FakeServer[Reply, RecordedRequest]):
    """The fake server. `start()` / `stop()`, or use as a context manager.

    Attributes:
        credentials: SigV4 key pairs accepted, by access key id.
        api_keys: Bedrock API keys accepted as bearer tokens.
        region: the region signatures must be scoped to.
    """

    label = "Bedrock"

    def __init__(self) -> None:
        self.credentials: dict[str, Credential] = {}
        self.api_keys: set[str] = set()
        self.region = REGION
        self.auth_errors: list[str] = []
        super().__init__()  # `_ids` numbers x-amzn-RequestId; restarted by reset()
        self.reset()

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]

    @property
    def base_url(self) -> str:
        """What an adapter uses as `base_url` and `control_base_url`."""
        return f"http://127.0.0.1:{self.port}"

    def _reset_settings(self) -> None:
        """Forget the auth errors too; accept the test credentials again."""
        self.auth_errors.clear()
        self.credentials = {
            ACCESS_KEY: Credential(ACCESS_KEY, SECRET_KEY),
            SESSION_ACCESS_KEY: Credential(SESSION_ACCESS_KEY, SESSION_SECRET_KEY, SESSION_TOKEN),
        }
        self.api_keys = {API_KEY}
        self.region = REGION
        self._ids = itertools.count(1)

    # -- handling ---------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        got = await read_request(request)
        headers, body, raw = got.headers, got.body, got.raw
        raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        query = request.scope.get("query_string", b"").decode("latin-1")
        model_id, action = _route(raw_path)
        self._record(
            RecordedRequest(
                request.method,
                raw_path,
                query,
                model_id,
                action,
                headers,
                body,
                raw,
                got.time,
                got.client_port,
            )
        )
        operation = _RUNTIME_ACTIONS.get(action) or _CONTROL_PATHS.get(f"/{action}")
        expected_method = "POST" if action in _RUNTIME_ACTIONS else "GET"
        if operation is None or request.method != expected_method:
            message = (
                f"Unable to determine service/operation name to be authorized ({request.method} {raw_path})"
            )
            return _Sender(
                self, raw_path, error_reply(404, "UnknownOperationException", message, validate=False)
            )
        url = f"{self.base_url}{raw_path}" + (f"?{query}" if query else "")
        denied = self._authenticate(request.method, url, headers, raw)
        if denied is not None:
            return _Sender(self, raw_path, denied, operation=operation)
        problems = self._validate(action, operation, model_id, headers, body, query)
        if problems:
            self._add_validation_errors([f"{request.method} {raw_path}: {p}" for p in problems])
            reply = error_reply(400, "ValidationException", "; ".join(problems)[:1000])
            return _Sender(self, raw_path, reply, operation=operation)
        reply = self._next_reply()
        if reply is None:
            reply = self._default(action, model_id, body, query)
        return _Sender(self, raw_path, reply, operation=operation)

    def _authenticate(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> Reply | None:
        authorization = headers.get("authorization", "")
        if not authorization:
            self._auth_error("no Authorization header")
            return error_reply(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token", validate=False
            )
        if authorization.startswith("Bearer "):
            if authorization[7:] in self.api_keys:
                return None
            self._auth_error("unknown bearer key")
            return error_reply(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                validate=False,
            )
        problems = verify_sigv4(method, url, headers, raw, self.credentials, self.region)
        if not problems:
            return None
        self._auth_error("; ".join(problems))
        if any(p.startswith("unknown access key") for p in problems):
            return error_reply(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                validate=False,
            )
        message = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details."
        )
        return error_reply(403, "InvalidSignatureException", message, validate=False)

    def _auth_error(self, problem: str) -> None:
        with self._lock:
            self.auth_errors.append(problem)

    @staticmethod
    def _validate(
        action: str, operation: str, model_id: str, headers: dict[str, str], body: Any, query: str
    ) -> list[str]:
        if action in _RUNTIME_ACTIONS:
            content_type = headers.get("content-type", "")
            problems = [] if content_type == "application/json" else [f"Content-Type is {content_type!r}"]
            if query:
                problems.append(f"unexpected query string {query!r}")
            if action == "invoke":  # an opaque body in the service model: check the model's own format
                return problems + validate_invoke_body(model_id, body)
            return problems + validate_request(action, model_id, body)
        return validate_control_query(operation, query)

    def _default(self, action: str, model_id: str, body: Any, query: str) -> Reply:
        if action == "foundation-models":
            return _foundation_models()
        if action == "inference-profiles":
            return _inference_profiles(dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair))
        if action == "count-tokens":
            return json_reply({"inputTokens": max(1, len(orjson.dumps(body)) // 4)})
        if action == "invoke" and model_id not in MODEL_BEHAVIOURS:
            return invoke_reply(model_id, body)
        behaviour = MODEL_BEHAVIOURS.get(model_id)
        if behaviour is not None:
            return behaviour(action)
        if action == "converse-stream":
            return text_stream()
        return json_reply(converse_response())

    # -- used by _Sender --------------------------------------------------------------------

    def _check_reply(self, operation: str, reply: Reply) -> None:
        if not reply.validate:
            return
        service = "bedrock" if operation.startswith("List") else "bedrock-runtime"
        problems: list[str] = []
        if reply.status >= 300:
            error_type = reply.headers.get("x-amzn-errortype", "").split(":", 1)[0]
            problems = validate_error(service, operation, error_type, orjson.loads(reply.body))
        elif reply.frames is not None:
            problems = _check_frames(reply.frames)
        elif operation == "InvokeModel":
            problems = validate_invoke_output(orjson.loads(reply.body), reply.headers)
        else:
            problems = validate_output(service, operation, orjson.loads(reply.body))
        self._add_response_errors(operation, problems)

    def _next_request_id(self) -> str:
        number = next(self._ids)
        return f"{number:08x}-0000-4000-8000-{number:012x}"


def _route(raw_path: str) -> tuple[str, str]:
    """(model id, action) for a runtime path, ("", "<name>") for a control-plane path."""
    if raw_path.startswith("/model/"):
        encoded, _, action = raw_path[len("/model/") :].rpartition("/")
        if not encoded or "/" in encoded:
            return "", "unknown"  # an unencoded '/' in the model id: AWS would not find the model
        return unquote(encoded), action
    return "", raw_path.strip("/")


def _check_frames(frames: Sequence[bytes]) -> list[str]:
    """Decode the frames with botocore and validate every event against its shape."""
    problems: list[str] = []
    buffer = EventStreamBuffer()
    for frame in frames:
        buffer.add_data(frame)
    stream = {"internalServerException", "modelStreamErrorException", "validationException",
              "throttlingException", "serviceUnavailableException"}  # fmt: skip
    for message in buffer:
        kind = message.headers.get(":message-type")
        payload = orjson.loads(message.payload)
        if kind == "event":
            payload.pop("p", None)  # AWS pads event payloads with a "p" member; not in the model
            problems.extend(validate_event(message.headers.get(":event-type", ""), payload))
        elif kind == "exception":
            if message.headers.get(":exception-type") not in stream:
                problems.append(f"{message.headers.get(':exception-type')} is not a ConverseStream exception")
        else:
            problems.append(f"unexpected :message-type {kind!r}")
    return problems


class _Sender(ReplySender):
    """Writes a `Reply` with AWS's headers; checks it against the model of `operation` (if any)."""

    def __init__(self, fake: FakeBedrock, path: str, reply: Reply, *, operation: str = "") -> None:
        super().__init__(fake, path, reply)
        self._fake: FakeBedrock = fake
        if operation:
            fake._check_reply(operation, reply)

    def default_headers(self) -> dict[str, str]:
        return {
            "date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            "content-type": self._reply.content_type,
            "x-amzn-requestid": self._fake._next_request_id(),
        }


# --------------------------------------------------------------------------------------------
# pytest helpers (fixtures are declared in the test modules, which call these)
# --------------------------------------------------------------------------------------------


def running_fake() -> Iterator[FakeBedrock]:
    """Start a fake for a fixture's lifetime (use from a module- or session-scoped fixture)."""
    fake = FakeBedrock().start()
    try:
        yield fake
    finally:
        fake.stop()


def checked_fake(fake: FakeBedrock) -> Iterator[FakeBedrock]:
    """Reset `fake` for one test; at teardown fail the test on any spec or auth violation."""
    fake.reset()
    yield fake
    try:
        assert fake.validation_errors == [], "requests violated the Bedrock service model"
        assert fake.auth_errors == [], f"requests were not authenticated correctly: {fake.auth_errors}"
        assert fake.response_errors == [], "the fake sent replies that violate the service model"
    finally:
        fake.reset()


def bedrock_settings(fake: FakeBedrock, *, auth: str = "keys", **overrides: Any) -> ProviderSettings:
    """Settings for a `BedrockProvider` talking to `fake` (runtime and control plane).

    Args:
        auth: "keys" (static SigV4 keys), "session" (keys with a session token), "bearer" (the
            API key) or "none" (nothing configured: botocore's chain decides).
        overrides: top-level settings; an `options` mapping is merged into the defaults.
    """
    options: dict[str, Any] = {"region": REGION, "control_base_url": fake.base_url}
    values: dict[str, Any] = {"kind": "bedrock", "base_url": fake.base_url}
    if auth == "keys":
        options.update(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    elif auth == "session":
        options.update(
            access_key_id=SESSION_ACCESS_KEY,
            secret_access_key=SESSION_SECRET_KEY,
            session_token=SESSION_TOKEN,
        )
    elif auth == "bearer":
        values["api_key"] = SecretStr(API_KEY)
    options.update(overrides.pop("options", {}))
    values["options"] = options
    values.update(overrides)
    return ProviderSettings.model_validate(values)
