"""The model capability and price table (`models.yaml` beside this file), loaded once.

`ModelTable.lookup(kind, model)` returns what is known about a provider-side model id: context
window, output limit, modalities, capabilities and prices in integer micro-USD per million tokens.
Unknown models get the kind's defaults (capabilities only, prices unknown) so they still work.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from homa.admin.v1 import admin_service_pb2 as admin_pb2

TABLE_PATH = Path(__file__).with_name("models.yaml")
_BEDROCK_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au.")
_MICROS = Decimal(1_000_000)

Modality = Literal["text", "image", "audio", "video", "document", "embedding"]


def _text_only() -> list[Modality]:
    return ["text"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capabilities(_Strict):
    """Feature flags (see homa.admin.v1.ModelCapabilities)."""

    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    reasoning: bool = False
    streaming: bool = True
    parallel_tool_calls: bool = False
    prompt_caching: bool = False
    documents: bool = False


class Prices(_Strict):
    """USD per million tokens; None = unknown."""

    input: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None


class KindDefaults(_Strict):
    """What an unlisted model of a kind is assumed to support."""

    input: list[Modality] = Field(default_factory=_text_only)
    output: list[Modality] = Field(default_factory=_text_only)
    capabilities: Capabilities = Field(default_factory=Capabilities)


class ModelEntry(_Strict):
    """One row of the table."""

    kinds: list[str]
    id: str
    prefix: bool = False
    display_name: str = ""
    context_window: int = 0
    max_output_tokens: int = 0
    input: list[Modality] = Field(default_factory=_text_only)
    output: list[Modality] = Field(default_factory=_text_only)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    price: Prices = Field(default_factory=Prices)


class _TableFile(_Strict):
    as_of: str
    defaults: dict[str, KindDefaults]
    models: list[ModelEntry]


_MODALITIES = {
    "text": admin_pb2.MODALITY_TEXT,
    "image": admin_pb2.MODALITY_IMAGE,
    "audio": admin_pb2.MODALITY_AUDIO,
    "video": admin_pb2.MODALITY_VIDEO,
    "document": admin_pb2.MODALITY_DOCUMENT,
    "embedding": admin_pb2.MODALITY_EMBEDDING,
}


def _micros(value: Decimal | None) -> int | None:
    return None if value is None else int(value * _MICROS)


def _normalise(kind: str, model: str) -> str:
    if kind == "bedrock":
        for prefix in _BEDROCK_REGION_PREFIXES:
            if model.startswith(prefix):
                return model[len(prefix) :]
    return model


class ModelTable:
    """Lookup over the table; `lookup` results are cached per (kind, model)."""

    def __init__(self, data: _TableFile) -> None:
        self.as_of = data.as_of
        self._defaults = data.defaults
        self._exact: dict[tuple[str, str], ModelEntry] = {}
        self._prefixes: dict[str, list[ModelEntry]] = {}
        for entry in data.models:
            for kind in entry.kinds:
                self._exact[(kind, entry.id)] = entry
                if entry.prefix:
                    self._prefixes.setdefault(kind, []).append(entry)
        for entries in self._prefixes.values():
            entries.sort(key=lambda e: len(e.id), reverse=True)
        self._cache: dict[tuple[str, str], ModelEntry | None] = {}

    def entry(self, kind: str, model: str) -> ModelEntry | None:
        """The table row for `model` served by an adapter of `kind`, or None when unlisted."""
        key = (kind, model)
        if key in self._cache:
            return self._cache[key]
        bare = _normalise(kind, model)
        found = self._exact.get((kind, bare))
        if found is None:
            found = next(
                (e for e in self._prefixes.get(kind, ()) if bare.startswith(e.id + "-") or bare == e.id), None
            )
        if len(self._cache) < 10_000:
            self._cache[key] = found
        return found

    def describe(self, provider: str, kind: str, model: str) -> admin_pb2.Model:
        """The admin Model message for `provider/model`: table data, or the kind's defaults."""
        entry = self.entry(kind, model)
        info = admin_pb2.Model(
            id=f"{provider}/{model}", provider=provider, provider_model=model, display_name=model
        )
        if entry is None:
            defaults = self._defaults.get(kind, KindDefaults())
            info.input_modalities.extend(_MODALITIES[m] for m in defaults.input)
            info.output_modalities.extend(_MODALITIES[m] for m in defaults.output)
            info.capabilities.CopyFrom(admin_pb2.ModelCapabilities(**defaults.capabilities.model_dump()))
            return info
        info.display_name = entry.display_name or model
        info.context_window_tokens = entry.context_window
        info.max_output_tokens = entry.max_output_tokens
        info.input_modalities.extend(_MODALITIES[m] for m in entry.input)
        info.output_modalities.extend(_MODALITIES[m] for m in entry.output)
        info.capabilities.CopyFrom(admin_pb2.ModelCapabilities(**entry.capabilities.model_dump()))
        prices = {
            "input_micros_per_million_tokens": _micros(entry.price.input),
            "cached_input_micros_per_million_tokens": _micros(entry.price.cached_input),
            "cache_write_micros_per_million_tokens": _micros(entry.price.cache_write),
            "output_micros_per_million_tokens": _micros(entry.price.output),
        }
        info.pricing.CopyFrom(admin_pb2.ModelPricing(**{k: v for k, v in prices.items() if v is not None}))
        return info


@cache
def model_table(path: Path = TABLE_PATH) -> ModelTable:
    """The table at `path`, parsed and validated once per process.

    Raises:
        pydantic.ValidationError: the file does not match the schema (a start-up error).
    """
    return ModelTable(_TableFile.model_validate(yaml.safe_load(path.read_text())))
