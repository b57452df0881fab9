"""Provider construction: option validation, required settings, protocol conformance."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from homa_server.providers.base import ChatProvider, ModelListingProvider, TokenCountingProvider
from homa_server.providers.cohere import DEFAULT_BASE_URL, CohereProvider
from homa_server.providers.cohere.options import CohereOptions, parse_options
from homa_server.settings import ProviderSettings
from tests.providers.fakes.cohere_upstream import cohere_settings


def test_defaults():
    options = parse_options({})
    assert options == CohereOptions()
    assert options.models_page_size == 1000
    assert options.body_defaults() == {}


def test_every_option():
    options = parse_options(
        {
            "client_name": "billing-service",
            "safety_mode": "STRICT",
            "citation_mode": "ACCURATE",
            "priority": 10,
            "models_page_size": 50,
        }
    )
    assert options.body_defaults() == {
        "safety_mode": "STRICT",
        "citation_options": {"mode": "ACCURATE"},
        "priority": 10,
    }


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"safety_mode": "LOOSE"}, "options.safety_mode"),
        ({"citation_mode": "on"}, "options.citation_mode"),
        ({"priority": 1000}, "options.priority"),
        ({"models_page_size": 0}, "options.models_page_size"),
        ({"client_name": "bad\r\nheader"}, "options.client_name"),
        ({"client_name": ""}, "options.client_name"),
        ({"safty_mode": "STRICT"}, "options.safty_mode"),
    ],
    ids=["safety", "citation", "priority", "page-size", "header-injection", "empty-name", "unknown-key"],
)
def test_bad_options_name_the_option_path(raw, path):
    with pytest.raises(ValueError, match=path.replace(".", r"\.")):
        parse_options(raw)


def test_provider_rejects_bad_options_at_construction():
    with pytest.raises(ValueError, match=r"options\.priority"):
        CohereProvider("cohere", cohere_settings("http://127.0.0.1:1", options={"priority": -1}))


def test_api_key_is_required():
    settings = ProviderSettings(kind="cohere")
    with pytest.raises(ValueError, match="api_key"):
        CohereProvider("cohere", settings)


@pytest.mark.parametrize("field", ["organization", "project"])
def test_openai_only_settings_are_rejected(field):
    settings = ProviderSettings.model_validate({"kind": "cohere", "api_key": SecretStr("k"), field: "x"})
    with pytest.raises(ValueError, match=field):
        CohereProvider("cohere", settings)


async def test_capabilities_and_identity():
    provider = CohereProvider("co", ProviderSettings.model_validate({"kind": "cohere", "api_key": "k"}))
    try:
        assert (provider.name, provider.kind) == ("co", "cohere")
        assert isinstance(provider, ChatProvider)
        assert isinstance(provider, ModelListingProvider)
        # Cohere's /v1/tokenize counts plain text, not a chat request: the gateway estimates locally.
        assert not isinstance(provider, TokenCountingProvider)
        assert str(provider._chat_url) == f"{DEFAULT_BASE_URL}/v2/chat"
        assert str(provider._models_url) == f"{DEFAULT_BASE_URL}/v1/models"
    finally:
        await provider.aclose()
