"""Bedrock traffic checked against the official botocore service models (provider-specs README 5.5).

The oracle is botocore itself, loaded from the installed package (the same models as
`provider-specs/bedrock/*.service-2.json`):

- Requests: the JSON body is turned back into botocore parameters (base64 text in every blob
  field becomes bytes, strictly decoded), `modelId` is added from the URL, and the result goes
  through `botocore.validate.ParamValidator` against the operation's input shape. ParamValidator
  checks types, required members, unknown members, tagged unions and minimums; it does not check
  enums, maximums or patterns, so `constraint_problems` adds those from the same shape metadata.
- Replies the fake sends: JSON bodies against the output shape, each event-stream event against
  its `ConverseStreamOutput` member, the same way.
- SigV4: `verify_sigv4` recomputes the signature of a received request with
  `botocore.auth.SigV4Auth` for the request's own `X-Amz-Date` (a frozen clock) and compares.
- Framing: `encode_frame` is the test-side event-stream writer (botocore has no encoder); it is
  verified by reproducing the example file byte for byte and by decoding with botocore's
  `EventStream`, which `decode_stream` wraps.

Every checker returns a list of problems (empty = valid) so the fake can record them.
"""

from __future__ import annotations

import binascii
import re
import struct
import threading
import zlib
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.eventstream import EventStream
from botocore.model import Shape
from botocore.parsers import EventStreamJSONParser
from botocore.validate import ParamValidator

from tests.providers.spec_validation import OPENAI_SPEC

__all__ = [
    "EXAMPLES",
    "SERVICE_MODELS",
    "Credential",
    "constraint_problems",
    "control_model",
    "decode_stream",
    "encode_frame",
    "event_frame",
    "exception_frame",
    "host_of",
    "json_to_params",
    "runtime_model",
    "split_frames",
    "validate_control_query",
    "validate_error",
    "validate_event",
    "validate_output",
    "validate_request",
    "verify_sigv4",
]

EXAMPLES = OPENAI_SPEC.parent.parent / "bedrock" / "examples"
SERVICE_MODELS = EXAMPLES.parent

_lock = threading.Lock()


@cache
def _session() -> Any:
    return botocore.session.get_session()


def runtime_model() -> Any:
    """The bedrock-runtime service model (loaded once, thread-safe)."""
    with _lock:
        return _model("bedrock-runtime")


def control_model() -> Any:
    """The bedrock (control plane) service model."""
    with _lock:
        return _model("bedrock")


@cache
def _model(name: str) -> Any:
    return _session().get_service_model(name)


# -- JSON <-> botocore parameters -------------------------------------------------------------


def json_to_params(shape: Shape, value: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """The botocore parameter form of a JSON value: blob fields (base64 text) become bytes.

    Undecodable blobs are reported in `problems` and left as they are (ParamValidator will also
    accept text there, so the explicit report is what catches bad base64).
    """
    problems = [] if problems is None else problems
    kind = shape.type_name
    if kind == "blob":
        if isinstance(value, str):
            try:
                return binascii.a2b_base64(value, strict_mode=True)
            except binascii.Error:
                problems.append(f"{path}: not strict base64")
        return value
    if kind == "structure" and isinstance(value, dict) and not shape.metadata.get("document"):
        return {
            key: json_to_params(shape.members[key], item, f"{path}.{key}".lstrip("."), problems)
            if key in shape.members
            else item
            for key, item in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [json_to_params(shape.member, item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {
            key: json_to_params(shape.value, item, f"{path}.{key}", problems) for key, item in value.items()
        }
    return value


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def constraint_problems(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Enum, maximum and pattern violations (what ParamValidator leaves out).

    Patterns are matched against the whole value, the way AWS's request validation applies them.
    """
    problems: list[str] = []
    _constraints(shape, value, path, problems)
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _constraints(shape: Shape, value: Any, path: str, out: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "string" and isinstance(value, str):
        if "enum" in shape.metadata and value not in meta["enum"]:
            out.append(f"{path}: {value!r} is not one of {meta['enum']}")
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: longer than {meta['max']}")
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            out.append(f"{path}: does not match {meta['pattern']!r}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        if "max" in meta and value > meta["max"]:
            out.append(f"{path}: {value} is above the maximum {meta['max']}")
        if "min" in meta and value < meta["min"]:
            out.append(f"{path}: {value} is below the minimum {meta['min']}")
    elif kind == "blob" and isinstance(value, bytes | bytearray):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: more than {meta['max']} bytes")
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: more than {meta['max']} items")
        for i, item in enumerate(value):
            _constraints(shape.member, item, f"{path}[{i}]", out)
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: more than {meta['max']} entries")
        for key, item in value.items():
            _constraints(shape.value, item, _join(path, key), out)
    elif kind == "structure" and isinstance(value, dict) and not meta.get("document"):
        for key, item in value.items():
            member = shape.members.get(key)
            if member is not None:
                _constraints(member, item, _join(path, key), out)


def _check(shape: Shape, params: Any) -> list[str]:
    report = ParamValidator().validate(params, shape)
    problems = report.generate_report().splitlines() if report.has_errors() else []
    return problems + constraint_problems(shape, params)


# -- requests ---------------------------------------------------------------------------------

_RUNTIME_OPERATIONS = {
    "converse": "Converse",
    "converse-stream": "ConverseStream",
    "count-tokens": "CountTokens",
}


def validate_request(action: str, model_id: str, body: Any) -> list[str]:
    """Problems of a runtime request body (`action`: converse, converse-stream or count-tokens)."""
    operation = runtime_model().operation_model(_RUNTIME_OPERATIONS[action])
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    if "modelId" in body:
        return ["modelId belongs in the URL, not in the body"]
    problems: list[str] = []
    params = json_to_params(operation.input_shape, body, problems=problems)
    params["modelId"] = model_id
    return problems + _check(operation.input_shape, params)


def validate_control_query(operation_name: str, query: str) -> list[str]:
    """Problems of a control-plane GET query string (unknown parameters, enum values)."""
    shape = control_model().operation_model(operation_name).input_shape
    by_wire_name = {
        member.serialization.get("name", key): (key, member) for key, member in shape.members.items()
    }
    problems: list[str] = []
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in by_wire_name:
            problems.append(f"unknown query parameter {name!r}")
            continue
        key, member = by_wire_name[name]
        params[key] = int(value) if member.type_name == "integer" and value.isdigit() else value
    return problems + _check(shape, params)


# -- replies ----------------------------------------------------------------------------------


def validate_output(service: str, operation_name: str, payload: Any) -> list[str]:
    """Problems of a JSON reply body against the operation's output shape."""
    model = runtime_model() if service == "bedrock-runtime" else control_model()
    shape = model.operation_model(operation_name).output_shape
    problems: list[str] = []
    params = json_to_params(shape, payload, problems=problems)
    return problems + _check(shape, params)


def validate_error(service: str, operation_name: str, error_type: str, payload: Any) -> list[str]:
    """Problems of an error reply: the type must be one the operation declares, body `{message}`."""
    model = runtime_model() if service == "bedrock-runtime" else control_model()
    operation = model.operation_model(operation_name)
    known = {shape.name for shape in operation.error_shapes}
    problems = [] if error_type in known else [f"{operation_name} does not declare {error_type}"]
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), str):
        problems.append("an AWS error body is {'message': '...'}")
    return problems


def validate_event(event_type: str, payload: Any) -> list[str]:
    """Problems of one ConverseStream event (`event_type` = the `:event-type` header)."""
    stream = runtime_model().shape_for("ConverseStreamOutput")
    member = stream.members.get(event_type)
    if member is None:
        return [f"unknown ConverseStream event {event_type!r}"]
    problems: list[str] = []
    params = json_to_params(member, payload, problems=problems)
    return problems + _check(member, params)


# -- event-stream framing (test side) ----------------------------------------------------------

_STRING_HEADER = 7


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    encoded = b"".join(
        struct.pack(">B", len(name))
        + name.encode()
        + struct.pack(">BH", _STRING_HEADER, len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, payload: bytes) -> bytes:
    """An event message with the headers AWS sends, in AWS's order."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, payload)


def exception_frame(exception_type: str, payload: bytes) -> bytes:
    """An exception message (`:message-type exception`)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, payload)


def split_frames(data: bytes) -> list[bytes]:
    """Cut an event-stream body into its messages by their prelude lengths."""
    frames = []
    offset = 0
    while offset < len(data):
        (total,) = struct.unpack(">I", data[offset : offset + 4])
        frames.append(data[offset : offset + total])
        offset += total
    return frames


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self) -> list[bytes]:
        return [self._data]

    def close(self) -> None:
        pass


def decode_stream(data: bytes) -> list[dict[str, Any]]:
    """Decode a ConverseStream body with botocore's `EventStream` (raises `EventStreamError` on an
    exception frame, like boto3 would)."""
    shape = runtime_model().operation_model("ConverseStream").output_shape.members["stream"]
    return list(EventStream(_RawBody(data), shape, EventStreamJSONParser(), "ConverseStream"))


# -- SigV4 --------------------------------------------------------------------------------------


class Credential:
    """A key pair (and optional session token) the fake accepts."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.frozen = ReadOnlyCredentials(access_key, secret_key, token, None)


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def verify_sigv4(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, Credential],
    region: str,
) -> list[str]:
    """Recompute the request's SigV4 signature with botocore and compare.

    Args:
        url: the URL exactly as the client sent it (percent-encoding intact).
        headers: the received headers, lower-case names.
        credentials: accepted credentials by access key id.
    """
    authorization = headers.get("authorization", "")
    match = _AUTHORIZATION.fullmatch(authorization)
    if match is None:
        return [f"not a SigV4 Authorization header: {authorization[:40]!r}"]
    problems: list[str] = []
    credential = credentials.get(match["key"])
    if credential is None:
        return [f"unknown access key {match['key']!r}"]
    if match["service"] != "bedrock":
        problems.append(f"signing name is {match['service']!r}, Bedrock's is 'bedrock'")
    if match["region"] != region:
        problems.append(f"signed for region {match['region']!r}, expected {region!r}")
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(match["date"]):
        problems.append("X-Amz-Date does not match the credential scope date")
    signed = match["signed"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            problems.append(f"{required} is not signed")
    token = credential.frozen.token
    if token is not None and (
        headers.get("x-amz-security-token") != token or "x-amz-security-token" not in signed
    ):
        problems.append("the session token is missing or not signed")
    missing = [name for name in signed if name not in headers]
    if missing:
        return [*problems, f"signed headers not sent: {missing}"]
    # AWS canonicalises the query from its decoded parameters (so "%2F" and "/" sign alike);
    # the path is taken exactly as received.
    parts = urlsplit(url)
    request = AWSRequest(
        method=method,
        url=parts._replace(query="").geturl(),
        headers={name: headers[name] for name in signed},
        data=body,
        params=parse_qsl(parts.query, keep_blank_values=True),
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(credential.frozen, match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != match["signature"]:
        problems.append("the signature does not match botocore's for the same request")
    return problems


def host_of(url: str) -> str:
    """`host[:port]` of a URL."""
    return urlsplit(url).netloc
