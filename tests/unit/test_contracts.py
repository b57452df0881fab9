"""Contract invariants the server relies on."""

from __future__ import annotations

from homa.chat.v1 import chat_service_pb2 as chat_pb2
from homa_server.rpc.server import service_descriptors


def _shape(message: type) -> list[tuple[str, int, int, str]]:
    fields = message.DESCRIPTOR.fields  # type: ignore[attr-defined]
    shape = []
    for f in fields:
        kind = ""
        if f.message_type is not None:
            # Map entry types are nested in each message; compare their key/value shape instead.
            entry = f.message_type.GetOptions().map_entry
            kind = (
                f"map<{f.message_type.fields[0].type},{f.message_type.fields[1].type}>"
                if entry
                else f.message_type.full_name
            )
        shape.append((f.name, f.number, f.type, kind))
    return sorted(shape)


def test_complete_and_stream_complete_requests_are_wire_identical() -> None:
    assert _shape(chat_pb2.CompleteRequest) == _shape(chat_pb2.StreamCompleteRequest)


def test_stream_request_reparses_as_complete_request() -> None:
    stream = chat_pb2.StreamCompleteRequest(model="m", temperature=0.5, stop=["x"], metadata={"a": "b"})
    stream.messages.add(role=3).parts.add(text="hi")
    same = chat_pb2.CompleteRequest.FromString(stream.SerializeToString())
    assert same.model == "m"
    assert same.temperature == 0.5
    assert same.HasField("temperature")
    assert list(same.stop) == ["x"]
    assert same.messages[0].parts[0].text == "hi"
    assert dict(same.metadata) == {"a": "b"}


def test_all_six_services_are_registered() -> None:
    names = {s.full_name for s in service_descriptors()}
    assert names == {
        "homa.chat.v1.ChatService",
        "homa.image.v1.ImageService",
        "homa.audio.v1.AudioService",
        "homa.embedding.v1.EmbeddingService",
        "homa.admin.v1.AdminService",
        "homa.batch.v1.BatchService",
    }
