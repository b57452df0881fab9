"""A fake of OpenAI's (and Azure OpenAI's) audio endpoints, for AudioService tests.

`FakeOpenAIAudio` is `FakeOpenAI` plus:

- `POST /v1/audio/transcriptions` and `/v1/audio/translations` (multipart/form-data): the form is
  parsed with the stdlib and checked against the spec's `CreateTranscriptionRequest` /
  `CreateTranslationRequest` schemas (field names, types, enums; `additionalProperties: false`);
  the record's `body` is the form as a dict (`file` = (filename, content type, bytes)).
- `POST /v1/audio/speech` (JSON): validated with openapi-core like every other OpenAI path.
- the same three under `/openai/deployments/{deployment}/audio/...` for Azure, which require an
  `api-key` header and an `api-version` query parameter instead of a Bearer token.

Default replies: verbose_json (whisper models) or json transcriptions of "hello world", checked
against the response schemas; speech as `SPEECH_FRAMES` binary frames. `enqueue` overrides them.
A delayed JSON reply records a disconnect when the client goes away during the delay.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from tests.providers.fakes._server import RecordedRequest, Reply, ReplySender, json_reply, read_request
from tests.providers.fakes.openai_upstream import FakeOpenAI, error_reply
from tests.providers.spec_validation import validate_openai_request, validate_openai_schema

__all__ = ["SPEECH_FRAMES", "FakeOpenAIAudio", "form_reply", "speech_reply", "verbose_transcription"]

SPEECH_FRAMES = [b"ID3" + bytes(range(200)), bytes(300), b"\xff\xfb" + bytes(98)]
_REQUEST_SCHEMAS = {
    "transcriptions": "CreateTranscriptionRequest",
    "translations": "CreateTranslationRequest",
}


def verbose_transcription(text: str = "hello world", duration: float = 2.5) -> dict[str, Any]:
    """A `CreateTranscriptionResponseVerboseJson` with one segment and two words."""
    return {
        "task": "transcribe",
        "language": "english",
        "duration": duration,
        "text": text,
        "segments": [
            {
                "id": 0, "seek": 0, "start": 0.0, "end": duration, "text": f" {text}",
                "tokens": [50364, 2425], "temperature": 0.0, "avg_logprob": -0.25,
                "compression_ratio": 1.1, "no_speech_prob": 0.01,
            }
        ],
        "words": [{"word": "hello", "start": 0.1, "end": 0.6}, {"word": "world", "start": 0.7, "end": 1.2}],
    }  # fmt: skip


def form_reply(form: dict[str, Any], operation: str) -> Reply:
    """The default answer to a transcription or translation form."""
    if form.get("response_format") == "verbose_json":
        payload = verbose_transcription()
        if operation == "translations":
            payload.pop("words")
            payload["task"] = "translate"
        elif "word" not in form.get("timestamp_granularities", []):
            payload.pop("words")
        return json_reply(payload)
    return json_reply({"text": "hello world", "usage": {"type": "duration", "seconds": 3}})


def speech_reply(
    frames: list[bytes] | None = None, delay: float = 0.0, content_type: str = "audio/mpeg"
) -> Reply:
    """A streamed binary speech answer."""
    return Reply(frames=list(frames or SPEECH_FRAMES), content_type=content_type, delay=delay)


def parse_form(raw: bytes, content_type: str) -> dict[str, Any]:
    """A multipart/form-data body as {name: value}; names ending in [] collect lists."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw, policy=email.policy.HTTP
    )
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        if part.get_filename():
            form[name] = (part.get_filename(), part.get_content_type(), payload)
        elif name.endswith("[]"):
            form.setdefault(name[:-2], []).append(payload.decode())
        else:
            form[name] = payload.decode()
    return form


def _schema_view(form: dict[str, Any]) -> dict[str, Any]:
    """The form as the JSON Schema of the spec sees it (numbers typed, the file as a string)."""
    view: dict[str, Any] = {}
    for key, value in form.items():
        if key == "file":
            view[key] = "<binary>"
        elif key == "temperature":
            view[key] = float(value)
        else:
            view[key] = value
    return view


class FakeOpenAIAudio(FakeOpenAI):
    """See the module docstring."""

    label = "OpenAI audio"

    def __init__(self) -> None:
        self.audio_received = threading.Event()  # set when an audio request has been recorded
        super().__init__()

    def _reset_settings(self) -> None:
        super()._reset_settings()
        self.audio_received.clear()

    def routes(self) -> list[BaseRoute]:
        audio = [
            Route("/v1/audio/{operation}", self._audio, methods=["POST"]),
            Route("/openai/deployments/{deployment}/audio/{operation}", self._audio, methods=["POST"]),
        ]
        return [*audio, *super().routes()]

    @property
    def azure_base_url(self) -> str:
        """What the Azure adapter uses as its base URL."""
        return f"http://127.0.0.1:{self.port}/openai"

    async def _audio(self, request: Request) -> Response:
        got = await read_request(request)
        operation = request.path_params["operation"]
        azure = "deployment" in request.path_params
        content_type = got.headers.get("content-type", "")
        problems: list[str] = []
        if azure:
            if "api-key" not in got.headers or "api-version" not in got.query:
                problems.append("Azure call without api-key header or api-version query")
        elif not got.headers.get("authorization", "").startswith("Bearer "):
            problems.append("no Bearer token")
        body: Any = got.body
        if operation in _REQUEST_SCHEMAS:
            if not content_type.startswith("multipart/form-data"):
                problems.append(f"{operation} needs multipart/form-data, got {content_type}")
                form: dict[str, Any] = {}
            else:
                form = parse_form(got.raw, content_type)
                problems += validate_openai_schema(_REQUEST_SCHEMAS[operation], _schema_view(form))
            body = form
        elif operation == "speech":
            headers = dict(got.headers)
            if azure:
                headers["authorization"] = "Bearer azure"
            problems += validate_openai_request("POST", "/v1/audio/speech", got.raw, headers)
        else:
            problems.append(f"unknown audio operation {operation}")
        self._record(
            RecordedRequest(
                got.method, got.path, got.query, got.headers, body, got.raw, got.time, got.client_port
            )
        )
        self.audio_received.set()
        if problems:
            self._add_validation_errors([f"POST {got.path}: {p}" for p in problems])
            return _AudioSender(self, got.path, error_reply(400, problems[0]))
        reply = self._next_reply()
        if reply is None:
            reply = form_reply(body, operation) if operation != "speech" else speech_reply()
        if reply.frames is None and reply.status < 300 and operation != "speech":
            payload = orjson.loads(reply.body)
            schema = (
                "CreateTranscriptionResponseVerboseJson"
                if "segments" in payload or "duration" in payload
                else "CreateTranscriptionResponseJson"
            )
            if operation == "translations" and schema.endswith("VerboseJson"):
                schema = "CreateTranslationResponseVerboseJson"
            self._add_response_errors(got.path, validate_openai_schema(schema, payload))
        return _AudioSender(self, got.path, reply)


class _AudioSender(ReplySender):
    """A `ReplySender` that, for a delayed whole-body reply (a slow transcription), watches for the
    client going away during the delay and records it as a disconnect."""

    def default_headers(self) -> dict[str, str]:
        return {"content-type": self._reply.content_type, "x-request-id": "req_audio"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self._reply
        if reply.frames is not None or not reply.delay:
            await super().__call__(scope, receive, send)
            return

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            await asyncio.wait_for(gone(), reply.delay)
        except TimeoutError:
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": self._wire_headers(len(reply.body)),
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
        else:
            self._fake._record_disconnect(self._path, 0)
