"""The model name cache entries are keyed and invalidated by.

Contract: a call's cache model is its route's identity: the alias for a configured route (whatever
deployment ends up serving it), else the resolved `provider/model` of the model named directly.
`InvalidateCache` by model normalises the caller's name the same way, so invalidating "smart"
removes the entries of requests that used alias "smart", and "openai/gpt-4o" (or a bare model
name resolving to it) those of requests that named that model directly.
"""

from __future__ import annotations

from collections.abc import Container

from homa_server.errors import GatewayError
from homa_server.routing.resolver import ModelResolver
from homa_server.routing.routes import Route


def route_model(route: Route) -> str:
    """The cache model of a planned call's route."""
    if route.filtered or not route.deployments:
        return route.name  # a configured alias
    return route.deployments[0].key  # ad-hoc route of a model named directly


def cache_model(aliases: Container[str], resolver: ModelResolver, name: str) -> str:
    """The cache model for a name given to InvalidateCache (`name` itself when nothing serves it)."""
    if name in aliases:
        return name
    try:
        target = resolver.resolve(name)
    except GatewayError:
        return name
    return f"{target.provider.name}/{target.model}"
