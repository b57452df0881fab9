"""The one schema for SQLite and PostgreSQL (Alembic migrations are written from it).

Conventions: times are UTC epoch microseconds in BIGINT `*_us` columns (same arithmetic and ordering
on both engines, no time-zone surprises); JSON columns hold lists and small maps; identifiers are
prefixed strings (`key_...`, `conv_...`); every tenant-owned row carries `tenant` and every
repository query filters on it. Encrypted columns hold keyring envelopes (security/crypto.py).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("api_key_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(256), nullable=False, default=""),
    Column("owner", String(256), nullable=False, default=""),
    # SHA-256 (hex) of the whole secret; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("secret_prefix", String(32), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("allowed_models", JSON, nullable=False),
    Column("rate_limits", JSON, nullable=False),
    Column("budgets", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("expire_time_us", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoke_reason", Text, nullable=False, default=""),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Column("revoke_time_us", BigInteger, nullable=True),
    Column("last_use_time_us", BigInteger, nullable=True),
    Index(None, "tenant", "create_time_us"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("title", String(512), nullable=False, default=""),
    Column("model", String(256), nullable=False, default=""),
    Column("labels", JSON, nullable=False),
    Column("context_policy", Integer, nullable=False, default=0),
    Column("message_count", Integer, nullable=False, default=0),
    # Summary of turns folded away by the SUMMARIZE policy (encrypted Message bytes), if any.
    Column("summary", LargeBinary, nullable=True),
    Column("summary_upto", Integer, nullable=False, default=0),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Index(None, "tenant", "create_time_us"),
)

conversation_messages = Table(
    "conversation_messages",
    metadata,
    Column(
        "conversation_id",
        String(64),
        ForeignKey("conversations.conversation_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("idx", Integer, primary_key=True),
    Column("tenant", String(128), nullable=False),
    # Keyring envelope of the serialized homa.type.v1.Message.
    Column("message", LargeBinary, nullable=False),
    Column("complete", Boolean, nullable=False, default=True),
    Column("create_time_us", BigInteger, nullable=False),
    Index(None, "tenant", "create_time_us"),
)

usage_records = Table(
    "usage_records",
    metadata,
    # Unique per admitted call: the outbox may deliver a record twice, the insert ignores the copy.
    Column("record_id", String(64), primary_key=True),
    Column("time_us", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=False, default=""),
    Column("method", String(128), nullable=False),
    Column("api_key_id", String(64), nullable=False, default=""),
    Column("tenant", String(128), nullable=False),
    Column("principal", String(256), nullable=False, default=""),
    Column("auth_method", String(16), nullable=False, default=""),
    Column("model", String(256), nullable=False, default=""),
    Column("provider", String(128), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("images", Integer, nullable=False, default=0),
    Column("audio_seconds", Float, nullable=False, default=0.0),
    Column("cost_micros", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("cache_hit", Boolean, nullable=False, default=False),
    # completed | failed | cancelled | interrupted
    Column("status", String(16), nullable=False),
    Column("error_reason", String(64), nullable=False, default=""),
    Index(None, "tenant", "time_us"),
    Index(None, "time_us"),
)

audit_events = Table(
    "audit_events",
    metadata,
    # Position in the chain: 1, 2, 3... with no gaps (assigned by the writer under a lock).
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("time_us", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("tenant", String(128), nullable=False, default=""),
    Column("auth_method", String(16), nullable=False, default=""),
    Column("action", String(256), nullable=False),
    Column("resource", String(512), nullable=False, default=""),
    Column("outcome", Integer, nullable=False),
    Column("reason", String(64), nullable=False, default=""),
    Column("request_id", String(128), nullable=False, default=""),
    Column("client_address", String(128), nullable=False, default=""),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "time_us"),
    Index(None, "tenant", "time_us"),
)

# Semantic search (store/vectors.py). A collection's name is unique per tenant; documents hold their
# vector as packed little-endian float32 bytes (searched exactly with numpy on both engines).
embedding_collections = Table(
    "embedding_collections",
    metadata,
    Column("collection_id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(63), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("embedding_model", String(256), nullable=False),  # "provider/model" as resolved at creation
    Column("dimension", Integer, nullable=False),
    # The `dimensions` sent to the provider: NULL when the collection uses the model's native size.
    Column("dimensions_param", Integer, nullable=True),
    Column("distance_metric", Integer, nullable=False),  # homa.embedding.v1.DistanceMetric
    Column("labels", JSON, nullable=False),
    Column("document_count", BigInteger, nullable=False, default=0),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Index(None, "tenant", "name", unique=True),
)

embedding_documents = Table(
    "embedding_documents",
    metadata,
    Column(
        "collection_id",
        String(64),
        ForeignKey("embedding_collections.collection_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("document_id", String(256), primary_key=True),
    Column("text", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)
