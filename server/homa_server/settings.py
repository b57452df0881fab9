"""The one typed settings tree. Read here and nowhere else.

Precedence, lowest to highest: built-in defaults < YAML file (`--config` or `HOMA_CONFIG`) <
`HOMA_*` environment variables (nested with `__`, e.g. `HOMA_SERVER__PORT=6000`) < CLI flags.
Provider keys found in the usual vendor variables (`OPENAI_API_KEY`, ...) switch that provider on.
Everything is validated at start; `load_settings` raises `SettingsError` with one line per problem.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

_MIB = 1024 * 1024


class SettingsError(ValueError):
    """Invalid configuration; the message lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ClientAuth = Literal["none", "optional", "require"]


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


class TlsSettings(_Strict):
    """Server TLS: certificate chain and key (PEM), and how client certificates are treated.

    `client_auth`: `none` asks for no client certificate; `require` refuses the handshake without
    one issued by `client_ca_file`. `optional` (ask, verify when sent, admit without) is refused:
    grpcio's server credentials can only request a client certificate by requiring it.
    The files are read and checked again when the server starts (`homa_server.rpc.tls`).
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ClientAuth = "none"

    @field_validator("cert_file", "key_file", "client_ca_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value)

    @model_validator(mode="after")
    def _ca_for_client_auth(self) -> TlsSettings:
        if self.client_auth == "optional":
            raise ValueError(
                "client_auth optional is not supported (grpcio cannot request a client certificate"
                " without requiring it); use none or require"
            )
        if self.client_auth != "none" and self.client_ca_file is None:
            raise ValueError(f"client_ca_file is required when client_auth is {self.client_auth}")
        return self


class ServerSettings(_Strict):
    """The gRPC listener."""

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_message_bytes: int = Field(16 * _MIB, ge=64 * 1024, le=256 * _MIB)
    max_concurrent_streams: int = Field(1000, ge=1)
    keepalive_time_s: float = Field(30.0, gt=0)
    keepalive_timeout_s: float = Field(10.0, gt=0)
    min_client_ping_interval_s: float = Field(10.0, gt=0)
    grace_period_s: float = Field(10.0, ge=0)
    reflection: bool = True
    #: Serve TLS (and optionally verify client certificates); None keeps the plaintext listener.
    tls: TlsSettings | None = None


class ProviderSettings(_Strict):
    """One provider instance. `kind` selects the adapter (registered in providers/registry.py)."""

    kind: str
    enabled: bool = True
    base_url: str | None = None
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    models: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(200, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class LoggingSettings(_Strict):
    """Structured logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


AuthMode = Literal["none", "api_key", "jwt", "oauth2", "mtls"]
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


def _default_algorithms() -> list[JwtAlgorithm]:
    return ["RS256", "ES256"]


def _default_modes() -> list[AuthMode]:
    return ["none"]


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """Whether `host` names only the loopback interface (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _identity_url(value: str | None) -> str | None:
    """An identity-provider URL: https, or http only on a loopback host (local development, tests)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.username or parts.password or not parts.hostname:
        raise ValueError("must be an absolute URL without user information")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return value
    raise ValueError("must be an https URL (http only for a loopback host)")


class JwtAuthSettings(_Strict):
    """Self-contained JWTs signed with a shared secret or a static/JWKS public key."""

    issuer: str = ""
    audiences: list[str] = Field(default_factory=lambda: ["homa"], min_length=1)
    algorithms: list[JwtAlgorithm] = Field(default_factory=_default_algorithms, min_length=1)
    shared_secret: SecretStr | None = None
    public_keys: dict[str, str] = Field(default_factory=dict)
    jwks_url: str | None = None
    clock_skew_s: float = Field(30.0, ge=0, le=300)
    tenant_claim: str = "tenant"
    default_tenant: str | None = None
    max_token_bytes: int = Field(8192, ge=256, le=65536)

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _identity_url(value)


class OAuth2Settings(_Strict):
    """OAuth2 access tokens: JWTs checked against the issuer's JWKS, opaque ones introspected."""

    issuer: str | None = None
    jwks_url: str | None = None
    audiences: list[str] = Field(default_factory=lambda: ["homa"], min_length=1)
    algorithms: list[JwtAlgorithm] = Field(default_factory=_default_algorithms, min_length=1)
    clock_skew_s: float = Field(30.0, ge=0, le=300)
    tenant_claim: str = "tenant"
    default_tenant: str | None = None
    max_token_bytes: int = Field(8192, ge=256, le=65536)
    introspection_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    cache_ttl_s: float = Field(60.0, ge=0, le=3600)
    negative_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    timeout_s: float = Field(3.0, gt=0, le=60)

    @field_validator("issuer", "jwks_url", "introspection_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _identity_url(value)


class MtlsIdentity(_Strict):
    """What a client-certificate subject may do."""

    tenant: str = Field(min_length=1)
    scopes: list[str] = Field(default_factory=list)


class MtlsAuthSettings(_Strict):
    """Client-certificate identities: certificate subject (a SAN entry or the CN) -> tenant, scopes."""

    identities: dict[str, MtlsIdentity] = Field(default_factory=dict)


class ApiKeyAuthSettings(_Strict):
    """Homa API keys (`homa_sk_...`), issued by AdminService and stored hashed. See docs/security.md."""

    #: Seconds a verified (or unknown) key stays in the in-process cache: the longest a revocation
    #: made on another replica can go unnoticed. The replica that revokes forgets the key at once.
    cache_ttl_s: float = Field(2.0, ge=0, le=60)
    #: Entries kept in the in-process cache.
    cache_size: int = Field(10000, ge=0)
    #: Seconds between `last_use_time` updates of one key.
    last_use_interval_s: float = Field(60.0, ge=1)


class AuthSettings(_Strict):
    """Who may call which RPC. See docs/security.md."""

    mode: list[AuthMode] = Field(default_factory=_default_modes, min_length=1)
    allow_insecure_none_on: Literal["loopback"] = "loopback"
    jwt: JwtAuthSettings = Field(default_factory=JwtAuthSettings)
    oauth2: OAuth2Settings = Field(default_factory=OAuth2Settings)
    mtls: MtlsAuthSettings = Field(default_factory=MtlsAuthSettings)
    api_key: ApiKeyAuthSettings = Field(default_factory=ApiKeyAuthSettings)
    #: Required scope overrides: "Service/Method" or "Service" (short name) -> scope.
    scopes: dict[str, str] = Field(default_factory=dict)

    @field_validator("mode", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _complete(self) -> AuthSettings:
        if len(set(self.mode)) != len(self.mode):
            raise ValueError("mode lists a method twice")
        if "jwt" in self.mode:
            jwt = self.jwt
            if not jwt.issuer:
                raise ValueError("jwt.issuer is required when mode includes jwt")
            hmac = any(a.startswith("HS") for a in jwt.algorithms)
            asym = any(not a.startswith("HS") for a in jwt.algorithms)
            if hmac and jwt.shared_secret is None:
                raise ValueError("jwt.shared_secret is required for HS* algorithms")
            if asym and not (jwt.public_keys or jwt.jwks_url):
                raise ValueError("jwt.public_keys or jwt.jwks_url is required for RS*/ES* algorithms")
        if "oauth2" in self.mode:
            oauth = self.oauth2
            introspects = oauth.introspection_url is not None or oauth.client_id is not None
            if introspects and not (oauth.client_id and oauth.client_secret):
                raise ValueError("oauth2 introspection needs client_id and client_secret")
            if oauth.jwks_url is not None and not oauth.issuer:
                raise ValueError("oauth2.jwks_url needs oauth2.issuer (the required iss claim)")
            if not oauth.issuer and oauth.introspection_url is None:
                raise ValueError("oauth2 needs an issuer (OIDC discovery / JWKS) or an introspection_url")
        if "mtls" in self.mode and not self.mtls.identities:
            raise ValueError("mtls.identities is required when mode includes mtls")
        return self


class StorageSettings(_Strict):
    """The database: SQLite (embedded default) or PostgreSQL. See docs/operations.md."""

    #: SQLAlchemy URL: `sqlite+aiosqlite:///path/homa.db` or `postgresql+asyncpg://user@host/db`.
    #: Empty = `<data_dir>/homa.db` (SQLite).
    url: str = ""
    #: Directory for the SQLite file, the outbox segments and the generated development keyring.
    data_dir: Path = Path("var")
    #: Apply Alembic migrations at start-up (`homa migrate` does it explicitly).
    migrate_on_start: bool = True
    #: Connections kept by the PostgreSQL pool.
    pool_size: int = Field(10, ge=1, le=200)
    #: Seconds a statement may run before it is cancelled.
    statement_timeout_s: float = Field(30.0, gt=0)
    #: Outbox writer: records per database transaction.
    outbox_batch_size: int = Field(500, ge=1, le=10000)
    #: Outbox writer: seconds between flushes when records are waiting.
    outbox_flush_interval_s: float = Field(0.2, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    def database_url(self) -> str:
        """The effective URL (the SQLite default under `data_dir` when `url` is empty)."""
        return self.url or f"sqlite+aiosqlite:///{self.data_dir / 'homa.db'}"


class EncryptionKey(_Strict):
    """One AES-256-GCM key of the keyring."""

    #: Short identifier stored with every envelope (`2026-11`, `k1`).
    id: str = Field(min_length=1, max_length=64)
    #: 32 random bytes, base64 (`homa secrets gen-key` prints one).
    key: SecretStr


class EncryptionSettings(_Strict):
    """Encryption at rest of conversation contents and stored credentials. See docs/security.md."""

    #: Every key that may decrypt; the primary one encrypts. Empty = a development keyring is
    #: generated once in `<data_dir>/keyring.json` (mode 0600) with a warning.
    keys: list[EncryptionKey] = Field(default_factory=list)
    #: Id of the key that encrypts new data; default the last of `keys`.
    primary: str | None = None


class RetentionSettings(_Strict):
    """How long stored data is kept (days; unset = forever). Purged by a background task."""

    conversations_days: int | None = Field(None, ge=1)
    usage_days: int | None = Field(None, ge=1)
    audit_days: int | None = Field(None, ge=1)
    #: Seconds between purge runs.
    interval_s: float = Field(3600.0, ge=1)


class ConversationSettings(_Strict):
    """Server-side conversations."""

    #: Model used by the SUMMARIZE context policy; empty = the conversation's own model.
    summary_model: str = ""
    #: Output tokens reserved for the reply when fitting history into the context window.
    reserve_output_tokens: int = Field(1024, ge=1)
    #: Context window assumed for models missing from the capability table.
    default_context_window: int = Field(8192, ge=256)


class AuditSettings(_Strict):
    """The tamper-evident audit log."""

    #: Record every authenticated RPC (not only admin actions and failures).
    record_access: bool = True


class SemanticCacheSettings(_Strict):
    """Optional semantic response cache: same tenant and model, never with tools, off by default."""

    enabled: bool = False
    #: Cosine similarity at or above which a stored answer is served.
    threshold: float = Field(0.95, gt=0, le=1)
    #: Entries kept per (tenant, model) in this process; the oldest is dropped first.
    max_entries: int = Field(1000, ge=1, le=100_000)
    #: Embedding function factory as "package.module:callable" (see docs/routing.md); empty = none,
    #: and the semantic cache stays off even when `enabled`.
    embedder: str = ""


class CacheSettings(_Strict):
    """Exact-match response cache of chat completions. See docs/routing.md "Response cache"."""

    #: Master switch, on by default (only deterministic requests are cached unless the caller opts
    #: in); off = every request bypasses the cache, whatever its `options.cache` says (no
    #: `homa-cache` trailer).
    enabled: bool = True
    backend: Literal["memory", "redis", "memcached", "filesystem"] = "memory"
    #: Seconds an entry lives; also the max age when a request sets no `cache_max_age`.
    ttl_s: float = Field(3600.0, gt=0, le=30 * 86400)
    #: Prefix of every key in shared backends (Redis, Memcached).
    namespace: str = Field("homa", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: Seconds one backend operation may take; a slow or failing backend is a miss, never an error.
    timeout_s: float = Field(0.25, gt=0, le=10)
    #: Larger answers are not stored.
    max_entry_bytes: int = Field(4 * _MIB, ge=1024, le=64 * _MIB)
    #: Memory backend bounds (least recently written entries are evicted first).
    memory_max_entries: int = Field(10_000, ge=1)
    memory_max_bytes: int = Field(256 * _MIB, ge=_MIB)
    #: Redis backend: `redis://[:password@]host:port/db`.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Memcached backend: `host:port`.
    memcached: str = "127.0.0.1:11211"
    #: Filesystem backend directory; unset = `<storage.data_dir>/cache`.
    directory: Path | None = None
    semantic: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must start with redis:// or rediss://")
        return value


class RateLimitValues(_Strict):
    """Request and token rates of one subject (a model); unset = no limit."""

    #: Requests admitted per sliding minute, across all replicas sharing the backend.
    requests_per_minute: int | None = Field(None, ge=1)
    #: Tokens (prompt + output) per UTC clock minute, reserved before each call and settled after.
    tokens_per_minute: int | None = Field(None, ge=1)


class LimitValues(RateLimitValues):
    """Rates and cost budgets of one subject (a key or a tenant); unset = inherit / no limit."""

    #: Spend per UTC calendar day, micro-USD (0 = no spending allowed).
    daily_cost_micros: int | None = Field(None, ge=0)
    #: Spend per UTC calendar month, micro-USD.
    monthly_cost_micros: int | None = Field(None, ge=0)


class RedisLimitSettings(_Strict):
    """The Redis limiter backend (several replicas). See docs/routing.md "Rate limits and budgets"."""

    url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every key the limiter writes.
    key_prefix: str = Field("homa:limits:", pattern=r"^[A-Za-z0-9_.:{}-]{0,64}$")
    #: Seconds one limiter operation may take (connect included): the most a call ever waits on Redis.
    timeout_s: float = Field(0.1, gt=0, le=10)
    #: After a failure, Redis is treated as unavailable (no call waits on it) for this many seconds.
    recheck_after_s: float = Field(1.0, ge=0, le=60)
    max_connections: int = Field(64, ge=1, le=10_000)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must start with redis:// or rediss://")
        return value


class LimitSettings(_Strict):
    """Rate limits and cost budgets. See docs/routing.md "Rate limits and budgets"."""

    #: Master switch; off = nothing is counted or refused.
    enabled: bool = True
    #: `memory` counts in this process (one replica); `redis` shares the counts between replicas.
    backend: Literal["memory", "redis"] = "memory"
    redis: RedisLimitSettings = Field(default_factory=RedisLimitSettings)
    #: When Redis cannot be reached: `open` admits calls uncounted, `closed` refuses them (UNAVAILABLE).
    redis_failure: Literal["open", "closed"] = "open"
    #: Output tokens reserved for a request without `max_output_tokens`.
    default_max_output_tokens: int = Field(1024, ge=1)
    #: Defaults of every API key (a key's own `rate_limits` / `budgets` override them field by field).
    key: LimitValues = Field(default_factory=LimitValues)
    #: Defaults of every tenant.
    tenant: LimitValues = Field(default_factory=LimitValues)
    #: Per-tenant overrides (field by field over `tenant`).
    tenants: dict[str, LimitValues] = Field(default_factory=dict)
    #: Defaults of every model (`provider/model`), across all tenants.
    model: RateLimitValues = Field(default_factory=RateLimitValues)
    #: Per-model overrides (field by field over `model`), by `provider/model`.
    models: dict[str, RateLimitValues] = Field(default_factory=dict)


RouteStrategy = Literal["ordered", "weighted", "least_inflight", "lowest_latency"]
RouteCapability = Literal["images", "audio", "tools", "json_schema"]


class DeploymentSettings(_Strict):
    """One deployment of a route: a provider instance and the model sent to it."""

    #: Provider instance name (a key of `providers`).
    provider: str = Field(min_length=1)
    #: Provider-side model identifier.
    model: str = Field(min_length=1)
    #: Share of traffic under the `weighted` strategy.
    weight: float = Field(1.0, gt=0)
    #: Calls in flight on this deployment (this replica); more wait by priority. None = unlimited.
    max_concurrency: int | None = Field(None, ge=1)
    #: What the model accepts; None = from the model catalogue (catalog/models.yaml).
    capabilities: list[RouteCapability] | None = None


class RouteSettings(_Strict):
    """An alias (`fast`, `smart`) and the deployments that serve it. See docs/routing.md."""

    deployments: list[DeploymentSettings] = Field(min_length=1)
    #: How the deployments are ordered for each call.
    strategy: RouteStrategy = "ordered"
    #: Models or aliases tried, in order, after every deployment failed (before the first chunk).
    fallbacks: list[str] = Field(default_factory=list)
    #: Total seconds for a call through this route (the call's deadline applies when shorter).
    timeout_s: float | None = Field(None, gt=0)
    #: Seconds a streamed attempt may take to its first event before the next candidate is tried.
    first_token_timeout_s: float | None = Field(None, gt=0)
    #: Attempts on one deployment (1 = no retry); None = `resilience.retry.max_attempts`.
    max_attempts_per_deployment: int | None = Field(None, ge=1, le=10)


class RetrySettings(_Strict):
    """Retries of one deployment after a retryable failure (429, 5xx, connect error, timeout)."""

    #: Attempts on one deployment, first included (1 = no retry; fallback still applies).
    max_attempts: int = Field(1, ge=1, le=10)
    #: Backoff before retry n is uniform in [0, min(max_delay_s, base_delay_s * 2**(n-1))].
    base_delay_s: float = Field(0.1, gt=0, le=60)
    max_delay_s: float = Field(2.0, gt=0, le=300)
    #: A Retry-After longer than this is not waited for: the next candidate is tried instead.
    max_retry_after_s: float = Field(0.5, ge=0, le=300)
    #: Attempts per call across all candidates.
    max_total_attempts: int = Field(6, ge=1, le=50)


class BreakerSettings(_Strict):
    """Circuit breaker per deployment and replica."""

    enabled: bool = True
    #: Consecutive failures that open the circuit.
    consecutive_failures: int = Field(5, ge=1)
    #: Error rate (0..1) over `window_s` that opens the circuit once `min_calls` were seen.
    error_rate: float = Field(0.5, gt=0, le=1)
    window_s: float = Field(30.0, gt=0)
    min_calls: int = Field(20, ge=1)
    #: Seconds an open circuit refuses calls before half-open probes are let through.
    cooldown_s: float = Field(30.0, gt=0)
    #: Concurrent probe calls while half-open; one success closes the circuit, a failure reopens it.
    half_open_probes: int = Field(1, ge=1)


class AdmissionSettings(_Strict):
    """Priority admission when a deployment's concurrency limit is reached."""

    #: Concurrency limit of deployments that set none (direct `provider/model` calls too); None = unlimited.
    default_max_concurrency: int | None = Field(None, ge=1)
    #: Calls waiting for one deployment; a full queue sheds its lowest priority first.
    max_queue: int = Field(100, ge=0)
    #: Longest wait for a slot (the call's deadline applies when shorter).
    max_wait_s: float = Field(10.0, ge=0)
    #: Longest wait for a LOW priority call (shed first).
    low_priority_max_wait_s: float = Field(1.0, ge=0)


class ResilienceSettings(_Strict):
    """Retries, circuit breakers and priority admission. See docs/routing.md."""

    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)


def _default_providers() -> dict[str, ProviderSettings]:
    return {
        "mock": ProviderSettings(kind="mock"),
        "local": ProviderSettings(kind="local", models=["all-minilm-l6-v2"]),
    }


@dataclass(frozen=True, slots=True)
class _EnvProvider:
    """A provider switched on by vendor environment variables (the variables each vendor's SDK reads)."""

    kind: str
    key_vars: tuple[str, ...] = ()
    url_var: str | None = None
    url_suffix: str = ""
    needs_key: bool = True
    needs_url: bool = False
    needs_any: tuple[str, ...] = ()  # at least one of these must be set too (e.g. an AWS region)


_ENV_PROVIDERS: dict[str, _EnvProvider] = {
    "openai": _EnvProvider("openai", ("OPENAI_API_KEY",), url_var="OPENAI_BASE_URL"),
    "anthropic": _EnvProvider("anthropic", ("ANTHROPIC_API_KEY",), url_var="ANTHROPIC_BASE_URL"),
    "gemini": _EnvProvider("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
    "azure": _EnvProvider(
        "azure_openai",
        ("AZURE_OPENAI_API_KEY",),
        url_var="AZURE_OPENAI_ENDPOINT",
        url_suffix="/openai",
        needs_url=True,
    ),
    "bedrock": _EnvProvider(
        "bedrock",
        ("AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID"),
        needs_any=("AWS_REGION", "AWS_DEFAULT_REGION"),
    ),
    "cohere": _EnvProvider("cohere", ("COHERE_API_KEY", "CO_API_KEY")),
    "venice": _EnvProvider("venice", ("VENICE_API_KEY",)),
    "ollama": _EnvProvider(
        "ollama", ("OLLAMA_API_KEY",), url_var="OLLAMA_HOST", needs_key=False, needs_url=True
    ),
}


class Settings(BaseSettings):
    """The whole configuration of one Homa process."""

    model_config = SettingsConfigDict(
        env_prefix="HOMA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    default_model: str = "mock/echo"
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    conversations: ConversationSettings = Field(default_factory=ConversationSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    #: Model aliases -> deployments (docs/routing.md).
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @model_validator(mode="after")
    def _safe_binding(self) -> Settings:
        check_binding(self)
        check_mtls(self)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("HOMA_CONFIG_FILE_RESOLVED")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def check_binding(settings: Settings) -> None:
    """Refuse `auth.mode: none` on an address other than loopback.

    Raises:
        SettingsError: unauthenticated mode would be reachable from other hosts.
    """
    if "none" in settings.auth.mode and not is_loopback_host(settings.server.host):
        raise SettingsError(
            f"auth.mode none is only allowed on a loopback address, not server.host={settings.server.host!r};"
            " configure auth.mode jwt or oauth2 (see docs/security.md)"
        )


def check_mtls(settings: Settings) -> None:
    """Mode `mtls` needs a TLS listener that asks for client certificates.

    Raises:
        SettingsError: `auth.mode` includes mtls without `server.tls.client_auth: require`.
    """
    tls = settings.server.tls
    if "mtls" in settings.auth.mode and (tls is None or tls.client_auth != "require"):
        raise SettingsError(
            "auth.mode mtls needs server.tls with client_auth require and a client_ca_file"
            " (see docs/security.md)"
        )


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _env_keyed_providers(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Providers switched on by vendor variables. AWS access keys switch Bedrock on without an
    api_key (the adapter signs with botocore's credential chain); a Bedrock bearer key is its api_key."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in _ENV_PROVIDERS.items():
        key_var = next((v for v in spec.key_vars if environ.get(v)), None)
        url = environ.get(spec.url_var, "") if spec.url_var else ""
        if (spec.needs_key and key_var is None) or (spec.needs_url and not url):
            continue
        if spec.needs_any and not any(environ.get(v) for v in spec.needs_any):
            continue
        entry: dict[str, Any] = {"kind": spec.kind}
        if key_var is not None and key_var != "AWS_ACCESS_KEY_ID":
            entry["api_key"] = environ[key_var]
        if url:
            entry["base_url"] = (url if "://" in url else f"http://{url}").rstrip("/") + spec.url_suffix
        found[name] = entry
    return found


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build and validate the settings.

    Args:
        config_file: YAML file; defaults to `$HOMA_CONFIG` when set.
        overrides: CLI values by dotted path (`{"server.port": 6000}`); highest precedence.
        environ: environment to read vendor keys from (defaults to `os.environ`).

    Raises:
        SettingsError: the file is missing or the merged values are invalid.
    """
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("HOMA_CONFIG")
    if path is not None and not Path(path).is_file():
        raise SettingsError(f"config file not found: {path}")
    init: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(init, dotted, value)
    previous = os.environ.get("HOMA_CONFIG_FILE_RESOLVED")
    try:
        if path is not None:
            os.environ["HOMA_CONFIG_FILE_RESOLVED"] = str(path)
        else:
            os.environ.pop("HOMA_CONFIG_FILE_RESOLVED", None)
        settings = Settings(**init)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
    finally:
        if previous is None:
            os.environ.pop("HOMA_CONFIG_FILE_RESOLVED", None)
        else:
            os.environ["HOMA_CONFIG_FILE_RESOLVED"] = previous
    extra = {
        name: ProviderSettings(**spec)
        for name, spec in _env_keyed_providers(env).items()
        if name not in settings.providers
    }
    if extra:
        settings = settings.model_copy(update={"providers": {**settings.providers, **extra}})
    return settings
