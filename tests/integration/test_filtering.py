"""AIP-160 filters compiled by store/filtering.py, run against real rows on both engines."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from homa_server.errors import Code, GatewayError
from homa_server.store.database import Database
from homa_server.store.filtering import FilterField, compile_filter
from homa_server.store.tables import api_keys

T0 = 1_790_000_000_000_000  # 2026-09-21T..Z in epoch µs

FIELDS = {
    "name": FilterField(api_keys.c.name),
    "tenant": FilterField(api_keys.c.tenant),
    "state": FilterField(api_keys.c.revoked, "enum", {"ACTIVE": False, "REVOKED": True}),
    "age": FilterField(
        api_keys.c.create_time_us,
        "enum",
        enum_conditions={"OLD": api_keys.c.create_time_us < T0 + 1_500_000},
    ),
    "revoked": FilterField(api_keys.c.revoked, "bool"),
    "create_time": FilterField(api_keys.c.create_time_us, "time"),
    "created_us": FilterField(api_keys.c.create_time_us, "int"),
}

ROWS = [
    ("k1", "acme", "search-bot", {"team": "search", "env": "prod"}, False, T0),
    ("k2", "acme", "ads_50%", {"team": "ads"}, True, T0 + 1_000_000),
    ("k3", "globex", "search-batch", {}, False, T0 + 2_000_000),
    ("k4", "globex", "report\\x", {"team": "search"}, False, T0 + 3_000_000),
]


async def _seed(database: Database) -> None:
    async with database.begin() as connection:
        await connection.execute(
            api_keys.insert(),
            [
                {
                    "api_key_id": key_id,
                    "tenant": tenant,
                    "name": name,
                    "owner": "",
                    "secret_hash": key_id * 16,
                    "secret_prefix": "homa_sk_x",
                    "scopes": [],
                    "allowed_models": [],
                    "rate_limits": {},
                    "budgets": {},
                    "labels": labels,
                    "revoked": revoked,
                    "revoke_reason": "",
                    "create_time_us": created,
                    "update_time_us": created,
                }
                for key_id, tenant, name, labels, revoked, created in ROWS
            ],
        )


async def _ids(database: Database, text: str) -> list[str]:
    condition = compile_filter(text, FIELDS, api_keys.c.labels)
    query = select(api_keys.c.api_key_id).order_by(api_keys.c.api_key_id)
    if condition is not None:
        query = query.where(condition)
    async with database.begin() as connection:
        return [row[0] for row in await connection.execute(query)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["k1", "k2", "k3", "k4"]),
        ('tenant = "acme"', ["k1", "k2"]),
        ("tenant = acme AND state = ACTIVE", ["k1"]),
        ("tenant=acme state=REVOKED", ["k2"]),
        ('name = "search*"', ["k1", "k3"]),
        ('name = "*bot"', ["k1"]),
        ('name = "*50%"', ["k2"]),  # % is literal, not a wildcard
        ('name = "ads_5*"', ["k2"]),
        ('name = "adsx5*"', []),  # _ is literal too
        ('name = "report\\\\x"', ["k4"]),
        ('name != "search-bot"', ["k2", "k3", "k4"]),
        ('labels.team = "search"', ["k1", "k4"]),
        ("labels.env:*", ["k1"]),
        ('NOT labels.team = "search"', ["k2"]),  # rows without the key are neither = nor != (SQL NULL)
        ('-tenant = "acme"', ["k3", "k4"]),
        ('tenant = "acme" OR labels.team = "search"', ["k1", "k2", "k4"]),
        ('(tenant = "acme" OR tenant = "globex") AND revoked = true', ["k2"]),
        ('create_time >= "2026-09-21T14:13:21Z"', ["k2", "k3", "k4"]),
        (f"created_us < {T0 + 2_000_000}", ["k1", "k2"]),
        ("age = OLD", ["k1", "k2"]),
        ("age != OLD AND tenant = globex", ["k3", "k4"]),
    ],
)
async def test_filters_select_the_expected_rows(database: Database, text: str, expected: list[str]) -> None:
    await _seed(database)
    assert await _ids(database, text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("owner = x", "unknown field 'owner'"),
        ("tenant =", "expected a value"),
        ("tenant acme", "expected an operator"),
        ("(tenant = acme", "unexpected end"),
        ("tenant = acme)", "unexpected ')'"),
        ("state = DELETED", "unknown value"),
        ("state > ACTIVE", "takes = or !="),
        ("revoked = maybe", "true or false"),
        ("created_us = 1.5", "not an integer"),
        ('create_time > "yesterday"', "RFC 3339"),
        ('create_time > "2026-01-01T00:00:00"', "time zone"),
        ("tenant = 'acme'", "unexpected character"),
        ("name = x\x00", "NUL"),
        ("x" * 3000, "longer than"),
        ("(" * 20 + "tenant = a" + ")" * 20, "nested deeper"),
        (" OR ".join(["tenant = a"] * 65), "more than 64"),
        ('labels.bad$key = "x"', "unexpected character"),
        ("tenant < acme", "takes =, != or :"),
    ],
)
def test_bad_filters_are_invalid_argument(text: str, fragment: str) -> None:
    with pytest.raises(GatewayError) as caught:
        compile_filter(text, FIELDS, api_keys.c.labels)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.field_violations[0].field == "filter"
    assert fragment in caught.value.message


def test_labels_refused_without_a_labels_column() -> None:
    with pytest.raises(GatewayError, match=r"unknown field 'labels\.team'"):
        compile_filter('labels.team = "a"', FIELDS)


async def test_sql_fragments_are_bound_not_spliced(database: Database) -> None:
    await _seed(database)
    assert await _ids(database, "name = \"x' OR '1'='1\"") == []
    assert await _ids(database, 'tenant = "acme\\" OR \\"1\\"=\\"1"') == []
