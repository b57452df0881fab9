"""Validate Azure OpenAI traffic against the official data-plane specs (`provider-specs/azure-openai`).

Requests are checked with openapi-core against `inference-stable-2024-10-21.validation.json`, or
`inference-preview-2025-04-01-preview.validation.json` for preview api-versions (the same mapping
the adapter uses, see `api_versions`). The spec declares its server as `https://{endpoint}/openai`,
so requests are validated as if sent to `AZURE_HOST` with their real path (`/openai/deployments/
...`), whatever address the fake listens on.

On top of openapi-core, `undeclared_fields` reports body properties the spec does not declare. The
Azure schemas never say `additionalProperties: false`, so a plain validator accepts any extra field
(`model`, `reasoning_effort` on the GA version...), while the real service rejects unknown ones.

Loading patches, each for a stated reason (the files on disk stay untouched):
- `openapi` is set to 3.1.0: the validation variants use JSON-Schema null types
  (`type: ["number", "null"]`), which openapi-core's 3.0 validator (chosen for the GA file's
  "3.0.0") cannot read.
- the `bearer` scheme (OAuth2 implicit flow, which openapi-core does not support: it warns and
  skips it) becomes HTTP bearer, which is what Entra ID tokens look like on the wire. Security is
  then checked: an `api-key` header or `Authorization: Bearer`.
- GA erratum: `ResponseFormatJsonSchema.json_schema.required` lists `type`, a property it does not
  declare; the preview spec corrects it to `[schema, name]` and no SDK sends it. It is dropped.

Responses and stream chunks of the fake are checked with jsonschema against component schemas.

The specs live next to the repository (`../shared/provider-specs`); `HOMA_PROVIDER_SPECS`
overrides the location, as in `spec_validation.py`.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

__all__ = [
    "AZURE_HOST",
    "PREVIEW_SPEC",
    "STABLE_SPEC",
    "azure_api",
    "declared_request_fields",
    "spec_for",
    "undeclared_fields",
    "validate_azure_request",
    "validate_azure_schema",
]

_SPECS = Path(
    os.environ.get("HOMA_PROVIDER_SPECS", Path(__file__).resolve().parents[3] / "shared/provider-specs")
)
STABLE_SPEC = _SPECS / "azure-openai" / "inference-stable-2024-10-21.validation.json"
PREVIEW_SPEC = _SPECS / "azure-openai" / "inference-preview-2025-04-01-preview.validation.json"
AZURE_HOST = "https://homa-test.openai.azure.com"
CHAT_SCHEMA = "createChatCompletionRequest"

_lock = threading.RLock()


def spec_for(api_version: str) -> Path:
    """The spec file a request with `api_version` is validated against."""
    return PREVIEW_SPEC if api_version.endswith("-preview") else STABLE_SPEC


@cache
def _spec_dict(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    data["openapi"] = "3.1.0"
    data["components"]["securitySchemes"]["bearer"] = {"type": "http", "scheme": "bearer"}
    data["security"] = [{"bearer": []}, {"apiKey": []}]
    inner = data["components"]["schemas"]["ResponseFormatJsonSchema"]["properties"]["json_schema"]
    inner["required"] = [name for name in inner["required"] if name in inner["properties"]]
    return data


def azure_api(path: Path) -> OpenAPI:
    """The loaded spec at `path` (built on first use, then shared; thread-safe)."""
    with _lock:
        return _api(path)


@cache
def _api(path: Path) -> OpenAPI:
    return OpenAPI.from_dict(_spec_dict(path), config=Config(spec_validator_cls=None))


def validate_azure_request(
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes | None,
    headers: dict[str, str],
    *,
    content_type: str = "application/json",
) -> list[str]:
    """Validate one request; returns the problems found (empty when valid).

    Args:
        method: HTTP method, any case.
        path: the path as Azure sees it, including `/openai`.
        query: query parameters (`api-version` selects the spec; a missing one is reported).
        body: raw request body.
        headers: request headers.
        content_type: the body's media type.
    """
    spec = spec_for(query.get("api-version", ""))
    request = MockRequest(
        AZURE_HOST,
        method.lower(),
        path,
        args=query,
        data=body,
        content_type=content_type,
        headers=headers,
    )
    problems = [_describe(error) for error in azure_api(spec).iter_request_errors(request)]
    if not problems and body and path.endswith("/chat/completions"):
        problems.extend(undeclared_fields(spec, CHAT_SCHEMA, orjson.loads(body)))
    return problems


def validate_azure_schema(spec: Path, schema: str, instance: Any) -> list[str]:
    """Validate `instance` against `#/components/schemas/<schema>` of `spec`; returns problems."""
    validator = _validator(spec, f"#/components/schemas/{schema}")
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


def validate_azure_embeddings_response(spec: Path, instance: Any) -> list[str]:
    """Validate an embeddings answer against the (inline) 200 schema of the embeddings path."""
    path = "~1deployments~1{deployment-id}~1embeddings"
    pointer = f"#/paths/{path}/post/responses/200/content/application~1json/schema"
    with _lock:
        root = {
            "$ref": pointer,
            "components": _spec_dict(spec)["components"],
            "paths": _spec_dict(spec)["paths"],
        }
        validator = jsonschema.Draft202012Validator(root)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
        for error in validator.iter_errors(instance)
    ]


def declared_request_fields(spec: Path) -> frozenset[str]:
    """Top-level properties the spec declares for a chat completions request body."""
    schemas = _spec_dict(spec)["components"]["schemas"]
    fields: set[str] = set()
    for branch in _Declarations(spec).branches(schemas[CHAT_SCHEMA], {}):
        fields.update(branch.get("properties", {}))
    return frozenset(fields)


def undeclared_fields(spec: Path, schema: str, instance: Any) -> list[str]:
    """Paths of object properties in `instance` that `schema` (in `spec`) does not declare.

    At each object, the declared properties are those of the schema and of every `allOf` branch and
    every `oneOf`/`anyOf` branch the value matches. An object is open (anything goes) when no branch
    declares properties or some branch allows `additionalProperties` (tool parameters, JSON
    schemas, `logit_bias`).
    """
    declarations = _Declarations(spec)
    out: list[str] = []
    declarations.check(_spec_dict(spec)["components"]["schemas"][schema], instance, "<body>", out)
    return out


class _Declarations:
    def __init__(self, spec: Path) -> None:
        self._spec = spec
        self._schemas = _spec_dict(spec)["components"]["schemas"]
        # Azure's polymorphic bodies (data_sources, their authentication...) name their subtypes
        # with `x-ms-discriminator-value` on a schema whose allOf refers to the base; the base
        # alone declares only `type`. base name -> {type value -> subtype name}.
        self._subtypes: dict[str, dict[str, str]] = {}
        for name, schema in self._schemas.items():
            value = schema.get("x-ms-discriminator-value")
            for sub in schema.get("allOf", ()) if value else ():
                if "$ref" in sub:
                    self._subtypes.setdefault(sub["$ref"].rsplit("/", 1)[-1], {})[value] = name

    def branches(
        self, schema: dict[str, Any], instance: Any, seen: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """`schema` and, recursively, its allOf branches, the anyOf/oneOf branches `instance` matches
        and the subtype `instance["type"]` names."""
        found: list[dict[str, Any]] = []
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self._schemas[name]
            subtype = (
                self._subtypes.get(name, {}).get(str(instance.get("type")))
                if isinstance(instance, dict)
                else None
            )
            if subtype is not None and subtype not in seen:
                found.extend(
                    self.branches({"$ref": f"#/components/schemas/{subtype}"}, instance, seen | {subtype})
                )
        found.append(schema)
        for sub in schema.get("allOf", ()):
            found.extend(self.branches(sub, instance, seen))
        for key in ("anyOf", "oneOf"):
            for sub in schema.get(key, ()):
                if self.matches(sub, instance):
                    found.extend(self.branches(sub, instance, seen))
        return found

    def matches(self, schema: dict[str, Any], instance: Any) -> bool:
        if "$ref" in schema:
            validator = _validator(self._spec, schema["$ref"])
        else:
            validator = _inline_validator(self._spec, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
        return bool(validator.is_valid(instance))

    def check(self, schema: dict[str, Any], instance: Any, path: str, out: list[str]) -> None:
        branches = self.branches(schema, instance)
        if isinstance(instance, dict):
            declared: dict[str, list[dict[str, Any]]] = {}
            open_object = False
            for branch in branches:
                if branch.get("additionalProperties"):
                    open_object = True
                for name, sub in branch.get("properties", {}).items():
                    declared.setdefault(name, []).append(sub)
            if declared and not open_object:
                out.extend(
                    f"{path}.{name}: not declared by the spec" for name in instance if name not in declared
                )
            for name, value in instance.items():
                for sub in declared.get(name, ()):
                    self.check(sub, value, f"{path}.{name}", out)
        elif isinstance(instance, list):
            for branch in branches:
                items = branch.get("items")
                if isinstance(items, dict):
                    for index, item in enumerate(instance):
                        self.check(items, item, f"{path}[{index}]", out)


@cache
def _validator(spec: Path, ref: str) -> jsonschema.Draft202012Validator:
    with _lock:
        root = {"$ref": ref, "components": _spec_dict(spec)["components"]}
        return jsonschema.Draft202012Validator(root)


@cache
def _inline_validator(spec: Path, schema_json: bytes) -> jsonschema.Draft202012Validator:
    with _lock:
        root = {**orjson.loads(schema_json), "components": _spec_dict(spec)["components"]}
        return jsonschema.Draft202012Validator(root)


def _describe(error: Exception) -> str:
    parts = [f"{type(error).__name__}: {error}"]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts.extend(f"  {getattr(d, 'message', d)!s:.300}" for d in details)
        cause = cause.__cause__
    return "\n".join(parts)
