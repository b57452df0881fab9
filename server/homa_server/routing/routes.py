"""Routes: model aliases -> deployments, and capability filtering.

Contract:
    * A route (`routes.<alias>` in settings) lists deployments — a provider instance and the model
      sent to it — with a strategy (`routing/balancer.py`), route-level fallbacks and time budgets.
      An alias takes precedence over every other interpretation of a model name.
    * A model that is not an alias resolves through `ModelResolver` to a single ad-hoc deployment
      (the route of one, strategy `ordered`, no budgets, no capability filter: the caller named it).
    * `needs_of(request)` lists what a request requires: `images`, `audio` (media parts by MIME
      type), `tools` (tool definitions) and `json_schema` (a JSON-schema response format).
      `supports(deployment, needs)`: a route deployment lacking one of them is skipped. Its
      capabilities come from its `capabilities` setting, else from the model catalogue (entry or the
      adapter kind's defaults).
    * Settings naming an unknown or disabled provider fail at start-up (ValueError), not per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2
from homa_server.catalog.table import model_table
from homa_server.providers.base import Provider
from homa_server.providers.registry import ProviderRegistry
from homa_server.routing.resolver import ModelResolver
from homa_server.settings import RouteSettings, RouteStrategy

IMAGES, AUDIO, TOOLS, JSON_SCHEMA = "images", "audio", "tools", "json_schema"


@dataclass(frozen=True, slots=True, eq=False)
class Deployment:
    """One place a call can go: a provider instance and a provider-side model.

    `key` (`provider/model`) names the deployment's breaker, admission queue and statistics.
    """

    provider: Provider
    model: str
    weight: float = 1.0
    max_concurrency: int | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    #: `provider/model` (computed once: it keys every per-deployment lookup of every call).
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.provider.name}/{self.model}")


@dataclass(frozen=True, slots=True)
class Route:
    """An alias (or a single resolved model) and how to serve it."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: RouteStrategy = "ordered"
    fallbacks: tuple[str, ...] = ()
    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    max_attempts_per_deployment: int | None = None
    #: False for ad-hoc routes: the caller named the deployment, so no capability filter applies.
    filtered: bool = True


def catalog_capabilities(kind: str, model: str) -> frozenset[str]:
    """What the model catalogue says `model` on an adapter of `kind` accepts."""
    info = model_table().describe("", kind, model)
    found = set()
    if admin_pb2.MODALITY_IMAGE in info.input_modalities or info.capabilities.vision:
        found.add(IMAGES)
    if admin_pb2.MODALITY_AUDIO in info.input_modalities:
        found.add(AUDIO)
    if info.capabilities.tools:
        found.add(TOOLS)
    if info.capabilities.json_schema:
        found.add(JSON_SCHEMA)
    return frozenset(found)


def _media_need(mime: str) -> str | None:
    if mime.startswith("image/"):
        return IMAGES
    if mime.startswith("audio/"):
        return AUDIO
    return None


def needs_of(request: chat_pb2.CompleteRequest) -> frozenset[str]:
    """Capabilities `request` requires (see the module docstring)."""
    needs: set[str] = set()
    if request.tools:
        needs.add(TOOLS)
    if request.response_format.type == content_pb2.ResponseFormat.TYPE_JSON_SCHEMA:
        needs.add(JSON_SCHEMA)
    for message in request.messages:
        for part in message.parts:
            kind = part.WhichOneof("kind")
            mime = ""
            if kind == "inline_data":
                mime = part.inline_data.mime_type
            elif kind == "file_uri":
                mime = part.file_uri.mime_type
            need = _media_need(mime.lower())
            if need is not None:
                needs.add(need)
    return frozenset(needs)


def supports(deployment: Deployment, needs: frozenset[str]) -> bool:
    """Whether `deployment` offers everything in `needs`."""
    return needs <= deployment.capabilities


class RouteTable:
    """Aliases from settings plus ad-hoc single-deployment routes for other model names.

    Args:
        routes: `routes` settings by alias.
        registry: the enabled provider instances (None only without routes).
        resolver: resolves names that are not aliases.
        default_max_concurrency: limit of deployments that set none.
        default_model: what an empty model means (may itself be an alias).
    """

    def __init__(
        self,
        routes: Mapping[str, RouteSettings],
        registry: ProviderRegistry | None,
        resolver: ModelResolver,
        default_max_concurrency: int | None = None,
        default_model: str = "",
    ) -> None:
        self._resolver = resolver
        self._default_model = default_model
        self._default_limit = default_max_concurrency
        self._aliases: dict[str, Route] = {}
        self._adhoc: dict[str, Route] = {}
        for alias, spec in routes.items():
            deployments = []
            for i, d in enumerate(spec.deployments):
                if registry is None or d.provider not in registry.names():
                    raise ValueError(
                        f"routes.{alias}.deployments[{i}].provider: {d.provider!r} is not an enabled provider"
                    )
                provider = registry.get(d.provider)
                caps = d.capabilities
                deployments.append(
                    Deployment(
                        provider,
                        d.model,
                        d.weight,
                        d.max_concurrency if d.max_concurrency is not None else default_max_concurrency,
                        frozenset(caps) if caps is not None else catalog_capabilities(provider.kind, d.model),
                    )
                )
            self._aliases[alias] = Route(
                alias,
                tuple(deployments),
                spec.strategy,
                tuple(spec.fallbacks),
                spec.timeout_s,
                spec.first_token_timeout_s,
                spec.max_attempts_per_deployment,
            )

    def aliases(self) -> Sequence[str]:
        """Configured aliases, in settings order."""
        return list(self._aliases)

    def route(self, model: str) -> Route:
        """The route serving `model`: its alias, else an ad-hoc route of the resolved deployment.

        Raises:
            GatewayError: NOT_FOUND / MODEL_NOT_FOUND (from the resolver).
        """
        alias = self._aliases.get(model or self._default_model)
        if alias is not None:
            return alias
        cached = self._adhoc.get(model)
        if cached is not None:
            return cached
        target = self._resolver.resolve(model)
        deployment = Deployment(
            target.provider,
            target.model,
            max_concurrency=self._default_limit,
            capabilities=catalog_capabilities(target.provider.kind, target.model),
        )
        route = Route(model, (deployment,), filtered=False)
        if len(self._adhoc) < 4096:
            self._adhoc[model] = route
        return route
