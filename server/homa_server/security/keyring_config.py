"""The process keyring, from settings or (development only) a generated key file.

Contract of `load_keyring(encryption, data_dir)`:
    * With `encryption.keys` configured, the keyring is exactly those keys (primary as configured,
      default the last); a bad entry raises `KeyringConfigError` at start-up.
    * Without keys, `<data_dir>/keyring.json` is used, created on first use with one random key,
      file mode 0600, and a warning is logged: fine for `make run`, not for several replicas (each
      would get its own key) — production configures `encryption.keys`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from homa_server.security.crypto import Keyring, KeyringConfigError, generate_key
from homa_server.settings import EncryptionSettings

log = logging.getLogger("homa.security")

DEV_KEYRING_FILE = "keyring.json"


def load_keyring(encryption: EncryptionSettings, data_dir: Path) -> Keyring:
    """The keyring to encrypt stored contents and credentials with (see the module docstring)."""
    if encryption.keys:
        return Keyring.from_settings(
            ({"id": k.id, "key": k.key.get_secret_value()} for k in encryption.keys), encryption.primary
        )
    path = data_dir / DEV_KEYRING_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        entry = {"keys": [{"id": "dev-1", "key": generate_key()}]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(entry, handle)
        log.warning(
            "no encryption.keys configured: generated a development keyring",
            extra={"path": str(path)},
        )
    try:
        document = json.loads(path.read_text())
        return Keyring.from_settings(document["keys"], document.get("primary"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyringConfigError(f"{path}: unreadable development keyring ({type(exc).__name__})") from None
