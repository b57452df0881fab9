"""Construction and settings of AzureOpenAIProvider: options validation, capabilities, model
listing without HTTP, headers."""

from __future__ import annotations

import pytest

from homa_server.providers.azure_openai import AzureOpenAIProvider
from homa_server.providers.azure_openai.api_versions import PREVIEW_2025_04_01, STABLE_2024_10_21, surface_for
from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.settings import ProviderSettings
from tests.providers.conftest import call_ctx, chat_request
from tests.providers.fakes import azure_upstream as fake
from tests.providers.fakes.azure_upstream import AZURE_KEY, azure_settings

azure_upstream = fake.azure_upstream
azure_fake = fake.azure_fake
azure_provider = fake.azure_provider

BASE = "https://contoso.openai.azure.com/openai"


def settings(**values: object) -> ProviderSettings:
    return ProviderSettings.model_validate(
        {"kind": "azure_openai", "base_url": BASE, "api_key": AZURE_KEY, **values}
    )


async def test_capabilities(azure_provider):
    assert isinstance(azure_provider, ChatProvider)
    assert isinstance(azure_provider, ModelListingProvider)
    # Azure has no token-counting endpoint: the gateway falls back to its local estimate.
    assert not isinstance(azure_provider, TokenCountingProvider)
    assert (azure_provider.name, azure_provider.kind) == ("azure", "azure_openai")


async def test_list_models_returns_configured_deployments_without_http(azure_fake):
    provider = AzureOpenAIProvider(
        "azure",
        azure_settings(azure_fake.base_url, deployments={"gpt-4o": "prod-gpt4o", "o3-mini": "o3"}).model_copy(
            update={"models": ["gpt-4o", "gpt-4o-mini"]}
        ),
    )
    try:
        assert await provider.list_models() == ["gpt-4o", "o3-mini", "gpt-4o-mini"]
    finally:
        await provider.aclose()
    assert azure_fake.requests == []


async def test_list_models_is_empty_without_configuration():
    provider = AzureOpenAIProvider("azure", settings())
    try:
        assert await provider.list_models() == []
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"api_version": "latest"}, "options.api_version: 'latest' is not an Azure OpenAI api-version"),
        ({"api_version": "2024-06-01"}, "options.api_version: api-versions before 2024-10-21"),
        (
            {"api_version": "2024-08-01-preview"},
            "options.api_version: preview api-versions before 2025-04-01",
        ),
        ({"auth": "oauth"}, "options.auth:"),
        ({"deployments": {"gpt-4o": "my deployment"}}, "options.deployments: gpt-4o: deployment names"),
        ({"deployments": {"gpt-4o": ""}}, "options.deployments: gpt-4o: deployment names"),
        ({"max_tokens_field": "tokens"}, "options.max_tokens_field:"),
        ({"api-version": "2024-10-21"}, "options.api-version: Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_reported_with_their_path(options, expected):
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        AzureOpenAIProvider("azure", settings(options=options))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"base_url": None}, "base_url: required"),
        ({"base_url": "https://contoso.openai.azure.com"}, "base_url: .* has no path"),
        ({"api_key": None}, "api_key: required"),
        ({"api_key": ""}, "api_key: required"),
        ({"organization": "org-1"}, "organization: not used by Azure OpenAI"),
    ],
)
def test_invalid_settings(values, expected):
    with pytest.raises(ValueError, match=expected):
        AzureOpenAIProvider("azure", settings(**values))


@pytest.mark.parametrize(
    ("version", "surface"),
    [
        ("2024-10-21", STABLE_2024_10_21),
        ("2025-06-01", STABLE_2024_10_21),
        ("2025-04-01-preview", PREVIEW_2025_04_01),
        ("2025-05-01-preview", PREVIEW_2025_04_01),
    ],
)
def test_api_versions_map_to_the_checked_spec(version, surface):
    assert surface_for(version) is surface
    AzureOpenAIProvider("azure", settings(options={"api_version": version}))  # accepted


async def test_settings_headers_are_sent(azure_fake):
    provider = AzureOpenAIProvider(
        "azure",
        azure_settings(azure_fake.base_url).model_copy(update={"headers": {"x-ms-useragent": "homa-tests"}}),
    )
    try:
        await provider.complete_chat(chat_request(), call_ctx("gpt-4o"))
    finally:
        await provider.aclose()
    assert azure_fake.last.headers["x-ms-useragent"] == "homa-tests"
    assert azure_fake.last.headers["user-agent"] == "homa-gateway"
