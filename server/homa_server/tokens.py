"""Local token counting with tiktoken, using BPE rank files shipped inside a PyPI package.

tiktoken normally downloads its encodings on first use; Homa never downloads anything at run time.
The rank files come from the `bpe-openai` package (`bpe_openai/data/*.tiktoken.gz`); tiktoken's own
encoding definitions supply the split pattern and special tokens, and the file's SHA-256 is checked
against the hash tiktoken expects, so the counts are exactly tiktoken's. Encodings load lazily (about
0.8 s for o200k_base) and are kept for the life of the process.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import tiktoken
from google.protobuf import json_format
from tiktoken_ext import openai_public

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2

_DEFINITIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "o200k_base": openai_public.o200k_base,
    "cl100k_base": openai_public.cl100k_base,
}
# Model-name prefixes that use cl100k_base; everything else counts with o200k_base (the encoding of
# every current OpenAI chat model, and the better estimate for other vendors' models).
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")

# Per-message framing tokens in OpenAI's chat format, plus the reply primer.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMER = 3
# Rough cost of an image part for local estimates (OpenAI's low-detail cost).
_IMAGE_TOKENS = 85

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


def _shipped_data_dir() -> Path:
    """bpe-openai's data folder, found without importing the package (its import loads a tokenizer)."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bpe-openai package (which ships the BPE rank files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_ranks(name: str, expected_hash: str) -> dict[bytes, int]:
    packed = (_shipped_data_dir() / f"{name}.tiktoken.gz").read_bytes()
    raw = gzip.decompress(packed)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_hash:
        raise RuntimeError(f"{name}: shipped rank file hash {digest} != tiktoken's {expected_hash}")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name` ("o200k_base" or "cl100k_base"), loaded from shipped files.

    Raises:
        KeyError: unknown encoding name.
    """
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    definition = _DEFINITIONS[name]
    with _lock:
        if name not in _loaded:
            original = openai_public.load_tiktoken_bpe

            def shipped(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
                return _read_ranks(name, expected_hash or "")

            openai_public.load_tiktoken_bpe = shipped
            try:
                spec = definition()
            finally:
                openai_public.load_tiktoken_bpe = original
            _loaded[name] = tiktoken.Encoding(**spec)
    return _loaded[name]


def encoding_name_for(model: str) -> str:
    """The encoding used to count for `model` (a bare model name, no provider prefix)."""
    bare = model.rsplit("/", 1)[-1]
    if bare.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if bare.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def _part_texts(part: content_pb2.Part) -> Iterable[str]:
    kind = part.WhichOneof("kind")
    if kind == "text":
        yield part.text
    elif kind == "tool_call":
        yield part.tool_call.name
        yield part.tool_call.arguments_json
    elif kind == "tool_result":
        yield part.tool_result.content
    elif kind == "reasoning":
        yield part.reasoning.text


def count_request_tokens(request: chat_pb2.CountTokensRequest, model: str) -> chat_pb2.CountTokensResponse:
    """Count the input tokens of `request` locally with tiktoken and OpenAI's chat framing.

    Text, tool calls, tool results and tool definitions are counted exactly; images are estimated at
    a fixed cost, so the result is marked `exact=False`.
    """
    name = encoding_name_for(model)
    encoding = get_encoding(name)
    total = _REPLY_PRIMER
    for message in request.messages:
        total += _TOKENS_PER_MESSAGE
        if message.name:
            total += _TOKENS_PER_NAME + len(encoding.encode_ordinary(message.name))
        for part in message.parts:
            kind = part.WhichOneof("kind")
            if kind in ("inline_data", "file_uri"):
                total += _IMAGE_TOKENS
            for text in _part_texts(part):
                total += len(encoding.encode_ordinary(text))
    for tool in request.tools:
        schema = orjson.dumps(
            {
                "name": tool.name,
                "description": tool.description,
                "parameters": json_format.MessageToDict(tool.parameters),
            }
        ).decode()
        total += len(encoding.encode_ordinary(schema))
    return chat_pb2.CountTokensResponse(input_tokens=total, exact=False, method=f"tiktoken:{name}")
