"""Repository of Homa API keys (table `api_keys`) and the row <-> `admin_pb2.ApiKey` conversion.

Contract:
    * Only the SHA-256 hex of a secret (`secret_hash`) and its first characters (`secret_prefix`)
      are ever stored; this module never sees a secret.
    * Every query is a SQLAlchemy Core expression with bound parameters.
    * Tenant-owned reads and writes take `tenant`: a key of another tenant is reported as missing
      (None). `tenant=None` means "any tenant" (callers holding `tenants:all`, the local CLI).
    * `list_keys` pages newest first with an opaque keyset token bound to the tenant and filter it
      was issued for (AIP-158); `filter` is AIP-160 through `store/filtering.py`.
    * `revoke` is idempotent: revoking a revoked key returns it unchanged.
    * `find_by_hash` and `touch` serve the authentication hot path (auth/api_keys.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.errors import invalid_field
from homa_server.store.database import Database, now_us
from homa_server.store.filtering import FilterField, compile_filter
from homa_server.store.tables import api_keys

#: Fields `update()` may change (the updatable paths of UpdateApiKey, at top level).
UPDATABLE: Final = frozenset(
    {"name", "owner", "scopes", "allowed_models", "expire_time_us", "rate_limits", "budgets", "labels"}
)

STATE_ACTIVE: Final = admin_pb2.API_KEY_STATE_ACTIVE
STATE_REVOKED: Final = admin_pb2.API_KEY_STATE_REVOKED
STATE_EXPIRED: Final = admin_pb2.API_KEY_STATE_EXPIRED


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One row of `api_keys` (JSON columns as plain lists and dicts)."""

    api_key_id: str
    tenant: str
    secret_hash: str
    secret_prefix: str
    create_time_us: int
    update_time_us: int
    name: str = ""
    owner: str = ""
    scopes: list[str] = field(default_factory=list)
    allowed_models: list[str] = field(default_factory=list)
    rate_limits: dict[str, int] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    expire_time_us: int | None = None
    revoked: bool = False
    revoke_reason: str = ""
    revoke_time_us: int | None = None
    last_use_time_us: int | None = None

    def state(self, now: int | None = None) -> int:
        """ApiKeyState at `now` (epoch µs, default the current time)."""
        if self.revoked:
            return STATE_REVOKED
        if self.expire_time_us is not None and self.expire_time_us <= (now if now is not None else now_us()):
            return STATE_EXPIRED
        return STATE_ACTIVE


_COLUMNS: Final = tuple(f.name for f in fields(StoredKey))


def _row_to_key(row: Any) -> StoredKey:
    mapping = row._mapping
    return StoredKey(**{name: mapping[name] for name in _COLUMNS})


def _timestamp(target: Any, micros: int | None) -> None:
    if micros is not None:
        target.FromMicroseconds(micros)


def to_proto(key: StoredKey, now: int | None = None) -> admin_pb2.ApiKey:
    """The API message of `key` (never contains the secret or its hash)."""
    message = admin_pb2.ApiKey(
        api_key_id=key.api_key_id,
        name=key.name,
        owner=key.owner,
        tenant=key.tenant,
        scopes=key.scopes,
        allowed_models=key.allowed_models,
        rate_limits=admin_pb2.RateLimits(**key.rate_limits),
        budgets=admin_pb2.Budgets(**key.budgets),
        labels=key.labels,
        secret_prefix=key.secret_prefix,
        state=key.state(now),  # type: ignore[arg-type]
    )
    _timestamp(message.expire_time, key.expire_time_us)
    _timestamp(message.create_time, key.create_time_us)
    _timestamp(message.update_time, key.update_time_us)
    _timestamp(message.revoke_time, key.revoke_time_us)
    _timestamp(message.last_use_time, key.last_use_time_us)
    return message


def _state_expression(now: int) -> ColumnElement[Any]:
    return case(
        (api_keys.c.revoked.is_(True), STATE_REVOKED),
        (and_(api_keys.c.expire_time_us.is_not(None), api_keys.c.expire_time_us <= now), STATE_EXPIRED),
        else_=STATE_ACTIVE,
    )


def _filter_condition(text: str, now: int) -> ColumnElement[bool] | None:
    fields = {
        "tenant": FilterField(api_keys.c.tenant, kind="string"),
        "name": FilterField(api_keys.c.name, kind="string"),
        "owner": FilterField(api_keys.c.owner, kind="string"),
        "create_time": FilterField(api_keys.c.create_time_us, kind="time"),
        "expire_time": FilterField(api_keys.c.expire_time_us, kind="time"),
        "state": FilterField(
            _state_expression(now),
            kind="enum",
            enum_values={"ACTIVE": STATE_ACTIVE, "REVOKED": STATE_REVOKED, "EXPIRED": STATE_EXPIRED},
        ),
    }
    condition: ColumnElement[bool] | None = compile_filter(text, fields, labels=api_keys.c.labels)
    return condition


def _scope_digest(tenant: str | None, filter_text: str) -> str:
    return hashlib.sha256(json.dumps([tenant, filter_text]).encode()).hexdigest()[:16]


def _encode_token(key: StoredKey, digest: str) -> str:
    raw = json.dumps([key.create_time_us, key.api_key_id, digest], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> tuple[int, str]:
    try:
        created, key_id, issued_for = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(created, int) or not isinstance(key_id, str) or issued_for != digest:
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid_field("page_token", "not a token returned by this API for this request") from None
    return created, key_id


class ApiKeyRepository:
    """Reads and writes `api_keys` (see the module docstring)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, key: StoredKey) -> StoredKey:
        """Insert `key` as given (the caller generated id, hash and prefix) and return it."""
        async with self._db.begin() as conn:
            await conn.execute(api_keys.insert().values(**{name: getattr(key, name) for name in _COLUMNS}))
        return key

    async def get(self, api_key_id: str, tenant: str | None) -> StoredKey | None:
        """The key, or None when missing or owned by another tenant than `tenant` (None = any)."""
        query = select(api_keys).where(api_keys.c.api_key_id == api_key_id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        async with self._db.begin() as conn:
            row = (await conn.execute(query)).first()
        return _row_to_key(row) if row is not None else None

    async def find_by_hash(self, secret_hash: str) -> StoredKey | None:
        """The key whose secret hashes to `secret_hash` (any tenant, any state), or None."""
        async with self._db.begin() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.secret_hash == secret_hash))).first()
        return _row_to_key(row) if row is not None else None

    async def list_keys(
        self, tenant: str | None, *, page_size: int, page_token: str = "", filter_text: str = ""
    ) -> tuple[list[StoredKey], str]:
        """One page of keys, newest first, and the next page token ("" on the last page).

        Raises:
            GatewayError: INVALID_ARGUMENT for a bad `filter` or `page_token`.
        """
        now = now_us()
        digest = _scope_digest(tenant, filter_text)
        query = select(api_keys)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        condition = _filter_condition(filter_text, now) if filter_text.strip() else None
        if condition is not None:
            query = query.where(condition)
        if page_token:
            created, key_id = _decode_token(page_token, digest)
            query = query.where(
                or_(
                    api_keys.c.create_time_us < created,
                    and_(api_keys.c.create_time_us == created, api_keys.c.api_key_id < key_id),
                )
            )
        query = query.order_by(api_keys.c.create_time_us.desc(), api_keys.c.api_key_id.desc())
        async with self._db.begin() as conn:
            rows = (await conn.execute(query.limit(page_size + 1))).all()
        keys = [_row_to_key(row) for row in rows[:page_size]]
        next_token = _encode_token(keys[-1], digest) if len(rows) > page_size and keys else ""
        return keys, next_token

    async def update(
        self,
        api_key_id: str,
        tenant: str | None,
        changes: dict[str, Any] | Callable[[StoredKey], dict[str, Any]],
    ) -> StoredKey | None:
        """Apply `changes` (keys from `UPDATABLE`) and bump `update_time_us`; None when not found.

        `changes` may be a function of the current row, called inside the transaction with the row
        locked (PostgreSQL `FOR UPDATE`), for read-modify-write updates (merging sub-fields);
        whatever it raises aborts the update.

        Raises:
            ValueError: a field outside `UPDATABLE`.
        """
        async with self._db.begin() as conn:
            key = await self._locked(conn, api_key_id, tenant)
            if key is None:
                return None
            if callable(changes):
                changes = changes(key)
            unknown = set(changes) - UPDATABLE
            if unknown:
                raise ValueError(f"not updatable: {sorted(unknown)}")
            updated = replace(key, **changes, update_time_us=max(now_us(), key.update_time_us))
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.api_key_id == api_key_id)
                .values(**changes, update_time_us=updated.update_time_us)
            )
        return updated

    async def revoke(self, api_key_id: str, tenant: str | None, reason: str = "") -> StoredKey | None:
        """Revoke the key (idempotent: an already revoked key is returned unchanged); None when
        not found."""
        async with self._db.begin() as conn:
            key = await self._locked(conn, api_key_id, tenant)
            if key is None or key.revoked:
                return key
            now = max(now_us(), key.update_time_us)
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.api_key_id == api_key_id)
                .values(revoked=True, revoke_reason=reason, revoke_time_us=now, update_time_us=now)
            )
        return replace(key, revoked=True, revoke_reason=reason, revoke_time_us=now, update_time_us=now)

    async def touch(self, api_key_id: str, when_us: int) -> None:
        """Record that the key authenticated a call at `when_us` (never moves backwards)."""
        async with self._db.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.api_key_id == api_key_id)
                .where(or_(api_keys.c.last_use_time_us.is_(None), api_keys.c.last_use_time_us < when_us))
                .values(last_use_time_us=when_us)
            )

    async def _locked(self, conn: Any, api_key_id: str, tenant: str | None) -> StoredKey | None:
        query = select(api_keys).where(api_keys.c.api_key_id == api_key_id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        if self._db.dialect == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        return _row_to_key(row) if row is not None else None
