"""The capability and price table: schema, matching and micro-USD conversion."""

from __future__ import annotations

from homa.admin.v1 import admin_service_pb2 as admin_pb2
from homa_server.catalog.table import model_table


def test_table_loads_and_every_kind_has_defaults() -> None:
    table = model_table()
    assert table.as_of
    for kind in (
        "openai",
        "azure_openai",
        "anthropic",
        "gemini",
        "bedrock",
        "cohere",
        "ollama",
        "venice",
        "mock",
    ):
        assert table.describe("p", kind, "some-unlisted-model").capabilities.streaming


def test_dated_snapshot_matches_longest_prefix() -> None:
    table = model_table()
    assert table.entry("openai", "gpt-4o-2024-08-06").id == "gpt-4o"  # type: ignore[union-attr]
    assert table.entry("openai", "gpt-4o-mini-2024-07-18").id == "gpt-4o-mini"  # type: ignore[union-attr]
    assert table.entry("openai", "gpt-4omega") is None  # a prefix only matches up to a dash
    assert table.entry("anthropic", "gpt-4o") is None


def test_prices_become_exact_micros() -> None:
    model = model_table().describe("openai", "openai", "gpt-4o-mini")
    assert model.pricing.input_micros_per_million_tokens == 150_000
    assert model.pricing.cached_input_micros_per_million_tokens == 75_000
    assert model.pricing.output_micros_per_million_tokens == 600_000
    assert not model.pricing.HasField("cache_write_micros_per_million_tokens")
    cohere = model_table().describe("cohere", "cohere", "command-r7b-12-2024")
    assert cohere.pricing.input_micros_per_million_tokens == 37_500


def test_bedrock_inference_profile_prefix_is_ignored() -> None:
    model = model_table().describe("bedrock", "bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert model.id == "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert model.context_window_tokens == 200_000
    assert model.pricing.cache_write_micros_per_million_tokens == 3_750_000


def test_unknown_model_gets_kind_defaults_without_prices() -> None:
    model = model_table().describe("anthropic", "anthropic", "claude-future-9")
    assert model.capabilities.tools
    assert admin_pb2.MODALITY_IMAGE in model.input_modalities
    assert not model.HasField("pricing")
    assert model.context_window_tokens == 0
