"""Validation of the caller-set fields of `homa.admin.v1.ApiKey` and of UpdateApiKey masks.

Contract:
    * `read_fields(message, names, ...)` returns the storage values (columns of `api_keys`) of the
      named top-level fields, or raises INVALID_ARGUMENT listing EVERY bad field (BadRequest field
      violations with paths such as `api_key.scopes[1]`).
    * Scopes must be scope tokens known to the policy (`chat:write`, `admin:read`, ...) or
      `tenants:all`; allowed models are names or globs made of `A-Z a-z 0-9 . _ - : / @ + * ?`;
      `expire_time` must be in the future; limits and budgets must not be negative; label keys are
      `[a-z][a-z0-9_.-]{0,62}`, values at most 256 characters.
    * `mask_paths(mask_paths, message)` maps UpdateApiKey `update_mask` paths to what changes:
      top-level fields, sub-fields (`rate_limits.tokens_per_minute`, `budgets.daily_cost_micros`)
      and single labels (`labels.team`); an empty mask means every field set in the message.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.errors import FieldViolation, invalid_argument

#: Top-level ApiKey fields a caller sets (server-set fields are ignored on create).
SETTABLE: Final = (
    "name",
    "owner",
    "scopes",
    "allowed_models",
    "expire_time",
    "rate_limits",
    "budgets",
    "labels",
)
_LIMIT_FIELDS: Final = {
    "rate_limits": ("requests_per_minute", "tokens_per_minute"),
    "budgets": ("daily_cost_micros", "monthly_cost_micros"),
}
_MODEL_PATTERN: Final = re.compile(r"[A-Za-z0-9._\-:/@+*?]{1,256}")
_LABEL_KEY: Final = re.compile(r"[a-z][a-z0-9_.\-]{0,62}")
_TENANT: Final = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_MAX_TEXT: Final = 256
_MAX_ITEMS: Final = 256


def _text_problem(value: str, *, required: bool) -> str | None:
    if not value:
        return "required" if required else None
    if len(value) > _MAX_TEXT:
        return f"at most {_MAX_TEXT} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "must not contain control characters"
    return None


def tenant_problem(tenant: str) -> str | None:
    """Why `tenant` is not a valid tenant name (None when it is)."""
    return None if _TENANT.fullmatch(tenant) else "1-128 characters among A-Z a-z 0-9 . _ -"


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _limits(message: Any, prefix: str, violations: list[FieldViolation]) -> dict[str, int]:
    out: dict[str, int] = {}
    for descriptor, value in message.ListFields():
        if value < 0:
            violations.append(FieldViolation(f"{prefix}.{descriptor.name}", "must not be negative"))
        out[descriptor.name] = int(value)
    return out


def read_fields(
    message: admin_pb2.ApiKey,
    names: Collection[str],
    *,
    known_scopes: Collection[str],
    now_us: int,
    prefix: str = "api_key",
    require_name: bool = False,
) -> dict[str, Any]:
    """Storage values of the fields `names` of `message` (see the module docstring).

    Raises:
        GatewayError: INVALID_ARGUMENT with one field violation per problem.
    """
    violations: list[FieldViolation] = []
    out: dict[str, Any] = {}
    for name in ("name", "owner"):
        if name in names:
            problem = _text_problem(getattr(message, name), required=require_name and name == "name")
            if problem:
                violations.append(FieldViolation(f"{prefix}.{name}", problem))
            out[name] = getattr(message, name)
    if "scopes" in names:
        if len(message.scopes) > _MAX_ITEMS:
            violations.append(FieldViolation(f"{prefix}.scopes", f"at most {_MAX_ITEMS} entries"))
        for i, scope in enumerate(message.scopes):
            if scope not in known_scopes:
                violations.append(FieldViolation(f"{prefix}.scopes[{i}]", "unknown scope"))
        out["scopes"] = _dedupe(message.scopes)
    if "allowed_models" in names:
        if len(message.allowed_models) > _MAX_ITEMS:
            violations.append(FieldViolation(f"{prefix}.allowed_models", f"at most {_MAX_ITEMS} entries"))
        for i, pattern in enumerate(message.allowed_models):
            if not _MODEL_PATTERN.fullmatch(pattern):
                violations.append(
                    FieldViolation(
                        f"{prefix}.allowed_models[{i}]",
                        "not a model name or glob (letters, digits, . _ - : / @ + and the wildcards * ?)",
                    )
                )
        out["allowed_models"] = _dedupe(message.allowed_models)
    if "expire_time" in names:
        expire = message.expire_time.ToMicroseconds() if message.HasField("expire_time") else None
        if expire is not None and expire <= now_us:
            violations.append(FieldViolation(f"{prefix}.expire_time", "must be in the future"))
        out["expire_time_us"] = expire
    for group in ("rate_limits", "budgets"):
        if group in names:
            out[group] = _limits(getattr(message, group), f"{prefix}.{group}", violations)
    if "labels" in names:
        if len(message.labels) > 64:
            violations.append(FieldViolation(f"{prefix}.labels", "at most 64 labels"))
        for key, value in sorted(message.labels.items()):
            if not _LABEL_KEY.fullmatch(key):
                violations.append(FieldViolation(f"{prefix}.labels", f"invalid label key {key[:64]!r}"))
            elif len(value) > _MAX_TEXT:
                violations.append(
                    FieldViolation(f"{prefix}.labels[{key}]", f"at most {_MAX_TEXT} characters")
                )
        out["labels"] = dict(message.labels)
    if violations:
        raise invalid_argument("invalid API key fields", *violations)
    return out


@dataclass
class MaskPlan:
    """What an update mask changes: whole fields, sub-fields of limits, single labels."""

    fields: set[str] = field(default_factory=set)
    subfields: dict[str, set[str]] = field(default_factory=dict)  # "rate_limits" -> {"tokens_per_minute"}
    labels: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.fields or self.subfields or self.labels)


def _implied_mask(message: admin_pb2.ApiKey) -> list[str]:
    paths = [
        name for name in ("name", "owner", "scopes", "allowed_models", "labels") if getattr(message, name)
    ]
    paths += [name for name in ("expire_time", "rate_limits", "budgets") if message.HasField(name)]
    return paths


def mask_plan(paths: Iterable[str], message: admin_pb2.ApiKey) -> MaskPlan:
    """The changes named by `update_mask` (empty: every field set in `message`).

    Raises:
        GatewayError: INVALID_ARGUMENT (field `update_mask`) for unknown or immutable paths, or
            when nothing would change.
    """
    plan = MaskPlan()
    violations: list[FieldViolation] = []
    given = list(paths) or _implied_mask(message)
    for path in given:
        head, _, rest = path.partition(".")
        if head in SETTABLE and not rest:
            plan.fields.add(head)
        elif head in _LIMIT_FIELDS and rest in _LIMIT_FIELDS[head]:
            plan.subfields.setdefault(head, set()).add(rest)
        elif head == "labels" and _LABEL_KEY.fullmatch(rest):
            plan.labels.add(rest)
        else:
            violations.append(FieldViolation("update_mask", f"{path[:128]!r} cannot be updated"))
    if violations:
        raise invalid_argument("invalid update_mask", *violations)
    if not plan:
        raise invalid_argument("nothing to update", FieldViolation("update_mask", "names no field to change"))
    return plan
