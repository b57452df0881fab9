"""A grpc.aio ChatService that answers canned responses: the floor under the gateway's per-call cost.

    python -m bench.floor_server --port 50061 [--interceptor] [--stream-events 19]

`Complete` returns a prebuilt `CompleteResponse` and `StreamComplete` yields prebuilt events, with no
upstream call, no validation and no routing, on uvloop with the gateway's server options. Measured
with the same h2load load as the gateway (`python -m bench.run --floor`), the difference between the
two is what Homa's own code costs per call; `--interceptor` adds the gateway's interceptor
(homa_server.rpc.interceptors.gateway) to price it separately.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop
from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.type.v1 import content_pb2, usage_pb2

_TEXT = "Hello from the Homa bench mock upstream." * 2


def canned_response() -> chat_pb2.CompleteResponse:
    return chat_pb2.CompleteResponse(
        id="chatcmpl-bench0000000000000000000000",
        message=content_pb2.Message(role=content_pb2.ROLE_ASSISTANT, parts=[content_pb2.Part(text=_TEXT)]),
        finish_reason=usage_pb2.FINISH_REASON_STOP,
        raw_finish_reason="stop",
        usage=usage_pb2.Usage(input_tokens=32, output_tokens=16, total_tokens=48),
        route=usage_pb2.Route(provider="upstream", model="gpt-4o-mini", attempt=1),
    )


def canned_events(count: int) -> list[chat_pb2.StreamCompleteResponse]:
    events = [
        chat_pb2.StreamCompleteResponse(
            route=usage_pb2.Route(provider="upstream", model="gpt-4o-mini", attempt=1)
        )
    ]
    events += [
        chat_pb2.StreamCompleteResponse(delta=chat_pb2.ContentDelta(text=" word"))
        for _ in range(max(0, count - 3))
    ]
    events.append(
        chat_pb2.StreamCompleteResponse(
            usage=usage_pb2.Usage(input_tokens=32, output_tokens=16, total_tokens=48)
        )
    )
    events.append(
        chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish(reason=usage_pb2.FINISH_REASON_STOP))
    )
    return events


class FloorChat:
    def __init__(self, stream_events: int) -> None:
        self._response = canned_response()
        self._events = canned_events(stream_events)

    async def Complete(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.CompleteRequest, context: Any
    ) -> chat_pb2.CompleteResponse:
        return self._response

    async def StreamComplete(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.StreamCompleteRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamCompleteResponse]:
        for event in self._events:
            yield event


def _handlers(servicer: FloorChat) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        "homa.chat.v1.ChatService",
        {
            "Complete": grpc.unary_unary_rpc_method_handler(
                servicer.Complete,
                request_deserializer=chat_pb2.CompleteRequest.FromString,
                response_serializer=chat_pb2.CompleteResponse.SerializeToString,
            ),
            "StreamComplete": grpc.unary_stream_rpc_method_handler(
                servicer.StreamComplete,
                request_deserializer=chat_pb2.StreamCompleteRequest.FromString,
                response_serializer=chat_pb2.StreamCompleteResponse.SerializeToString,
            ),
        },
    )


async def serve(port: int, interceptor: bool, stream_events: int) -> None:
    interceptors = []
    if interceptor:
        from homa_server.rpc.interceptors.gateway import GatewayInterceptor  # noqa: PLC0415

        interceptors.append(GatewayInterceptor())
    server = aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(FloorChat(stream_events)),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"could not bind 127.0.0.1:{port}")
    await server.start()
    print(f"floor server listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interceptor", action="store_true", help="add the gateway's interceptor")
    parser.add_argument("--stream-events", type=int, default=19, help="events per StreamComplete answer")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.interceptor, args.stream_events))


if __name__ == "__main__":
    main()
