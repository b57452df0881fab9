"""Embedding dispatch: validate, resolve, split to the provider's limits, run concurrently, merge.

Contract of `EmbeddingDispatcher.embed`:
    * The request is validated first (validation/embedding.py); nothing is sent for an invalid one.
    * The model resolves like chat models (routing/resolver.py); a provider that cannot embed
      answers FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
    * Inputs are split into consecutive chunks of at most `EmbeddingLimits.max_inputs`; at most
      `max_concurrency` chunks are in flight at once. The first failure cancels the other chunks
      and is raised as is. Vectors come back in input order (`index` = input position) whatever
      order the chunks finish in.
    * Adapters return vectors as `packed` float32 bytes (or `values`); `encoding` BASE64 returns
      `packed`, FLOAT returns `values` (re-framed from the same bytes, see `_encode`).
    * Usage is the sum over chunks; one usage record is written per call (status completed,
      failed or cancelled) when a recorder is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from homa.embedding.v1 import embedding_service_pb2 as embedding_pb2
from homa.type.v1 import usage_pb2
from homa_server.catalog.pricing import cost_micros
from homa_server.errors import Code, GatewayError, Reason
from homa_server.observability.call_state import current_call
from homa_server.providers._embedding_wire import varint
from homa_server.providers._errors import protocol_error
from homa_server.providers.base import CallContext, EmbeddingProvider
from homa_server.routing.metering import feature_name
from homa_server.routing.resolver import ModelResolver, Target
from homa_server.store.database import now_us
from homa_server.store.records import Recorder, UsageRecord, UsageStatus
from homa_server.validation.embedding import validate_embed_request

__all__ = ["EmbeddedTexts", "EmbeddingDispatcher"]

log = logging.getLogger("homa.embedding")


@dataclass(frozen=True, slots=True)
class EmbeddedTexts:
    """Vectors of a list of texts (rows in input order) with the usage and route of the call."""

    vectors: npt.NDArray[np.float32]
    usage: usage_pb2.Usage
    route: usage_pb2.Route
    model: str


class EmbeddingDispatcher:
    """Runs Embed calls. Built once per process.

    Args:
        resolver: model names to providers.
        recorder: where usage records go (None: not recorded, e.g. in unit tests).
    """

    def __init__(self, resolver: ModelResolver, recorder: Recorder | None = None) -> None:
        self._resolver = resolver
        self.recorder = recorder
        self._can_embed: dict[str, bool] = {}  # runtime-checkable isinstance is slow: once per provider

    def resolve(self, model: str) -> tuple[Target, EmbeddingProvider]:
        """The target of `model`, checked to be an embedding provider.

        Raises:
            GatewayError: MODEL_NOT_FOUND; FAILED_PRECONDITION / CAPABILITY_NOT_SUPPORTED.
        """
        target = self._resolver.resolve(model)
        provider = target.provider
        capable = self._can_embed.get(provider.name)
        if capable is None:
            capable = self._can_embed[provider.name] = isinstance(provider, EmbeddingProvider)
        if not capable:
            raise GatewayError(
                f"provider {provider.name!r} cannot embed",
                Code.FAILED_PRECONDITION,
                Reason.CAPABILITY_NOT_SUPPORTED,
                metadata={"provider": provider.name, "capability": "embeddings"},
            )
        return target, cast(EmbeddingProvider, provider)

    async def embed(
        self, request: embedding_pb2.EmbedRequest, remaining: float | None, request_id: str = ""
    ) -> embedding_pb2.EmbedResponse:
        """One Embed call; see the module docstring for the contract."""
        validate_embed_request(request)
        target, provider = self.resolve(request.model)
        ctx = CallContext(
            model=target.model,
            deadline=None if remaining is None else time.monotonic() + remaining,
            request_id=request_id,
        )
        started = time.perf_counter()
        merged: embedding_pb2.EmbedResponse | None = None
        error: BaseException | None = None
        try:
            merged = await self._run(provider, request, ctx)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record(provider, target.model, merged, error, started)
        merged.route.CopyFrom(usage_pb2.Route(provider=provider.name, model=target.model, attempt=1))
        _encode(merged, request.encoding)
        return merged

    async def embed_texts(
        self,
        model: str,
        texts: list[str],
        *,
        input_type: embedding_pb2.EmbeddingInputType.ValueType,
        dimensions: int | None = None,
        user: str = "",
        remaining: float | None = None,
        request_id: str = "",
    ) -> EmbeddedTexts:
        """Embed `texts` (for collections): the same path as `embed`, vectors as a float32 matrix."""
        request = embedding_pb2.EmbedRequest(model=model, input_type=input_type, user=user)
        if dimensions is not None:
            request.dimensions = dimensions
        request.inputs.extend(embedding_pb2.EmbedInput(text=t) for t in texts)
        request.encoding = embedding_pb2.EMBEDDING_ENCODING_BASE64  # packed bytes: no float objects
        response = await self.embed(request, remaining, request_id)
        packed = b"".join(e.packed for e in response.embeddings)
        vectors = np.frombuffer(packed, dtype="<f4").reshape(len(response.embeddings), -1)
        return EmbeddedTexts(vectors.astype(np.float32), response.usage, response.route, response.model)

    async def _run(
        self, provider: EmbeddingProvider, request: embedding_pb2.EmbedRequest, ctx: CallContext
    ) -> embedding_pb2.EmbedResponse:
        limits = provider.embedding_limits(ctx.model)
        size = max(1, limits.max_inputs)
        total = len(request.inputs)
        if total <= size:
            return _checked(provider.name, await provider.embed(request, ctx), 0, total)
        gate = asyncio.Semaphore(max(1, limits.max_concurrency))

        async def one(start: int) -> embedding_pb2.EmbedResponse:
            chunk = _chunk(request, start, min(total, start + size))
            async with gate:
                return _checked(provider.name, await provider.embed(chunk, ctx), start, len(chunk.inputs))

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(start)) for start in range(0, total, size)]
        merged = embedding_pb2.EmbedResponse()
        for task in tasks:
            part = task.result()
            merged.embeddings.extend(part.embeddings)
            merged.usage.input_tokens += part.usage.input_tokens
            merged.usage.total_tokens += part.usage.total_tokens
            merged.model = merged.model or part.model
            merged.dimensions = merged.dimensions or part.dimensions
        return merged

    def _record(
        self,
        provider: EmbeddingProvider,
        model: str,
        response: embedding_pb2.EmbedResponse | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        if self.recorder is None:
            return
        try:
            status: UsageStatus = "completed"
            reason = ""
            if isinstance(error, asyncio.CancelledError):
                status = "cancelled"
            elif error is not None:
                status = "failed"
                reason = str(error.reason if isinstance(error, GatewayError) else Reason.INTERNAL)
            tokens = response.usage.input_tokens if response is not None else 0
            state = current_call.get()
            principal = state.principal if state is not None else None
            self.recorder.usage(
                UsageRecord(
                    time_us=now_us(),
                    method=feature_name("embedding.Embed"),
                    tenant=principal.tenant if principal is not None else "",
                    status=status,
                    request_id=state.request_id if state is not None else "",
                    api_key_id=(principal.key_id or "") if principal is not None else "",
                    principal=principal.subject if principal is not None else "",
                    auth_method=principal.method if principal is not None else "",
                    model=f"{provider.name}/{model}",
                    provider=provider.name,
                    attempts=1,
                    input_tokens=tokens,
                    cost_micros=cost_micros(
                        provider.kind, model, input_tokens=tokens, cached_input_tokens=0, output_tokens=0
                    ),
                    latency_ms=(time.perf_counter() - started) * 1000.0,
                    error_reason=reason,
                )
            )
        except Exception:
            log.exception("embedding usage metering failed")


def _chunk(request: embedding_pb2.EmbedRequest, start: int, end: int) -> embedding_pb2.EmbedRequest:
    """Inputs [start, end) of `request` with the fields a provider reads (not `metadata`)."""
    chunk = embedding_pb2.EmbedRequest(
        model=request.model, input_type=request.input_type, encoding=request.encoding, user=request.user
    )
    if request.HasField("dimensions"):
        chunk.dimensions = request.dimensions
    if request.HasField("extra_body"):
        chunk.extra_body.CopyFrom(request.extra_body)
    chunk.inputs.extend(request.inputs[start:end])
    return chunk


def _checked(
    provider: str, part: embedding_pb2.EmbedResponse, offset: int, expected: int
) -> embedding_pb2.EmbedResponse:
    """`part` with indexes shifted by `offset`, after checking it holds `expected` vectors 0..n-1."""
    if len(part.embeddings) != expected or sorted(e.index for e in part.embeddings) != list(range(expected)):
        raise protocol_error(provider, f"{len(part.embeddings)} embeddings returned for {expected} inputs")
    if any(e.index != i for i, e in enumerate(part.embeddings)):
        copies = []
        for item in sorted(part.embeddings, key=lambda e: e.index):
            copy = embedding_pb2.Embedding()
            copy.CopyFrom(item)
            copies.append(copy)
        del part.embeddings[:]
        part.embeddings.extend(copies)
    if offset:
        for item in part.embeddings:
            item.index += offset
    return part


def _encode(response: embedding_pb2.EmbedResponse, encoding: int) -> None:
    """Put every vector in the form the caller asked for, in place.

    BASE64: `packed` (vectors an adapter returned as `values` are packed). FLOAT: `values`. A
    packed `repeated float` has the same bytes on the wire as `packed`, so each embedding is
    re-framed from its bytes (field 3 -> field 2) without creating Python floats.
    """
    if encoding == embedding_pb2.EMBEDDING_ENCODING_BASE64:
        for item in response.embeddings:
            if not item.packed and len(item.values):
                item.packed = np.asarray(item.values, dtype="<f4").tobytes()
                del item.values[:]
        return
    if not any(item.packed for item in response.embeddings):
        return
    parts = []
    for item in response.embeddings:
        raw = item.packed
        if raw:
            body = (b"\x08" + varint(item.index) if item.index else b"") + b"\x12" + varint(len(raw)) + raw
        else:
            body = item.SerializeToString()
        parts.append(b"\x0a" + varint(len(body)) + body)
    response.ClearField("embeddings")
    response.MergeFromString(b"".join(parts))
