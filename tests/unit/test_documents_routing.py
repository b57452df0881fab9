"""PDF document parts reach providers that cannot read PDFs as extracted text (routing/documents.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from grpc import aio

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa.chat.v1 import chat_service_pb2_grpc as chat_grpc
from homa.type.v1 import content_pb2, usage_pb2
from homa_server.app import start, stop
from homa_server.providers.base import CallContext
from homa_server.providers.registry import BUILTIN_KINDS
from homa_server.routing.documents import for_provider
from homa_server.settings import ProviderSettings
from tests.conftest import make_settings
from tests.unit.test_local_documents import _text_pdf


def _request(pdf: bytes) -> chat_pb2.CompleteRequest:
    request = chat_pb2.CompleteRequest(model="rec/any")
    message = request.messages.add(role=content_pb2.ROLE_USER)
    message.parts.add(text="Summarise the invoice.")
    message.parts.add(
        document=content_pb2.Document(mime_type="application/pdf", data=pdf, title="invoice.pdf")
    )
    return request


async def test_pdf_becomes_text_for_providers_without_pdf_input() -> None:
    original = _request(_text_pdf(["Invoice 42", "Total due 250 EUR"]))
    converted = await for_provider(original, "ollama")
    document = converted.messages[0].parts[1].document
    assert document.mime_type == "text/plain"
    assert document.title == "invoice.pdf"
    text = document.data.decode()
    assert "Invoice 42" in text
    assert "Total due 250 EUR" in text
    assert original.messages[0].parts[1].document.mime_type == "application/pdf"  # caller's copy kept


async def test_native_pdf_providers_get_the_request_unchanged() -> None:
    request = _request(_text_pdf(["x"]))
    for kind in ("openai", "anthropic", "gemini", "bedrock", "venice"):
        assert await for_provider(request, kind) is request
    plain = chat_pb2.CompleteRequest(model="m")
    plain.messages.add(role=content_pb2.ROLE_USER).parts.add(text="no documents")
    assert await for_provider(plain, "ollama") is plain


@dataclass
class _Recording:
    """A chat provider of a kind without PDF input that keeps the requests it receives."""

    name: str
    seen: list[chat_pb2.CompleteRequest] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "ollama"

    async def aclose(self) -> None:
        return None

    async def complete_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> chat_pb2.CompleteResponse:
        self.seen.append(request)
        response = chat_pb2.CompleteResponse(finish_reason=usage_pb2.FINISH_REASON_STOP)
        response.message.role = content_pb2.ROLE_ASSISTANT
        response.message.parts.add(text="ok")
        return response

    async def stream_chat(
        self, request: chat_pb2.CompleteRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamCompleteResponse, None]:
        self.seen.append(request)
        yield chat_pb2.StreamCompleteResponse(finish=chat_pb2.Finish(reason=usage_pb2.FINISH_REASON_STOP))


async def test_the_dispatcher_sends_extracted_text_to_such_providers() -> None:
    made: list[_Recording] = []

    def factory(name: str, settings: ProviderSettings) -> _Recording:
        made.append(_Recording(name))
        return made[-1]

    settings = make_settings(**{"providers.rec": {"kind": "recording"}, "cache.enabled": False})
    gateway, built = await start(settings, {**BUILTIN_KINDS, "recording": factory})
    try:
        async with aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = chat_grpc.ChatServiceStub(channel)
            pdf = _text_pdf(["Quarterly report", "Revenue grew"])
            await stub.Complete(_request(pdf))
            streamed = chat_pb2.StreamCompleteRequest.FromString(_request(pdf).SerializeToString())
            async for _ in stub.StreamComplete(streamed):
                pass
    finally:
        await stop(gateway, built, 0)
    assert len(made[0].seen) == 2
    for request in made[0].seen:
        document = request.messages[0].parts[1].document
        assert document.mime_type == "text/plain"
        assert "Quarterly report" in document.data.decode()
        assert "Revenue grew" in document.data.decode()
