"""Server TLS credentials from `server.tls`: files read and checked once, at start-up.

`server_credentials(tls)` reads the certificate chain, the private key and (optionally) the client CA
bundle, checks that they parse and that the key matches the leaf certificate, and returns
`grpc.ssl_server_credentials`. `client_auth: require` makes the handshake fail without a client
certificate issued by the CA (`optional` is refused by the settings: grpcio cannot request a
client certificate without requiring it). Any problem raises `SettingsError` naming the setting
and the file, never the key material.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from homa_server.settings import SettingsError, TlsSettings


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"server.tls.{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _certificates(data: bytes, path: Path, setting: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise SettingsError(f"server.tls.{setting}: no PEM certificate in {path}")
    return certs


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """Validated gRPC server credentials for `tls`.

    Raises:
        SettingsError: a file is missing or unreadable, is not PEM, or the key does not match.
    """
    chain = _read(tls.cert_file, "cert_file")
    leaf = _certificates(chain, tls.cert_file, "cert_file")[0]
    key_pem = _read(tls.key_file, "key_file")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise SettingsError(
            f"server.tls.key_file: {tls.key_file} is not an unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != leaf.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise SettingsError("server.tls.key_file: the key does not match the certificate in cert_file")
    roots: bytes | None = None
    if tls.client_ca_file is not None:
        roots = _read(tls.client_ca_file, "client_ca_file")
        _certificates(roots, tls.client_ca_file, "client_ca_file")
    return grpc.ssl_server_credentials(
        [(key_pem, chain)],
        root_certificates=roots if tls.client_auth == "require" else None,
        require_client_auth=tls.client_auth == "require",
    )
