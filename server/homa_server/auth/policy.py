"""Which scope each RPC requires, and which RPCs are open.

Contract:
    * Every method of the six Homa services has exactly one required scope (`DEFAULT_SCOPES`),
      which settings may override per method (`"ChatService/Complete"`) or per service
      (`"ChatService"`); a method override wins over a service override.
    * `grpc.health.v1` and server reflection are open: no credential is read at all.
    * Any other method path (not a Homa method, not open) requires `UNLISTED_SCOPE`, a scope no
      token can carry in practice, so an RPC added without a table entry fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

#: Package of each Homa service, by short name.
SERVICE_PACKAGES: Final[Mapping[str, str]] = {
    "ChatService": "homa.chat.v1",
    "ImageService": "homa.image.v1",
    "AudioService": "homa.audio.v1",
    "EmbeddingService": "homa.embedding.v1",
    "AdminService": "homa.admin.v1",
    "BatchService": "homa.batch.v1",
}

#: The default required scope of every Homa RPC: service -> method -> scope.
DEFAULT_SCOPES: Final[Mapping[str, Mapping[str, str]]] = {
    "ChatService": {
        "Complete": "chat:write",
        "StreamComplete": "chat:write",
        "Converse": "chat:write",
        "CountTokens": "chat:write",
        "CreateConversation": "chat:write",
        "DeleteConversation": "chat:write",
        "GetConversation": "chat:read",
        "ListConversations": "chat:read",
    },
    "ImageService": {
        "Generate": "images:write",
        "StreamGenerate": "images:write",
        "Edit": "images:write",
        "CreateVariation": "images:write",
        "Analyze": "images:write",
        "Convert": "images:write",
    },
    "AudioService": {
        "Transcribe": "audio:write",
        "Translate": "audio:write",
        "StreamTranscribe": "audio:write",
        "Synthesize": "audio:write",
        "ListVoices": "audio:write",
    },
    "EmbeddingService": {
        "Embed": "embeddings:write",
        "CreateCollection": "embeddings:write",
        "UpsertDocuments": "embeddings:write",
        "DeleteCollection": "embeddings:write",
        "DeleteDocuments": "embeddings:write",
        "GetCollection": "embeddings:read",
        "ListCollections": "embeddings:read",
        "QueryCollection": "embeddings:read",
    },
    "AdminService": {
        "ListModels": "admin:read",
        "GetModel": "admin:read",
        "ListProviders": "admin:read",
        "ListApiKeys": "admin:read",
        "GetApiKey": "admin:read",
        "GetUsage": "admin:read",
        "ExportUsage": "admin:read",
        "ListAuditEvents": "admin:read",
        "VerifyAuditLog": "admin:read",
        "GetComplianceReport": "admin:read",
        "ListWebhooks": "admin:read",
        "StreamEvents": "admin:read",
        "GetServerInfo": "admin:read",
        "CreateApiKey": "admin:write",
        "UpdateApiKey": "admin:write",
        "RevokeApiKey": "admin:write",
        "CreateWebhook": "admin:write",
        "DeleteWebhook": "admin:write",
        "TestWebhook": "admin:write",
        "InvalidateCache": "admin:write",
    },
    "BatchService": {
        "CreateBatch": "batch:write",
        "CancelBatch": "batch:write",
        "GetBatch": "batch:read",
        "ListBatches": "batch:read",
        "WatchBatch": "batch:read",
        "GetBatchResults": "batch:read",
    },
}

#: Method-path prefixes that need no credential (health checks, grpcurl list/describe).
OPEN_PREFIXES: Final = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

#: Required by method paths missing from the table: fail closed.
UNLISTED_SCOPE: Final = "homa:unlisted-method"

_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 scope-token


class ScopePolicy:
    """Required scope by gRPC method path (`/homa.chat.v1.ChatService/Complete`)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        """Apply `overrides` ("Service" or "Service/Method" -> scope) to the default table.

        Raises:
            ValueError: an override names an unknown service or method, or is not a scope token.
        """
        table = {service: dict(methods) for service, methods in DEFAULT_SCOPES.items()}
        by_method: dict[tuple[str, str], str] = {}
        for key, scope in (overrides or {}).items():
            if not _SCOPE.fullmatch(scope):
                raise ValueError(f"auth.scopes[{key!r}]: not a valid scope")
            service, _, method = key.partition("/")
            if service not in table or (method and method not in table[service]):
                raise ValueError(f"auth.scopes: unknown service or method {key!r}")
            if method:
                by_method[(service, method)] = scope
            else:
                table[service] = dict.fromkeys(table[service], scope)
        for (service, method), scope in by_method.items():
            table[service][method] = scope
        self._paths: dict[str, str] = {
            f"/{SERVICE_PACKAGES[service]}.{service}/{method}": scope
            for service, methods in table.items()
            for method, scope in methods.items()
        }
        self.all_scopes: frozenset[str] = frozenset(self._paths.values())

    @staticmethod
    def is_open(path: str) -> bool:
        """Whether `path` is reachable without a credential."""
        return path.startswith(OPEN_PREFIXES)

    def required_scope(self, path: str) -> str:
        """The scope `path` requires (`UNLISTED_SCOPE` for a method missing from the table)."""
        return self._paths.get(path, UNLISTED_SCOPE)
