"""Client-certificate identity (mode `mtls`): from a verified peer certificate to a `Principal`.

Contract of `CertificateIdentities.principal(auth_context) -> Principal | None`:
    * `auth_context` is gRPC's `context.auth_context()`; the TLS stack fills it only for a
      certificate it verified against `server.tls.client_ca_file`. Without
      `transport_security_type == ssl` or without any certificate name, it returns None (no
      client certificate: the authenticator decides between anonymous and `credentials_required()`).
    * The certificate's names are tried in order — every subject alternative name
      (`x509_subject_alternative_name`), then the common name (`x509_common_name`) — and the first
      one listed in `auth.mtls.identities` is the subject; its tenant and scopes come from that entry.
      A certificate whose names are all unknown raises `invalid_credentials()`.
    * The Principal's method is `mtls`; no certificate material is kept or logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from homa_server.auth.principal import Principal, invalid_credentials
from homa_server.settings import MtlsIdentity

AuthContext = Mapping[str, Iterable[bytes]]

SECURITY_TYPE_KEY: Final = "transport_security_type"
SAN_KEY: Final = "x509_subject_alternative_name"
CN_KEY: Final = "x509_common_name"


def certificate_names(auth_context: AuthContext) -> list[str]:
    """The verified peer certificate's SAN entries then CN (empty without a verified certificate)."""
    if b"ssl" not in list(auth_context.get(SECURITY_TYPE_KEY, ())):
        return []
    names: list[str] = []
    for key in (SAN_KEY, CN_KEY):
        for raw in auth_context.get(key, ()):
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if name and name not in names:
                names.append(name)
    return names


class CertificateIdentities:
    """The `auth.mtls.identities` table, as ready-made Principals."""

    def __init__(self, identities: Mapping[str, MtlsIdentity]) -> None:
        self._principals: dict[str, Principal] = {
            subject: Principal(
                subject=subject,
                tenant=identity.tenant,
                scopes=frozenset(identity.scopes),
                method="mtls",
            )
            for subject, identity in identities.items()
        }

    def principal(self, auth_context: AuthContext) -> Principal | None:
        """The Principal of the verified client certificate (see the module docstring)."""
        names = certificate_names(auth_context)
        if not names:
            return None
        for name in names:
            found = self._principals.get(name)
            if found is not None:
                return found
        raise invalid_credentials()
