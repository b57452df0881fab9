"""Builds the grpc.aio server: services, interceptor, health, reflection, transport limits and TLS."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import descriptor
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from homa_server.auth.authenticator import Authenticator
from homa_server.rpc.interceptors.gateway import GatewayInterceptor
from homa_server.rpc.registration import service_handler
from homa_server.rpc.tls import server_credentials
from homa_server.settings import ServerSettings
from homa_server.store.records import Recorder

# (generated module, service name) of every Homa service, in the order they are registered.
HOMA_SERVICES: tuple[tuple[str, str], ...] = (
    ("homa.chat.v1.chat_service_pb2", "ChatService"),
    ("homa.image.v1.image_service_pb2", "ImageService"),
    ("homa.audio.v1.audio_service_pb2", "AudioService"),
    ("homa.embedding.v1.embedding_service_pb2", "EmbeddingService"),
    ("homa.admin.v1.admin_service_pb2", "AdminService"),
    ("homa.batch.v1.batch_service_pb2", "BatchService"),
)


def service_descriptors() -> list[descriptor.ServiceDescriptor]:
    """Descriptors of every Homa service."""
    found = []
    for module_name, service in HOMA_SERVICES:
        module = importlib.import_module(module_name)
        found.append(module.DESCRIPTOR.services_by_name[service])
    return found


@dataclass
class BuiltServer:
    """A server ready to start, with its health servicer and bound port."""

    server: aio.Server
    health: HealthServicer
    port: int
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool) -> None:
        """Mark the overall server and every service SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)


def _options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.min_client_ping_interval_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 1),
    ]


def build_server(
    settings: ServerSettings,
    servicers: Mapping[str, object],
    authenticator: Authenticator | None = None,
    recorder: Recorder | None = None,
    record_access: bool = True,
) -> BuiltServer:
    """Create the server and bind its port.

    Args:
        settings: listener settings.
        servicers: implementation objects by service name (e.g. "ChatService"); services without one
            answer UNIMPLEMENTED for every RPC.
        authenticator: authenticates and authorises every Homa RPC (health and reflection stay
            open); None only for tests of the bare server.
        recorder: where the access audit records of Homa RPCs go (None: not audited).
        record_access: audit every Homa RPC, not only denied calls and failed authentications.

    Raises:
        RuntimeError: the port could not be bound.
        SettingsError: `settings.tls` names files that are missing, unreadable or do not match.
    """
    credentials = server_credentials(settings.tls) if settings.tls is not None else None
    interceptor = GatewayInterceptor(authenticator, recorder, record_access)
    server = aio.server(interceptors=[interceptor], options=_options(settings))
    names = []
    for service in service_descriptors():
        server.add_generic_rpc_handlers((service_handler(service, servicers.get(service.name, object())),))
        names.append(service.full_name)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
    address = f"{settings.host}:{settings.port}"
    if credentials is not None:
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
    return BuiltServer(server=server, health=health_servicer, port=port, service_names=names)
