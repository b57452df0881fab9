"""Provider instances built from settings.

Adapter kinds are registered explicitly in `BUILTIN_KINDS` (kind -> factory); a settings entry's
`kind` selects its factory. There is no branching on provider names anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.anthropic import AnthropicProvider
from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.base import Provider
from homa_server.providers.bedrock import BedrockProvider
from homa_server.providers.cohere import CohereProvider
from homa_server.providers.gemini import GeminiProvider
from homa_server.providers.local import LocalProvider
from homa_server.providers.mock import MockProvider
from homa_server.providers.ollama import OllamaProvider
from homa_server.providers.openai import OpenAIProvider
from homa_server.providers.venice import VeniceProvider
from homa_server.settings import ProviderSettings, Settings

ProviderFactory = Callable[[str, ProviderSettings], Provider]

BUILTIN_KINDS: Mapping[str, ProviderFactory] = {
    "mock": MockProvider,
    "openai": OpenAIProvider,
    "openai_compatible": OpenAIProvider,
    "azure_openai": AzureOpenAIProvider,
    "ollama": OllamaProvider,
    "anthropic": AnthropicProvider,
    "venice": VeniceProvider,
    "bedrock": BedrockProvider,
    "gemini": GeminiProvider,
    "cohere": CohereProvider,
    "local": LocalProvider,
}


class ProviderRegistry:
    """The enabled provider instances of one process, by instance name."""

    def __init__(self, providers: Mapping[str, Provider], settings: Mapping[str, ProviderSettings]) -> None:
        self._providers = dict(providers)
        self._settings = dict(settings)

    @classmethod
    def from_settings(
        cls, settings: Settings, kinds: Mapping[str, ProviderFactory] = BUILTIN_KINDS
    ) -> ProviderRegistry:
        """Instantiate every enabled provider.

        Raises:
            ValueError: a provider names an unknown kind (reported at start-up, not per request).
        """
        built: dict[str, Provider] = {}
        for name, spec in settings.providers.items():
            if not spec.enabled:
                continue
            factory = kinds.get(spec.kind)
            if factory is None:
                raise ValueError(
                    f"providers.{name}.kind: unknown kind {spec.kind!r}; known: {', '.join(sorted(kinds))}"
                )
            built[name] = factory(name, spec)
        enabled = {name: s for name, s in settings.providers.items() if name in built}
        return cls(built, enabled)

    def names(self) -> list[str]:
        """Instance names, in settings order."""
        return list(self._providers)

    def get(self, name: str) -> Provider:
        """The provider called `name`.

        Raises:
            GatewayError: NOT_FOUND / PROVIDER_NOT_FOUND.
        """
        try:
            return self._providers[name]
        except KeyError:
            raise GatewayError(
                f"no provider named {name!r} is configured",
                Code.NOT_FOUND,
                Reason.PROVIDER_NOT_FOUND,
                metadata={"provider": name},
            ) from None

    def settings_of(self, name: str) -> ProviderSettings:
        """Settings of an enabled provider."""
        return self._settings[name]

    def items(self) -> list[tuple[str, Provider]]:
        """(name, provider) pairs in settings order."""
        return list(self._providers.items())

    async def aclose(self) -> None:
        """Close every provider's connection pool."""
        await asyncio.gather(*(p.aclose() for p in self._providers.values()), return_exceptions=True)
