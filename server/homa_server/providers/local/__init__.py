"""Local provider (kind `local`): models that run in the gateway process, with no key and no network.

Modules, one job each: `provider` (the `LocalProvider` adapter), `minilm` (the all-MiniLM-L6-v2
forward pass in numpy), `safetensors` (a numpy reader for the weights), `assets` (where the model
files are and the one loaded copy per process).
"""

from homa_server.providers.local.provider import MODEL_ID, LocalProvider

__all__ = ["MODEL_ID", "LocalProvider"]
