"""Wires settings, providers, routing and servicers into a running server; handles shutdown and workers.

`serve()` runs one server in the current event loop until `stop` is set (or SIGTERM/SIGINT when
`handle_signals`). Shutdown: health turns NOT_SERVING, new calls are refused, calls in flight get
`server.grace_period_s` to finish, then provider connection pools are closed.
`run_server()` is the process entry point: with `server.workers > 1` it starts that many worker
processes sharing the port through SO_REUSEPORT and supervises them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import uvloop

from homa_server.auth.authenticator import Authenticator, build_authenticator
from homa_server.observability.logging import configure_logging, register_provider_secrets
from homa_server.policy.cache import ResponseCache, build_cache
from homa_server.policy.limits import Limiter
from homa_server.providers.registry import BUILTIN_KINDS, ProviderFactory, ProviderRegistry
from homa_server.routing.attempts import Router
from homa_server.routing.chat import ChatDispatcher
from homa_server.routing.conversation import ConversationTurns
from homa_server.routing.resolver import ModelResolver
from homa_server.rpc.admin import AdminServicer
from homa_server.rpc.admin_audit import AuditAdmin
from homa_server.rpc.admin_cache import CacheAdmin
from homa_server.rpc.admin_keys import ApiKeyAdmin
from homa_server.rpc.admin_usage import UsageAdmin
from homa_server.rpc.audio import AudioServicer
from homa_server.rpc.chat import ChatServicer
from homa_server.rpc.collections import CollectionServicer
from homa_server.rpc.conversations import ConversationServicer
from homa_server.rpc.embedding import EmbeddingServicer
from homa_server.rpc.image import ImageServicer
from homa_server.rpc.server import BuiltServer, build_server
from homa_server.security.crypto import Keyring
from homa_server.security.keyring_config import load_keyring
from homa_server.security.sealed_settings import unseal_provider_credentials
from homa_server.settings import Settings, check_binding, check_mtls
from homa_server.store.audit import append_audit
from homa_server.store.database import Database
from homa_server.store.outbox import Outbox
from homa_server.store.records import Recorder
from homa_server.store.retention import RetentionTask
from homa_server.store.usage import insert_usage

log = logging.getLogger("homa.app")


@dataclass
class Gateway:
    """Everything a server process holds."""

    settings: Settings
    registry: ProviderRegistry
    resolver: ModelResolver
    dispatcher: ChatDispatcher
    authenticator: Authenticator | None = field(default=None)
    #: Set by `open_storage()` (which `start()` calls before building the servicers).
    database: Database | None = field(default=None)
    keyring: Keyring | None = field(default=None)
    outbox: Outbox | None = field(default=None)
    turns: ConversationTurns | None = field(default=None)
    retention: RetentionTask | None = field(default=None)
    #: The response cache (policy/cache), also `dispatcher.cache`; None when `cache.enabled` is false.
    cache: ResponseCache | None = field(default=None)

    @property
    def db(self) -> Database:
        """The open database (raises if `open_storage()` has not run)."""
        if self.database is None:
            raise RuntimeError("storage is not open")
        return self.database

    @property
    def recorder(self) -> Recorder:
        """Where usage and audit records go (the outbox)."""
        if self.outbox is None:
            raise RuntimeError("storage is not open")
        return self.outbox

    async def open_storage(self) -> None:
        """Open the database (migrating it when configured), the keyring and the outbox; idempotent."""
        if self.database is not None:
            return
        storage = self.settings.storage
        if self.keyring is None:
            self.keyring = load_keyring(self.settings.encryption, storage.data_dir)
        database = Database.from_settings(storage)
        try:
            if storage.migrate_on_start:
                await database.migrate()
            outbox = Outbox(
                storage.data_dir / "outbox",
                database,
                {"usage": insert_usage, "audit": append_audit},
                batch_size=storage.outbox_batch_size,
                flush_interval_s=storage.outbox_flush_interval_s,
            )
            await outbox.start()
        except BaseException:
            await database.aclose()
            raise
        self.database, self.outbox = database, outbox
        self.retention = RetentionTask(database, self.settings.retention, outbox)
        self.retention.start()
        self.dispatcher.recorder = outbox  # one usage record per admitted chat call

    @classmethod
    def from_settings(
        cls, settings: Settings, kinds: Mapping[str, ProviderFactory] = BUILTIN_KINDS
    ) -> Gateway:
        """Build providers and routing from validated settings (`kinds`: adapter factories by kind).

        The keyring is loaded first: sealed provider credentials are opened with it (and then
        masked in logs like any configured key).
        """
        keyring = load_keyring(settings.encryption, settings.storage.data_dir)
        settings = unseal_provider_credentials(settings, keyring)
        register_provider_secrets(settings)
        registry = ProviderRegistry.from_settings(settings, kinds)
        first_deployments = {
            alias: (route.deployments[0].provider, route.deployments[0].model)
            for alias, route in settings.routes.items()
        }
        resolver = ModelResolver(registry, settings.default_model, first_deployments)
        router = Router.from_settings(settings, registry, resolver)
        gateway = cls(settings, registry, resolver, ChatDispatcher(resolver, router=router))
        gateway.dispatcher.limiter = Limiter.from_settings(settings.limits)  # Redis connects lazily
        gateway.cache = gateway.dispatcher.cache = build_cache(settings)  # connects lazily too
        gateway.keyring = keyring
        return gateway

    def servicers(self) -> dict[str, object]:
        """Servicer objects (or lists of servicer parts) by service name."""
        return {
            "ChatService": [
                ChatServicer(self.dispatcher, self.resolver, self.conversation_turns()),
                ConversationServicer(self),
            ],
            "EmbeddingService": [EmbeddingServicer(self), CollectionServicer(self)],
            "ImageService": [ImageServicer(self)],
            "AudioService": [AudioServicer(self)],
            "AdminService": [
                AdminServicer(self.registry, self.settings, self.dispatcher.router.breakers),
                ApiKeyAdmin(self),
                UsageAdmin(self),
                AuditAdmin(self),
                CacheAdmin(self),
            ],
        }

    async def open_auth(self) -> Authenticator:
        """Build the authentication methods once (OIDC discovery included); idempotent."""
        if self.authenticator is None:
            self.authenticator = await build_authenticator(self.settings.auth, self.database)
        return self.authenticator

    async def aclose(self) -> None:
        """Release provider resources, the identity-provider HTTP client, the outbox and the database."""
        try:
            await self.registry.aclose()
        finally:
            try:
                if self.authenticator is not None:
                    await self.authenticator.aclose()
            finally:
                try:
                    if self.dispatcher.limiter is not None:
                        await self.dispatcher.limiter.aclose()
                    if self.cache is not None:
                        await self.cache.aclose()
                finally:
                    await self.close_storage()

    def conversation_turns(self) -> ConversationTurns | None:
        """The conversation layer of chat calls (one per gateway; None before storage is open)."""
        if self.turns is None:
            self.turns = ConversationTurns.for_gateway(self)
        return self.turns

    async def close_storage(self) -> None:
        """Finish conversation appends still running, stop the retention task, flush the outbox,
        then close the database."""
        if self.turns is not None:
            await self.turns.drain()
        if self.retention is not None:
            await self.retention.aclose()
            self.retention = None
        try:
            if self.outbox is not None:
                await self.outbox.aclose()
        finally:
            if self.database is not None:
                await self.database.aclose()
            self.outbox = self.database = None


async def start(
    settings: Settings, kinds: Mapping[str, ProviderFactory] = BUILTIN_KINDS
) -> tuple[Gateway, BuiltServer]:
    """Build and start a server; returns once it accepts calls (used by tests and `serve`).

    Raises:
        SettingsError: `auth.mode: none` with a non-loopback `server.host`, mode `mtls` without
            client certificates, or `server.tls` files that are missing or invalid.
        ValueError / DiscoveryError: the authentication settings cannot be put to work.
    """
    check_binding(settings)  # settings built without validation (model_copy) are checked too
    check_mtls(settings)
    gateway = Gateway.from_settings(settings, kinds)
    try:
        await gateway.open_storage()
        authenticator = await gateway.open_auth()
        built = build_server(
            settings.server,
            gateway.servicers(),
            authenticator,
            gateway.recorder,
            settings.audit.record_access,
        )
    except BaseException:
        await gateway.aclose()
        raise
    await built.server.start()
    await built.set_serving(True)
    return gateway, built


async def stop(gateway: Gateway, built: BuiltServer, grace: float) -> None:
    """Graceful stop: NOT_SERVING, drain for `grace` seconds, close providers."""
    await built.set_serving(False)
    await built.server.stop(grace)
    await gateway.aclose()


async def serve(
    settings: Settings,
    stop_event: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Run one server until `stop_event` is set or a termination signal arrives."""
    stop_event = stop_event or asyncio.Event()
    gateway, built = await start(settings)
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    log.info(
        "homa listening",
        extra={
            "address": f"{settings.server.host}:{built.port}",
            "providers": gateway.registry.names(),
            "tls": settings.server.tls.client_auth if settings.server.tls else "off",
        },
    )
    print(f"homa listening on {settings.server.host}:{built.port}", file=sys.stderr, flush=True)
    if on_ready is not None:
        on_ready(built.port)
    await stop_event.wait()
    log.info("homa stopping", extra={"grace_s": settings.server.grace_period_s})
    await stop(gateway, built, settings.server.grace_period_s)


def _worker(settings: Settings) -> None:
    configure_logging(settings.logging)
    register_provider_secrets(settings)
    uvloop.run(serve(settings))


def _supervise(settings: Settings) -> None:
    """Run `workers` processes on one port; restart a worker that dies, stop all on SIGTERM."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def request_stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    workers = [
        context.Process(target=_worker, args=(settings,), daemon=False)
        for _ in range(settings.server.workers)
    ]
    for process in workers:
        process.start()
    while not stopping:
        time.sleep(0.2)
        for i, process in enumerate(workers):
            if not process.is_alive() and not stopping:
                log.warning("worker exited; restarting", extra={"exitcode": process.exitcode})
                workers[i] = context.Process(target=_worker, args=(settings,), daemon=False)
                workers[i].start()
    for process in workers:
        if process.pid is not None and process.is_alive():
            process.terminate()
    deadline = time.monotonic() + settings.server.grace_period_s + 5
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)


def run_server(settings: Settings) -> None:
    """Blocking entry point for `homa serve`."""
    configure_logging(settings.logging)
    register_provider_secrets(settings)
    if settings.server.workers > 1:
        if settings.server.port == 0:
            raise ValueError("server.port must be fixed when server.workers > 1")
        _supervise(settings)
    else:
        uvloop.run(serve(settings))
