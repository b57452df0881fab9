"""Generic method handlers for a service descriptor, bound to a servicer object.

Methods the servicer defines are served by it; every other method of the service answers
UNIMPLEMENTED (reason NOT_IMPLEMENTED) with a message naming the RPC, keeping the method's
streaming kind. This is how contracts can be complete before every RPC is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory

from homa_server.errors import not_implemented


def _unimplemented(full_name: str, method: descriptor.MethodDescriptor) -> Any:
    error = not_implemented(full_name)
    if method.server_streaming:

        async def stream_behavior(_request: Any, _context: Any) -> AsyncIterator[Any]:
            raise error
            yield  # pragma: no cover - makes this an async generator

        return stream_behavior

    async def unary_behavior(_request: Any, _context: Any) -> Any:
        raise error

    return unary_behavior


def service_handler(
    service: descriptor.ServiceDescriptor, servicer: object | Sequence[object]
) -> grpc.GenericRpcHandler[Any, Any]:
    """A generic handler serving `service` with the methods `servicer` defines (by RPC name).

    `servicer` may be a list of parts (one per area of a large service, e.g. AdminService's
    keys, usage and audit parts): each RPC is served by the first part that defines it.
    """
    parts = list(servicer) if isinstance(servicer, (list, tuple)) else [servicer]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        behavior = next(
            (b for b in (getattr(part, method.name, None) for part in parts) if b is not None), None
        )
        if behavior is None:
            behavior = _unimplemented(f"{service.full_name}/{method.name}", method)
        kwargs: dict[str, Any] = {
            "request_deserializer": request_cls.FromString,
            "response_serializer": response_cls.SerializeToString,
        }
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(behavior, **kwargs)
        elif method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(behavior, **kwargs)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
