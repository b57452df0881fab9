"""Provider credentials encrypted at rest in configuration.

A provider `api_key` in the YAML file or the environment may be a sealed token (`hx1.…`, made by
`homa secrets seal --provider NAME`) instead of the raw key: it is opened once at start-up with the
process keyring (security/crypto.py `SecretBox`, purpose `provider-credential`, bound to the provider
instance name so a token cannot be moved to another provider), and only the opened key lives in
memory. Raw keys keep working. A token that does not open stops the start with a message that names
the provider and the key id, never key material.
"""

from __future__ import annotations

from typing import Final

from pydantic import SecretStr

from homa_server.errors import GatewayError
from homa_server.security.crypto import Keyring, SecretBox
from homa_server.settings import Settings, SettingsError

PROVIDER_CREDENTIAL_PURPOSE: Final = "provider-credential"
SEALED_PREFIX: Final = "hx1."


def seal_provider_credential(keyring: Keyring, provider: str, secret: str) -> str:
    """The sealed token to put in `providers.<provider>.api_key`."""
    return SecretBox(keyring, PROVIDER_CREDENTIAL_PURPOSE).seal(secret, provider.encode())


def unseal_provider_credentials(settings: Settings, keyring: Keyring) -> Settings:
    """`settings` with every sealed provider `api_key` opened (unchanged when none is sealed).

    Raises:
        SettingsError: a sealed key that does not open with this keyring (wrong key, wrong provider
            name, tampered token).
    """
    box = SecretBox(keyring, PROVIDER_CREDENTIAL_PURPOSE)
    opened = {}
    for name, provider in settings.providers.items():
        if provider.api_key is None or not provider.api_key.get_secret_value().startswith(SEALED_PREFIX):
            continue
        try:
            plain = box.open(provider.api_key.get_secret_value(), name.encode())
        except GatewayError as exc:
            raise SettingsError(
                f"providers.{name}.api_key: the sealed credential does not open with the configured "
                f"encryption keys ({exc.message})"
            ) from None
        opened[name] = provider.model_copy(update={"api_key": SecretStr(plain)})
    if not opened:
        return settings
    return settings.model_copy(update={"providers": {**settings.providers, **opened}})
