"""Model name -> (provider, provider-side model).

Accepted forms, tried in order:
0. an alias from the `routes` settings: its first deployment. Calls go through the router, which
   tries every deployment (routing/attempts.py); this answer serves token counting and context
   windows (CountTokens, conversations).
1. `provider/model`: the named provider instance, model passed through (the model part may itself
   contain slashes, e.g. `openrouter/meta-llama/llama-3`).
2. a bare model listed in a provider's `models` setting: the first such provider in settings order.
3. a bare model when exactly one provider other than mock and local is configured: that provider.
An empty model means the configured `default_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from homa_server.errors import Code, FieldViolation, GatewayError, Reason
from homa_server.providers.base import Provider
from homa_server.providers.registry import ProviderRegistry


@dataclass(frozen=True, slots=True)
class Target:
    """Where a call goes."""

    provider: Provider
    model: str


class ModelResolver:
    """Resolves model names against the registry. Built once; lookups are dictionary hits."""

    def __init__(
        self,
        registry: ProviderRegistry,
        default_model: str,
        aliases: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self._registry = registry
        self._aliases = dict(aliases or {})  # alias -> (provider instance, model)
        self._default = default_model
        self._by_model: dict[str, str] = {}
        for name in registry.names():
            for model in registry.settings_of(name).models:
                self._by_model.setdefault(model, name)
        real = [name for name, p in registry.items() if p.kind not in ("mock", "local")]
        self._sole = real[0] if len(real) == 1 else None
        self._cache: dict[str, Target] = {}

    def resolve(self, model: str) -> Target:
        """Resolve `model`.

        Raises:
            GatewayError: NOT_FOUND / MODEL_NOT_FOUND when nothing serves it.
        """
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        target = self._resolve(model or self._default)
        if len(self._cache) < 4096:
            self._cache[model] = target
        return target

    def _resolve(self, model: str) -> Target:
        alias = self._aliases.get(model)
        if alias is not None:
            return Target(self._registry.get(alias[0]), alias[1])
        prefix, sep, rest = model.partition("/")
        if sep and prefix in self._registry.names() and rest:
            return Target(self._registry.get(prefix), rest)
        owner = self._by_model.get(model) or self._sole
        if owner is not None:
            return Target(self._registry.get(owner), model)
        raise GatewayError(
            f"no configured provider serves model {model!r}; use provider/model "
            f"(providers: {', '.join(self._registry.names())})",
            Code.NOT_FOUND,
            Reason.MODEL_NOT_FOUND,
            metadata={"model": model},
            field_violations=[FieldViolation("model", "unknown model")],
        )
