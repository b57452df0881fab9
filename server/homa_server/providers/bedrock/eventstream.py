"""The AWS event-stream framing of ConverseStream (`application/vnd.amazon.eventstream`), decoded by
botocore.

`FrameReader` feeds the raw body, in whatever chunks httpx delivers it, into
`botocore.eventstream.EventStreamBuffer`, which splits it into messages and checks both CRC32s
and the length limits; nothing here parses binary by hand. Each complete message becomes a
`Frame` with the header values the decoder needs; the JSON payload stays `bytes` so the stream
decoder can hand it straight to orjson.

Why not botocore's `EventStreamJSONParser` for the payloads as well: it walks the output shape
for every event (about 11 us per event here, twenty times orjson), and ConverseStream payloads
are plain JSON whose only blob (`redactedContent`) the decoder base64-decodes itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]

from homa_server.providers.bedrock.error_mapping import protocol_error

__all__ = ["Frame", "FrameReader"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One event-stream message.

    Attributes:
        message_type: `:message-type`: "event", "exception" or "error".
        name: `:event-type` for events, `:exception-type` for exceptions, `:error-code` for errors.
        payload: the raw payload (JSON for events and exceptions).
        error_message: `:error-message` of an "error" frame, else "".
    """

    message_type: str
    name: str
    payload: bytes
    error_message: str = ""


class FrameReader:
    """Incremental event-stream reader. Use one per response.

    Args:
        provider: instance name, for protocol errors.
    """

    __slots__ = ("_buffer", "_consumed", "_fed", "_provider")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._buffer = EventStreamBuffer()
        self._fed = 0
        self._consumed = 0

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished message are buffered (truncation at end of body)."""
        return self._fed > self._consumed

    def feed(self, chunk: bytes) -> list[Frame]:
        """Consume `chunk`; return the messages it completed, in order (often one, or none).

        Raises:
            GatewayError: UPSTREAM_PROTOCOL_ERROR for a corrupt message (CRC mismatch, a length
                beyond the limits, duplicate headers).
        """
        self._buffer.add_data(chunk)
        self._fed += len(chunk)
        frames: list[Frame] = []
        try:
            for message in self._buffer:
                self._consumed += message.prelude.total_length
                headers = message.headers
                message_type = headers.get(":message-type", "")
                if message_type == "event":
                    name = headers.get(":event-type", "")
                elif message_type == "exception":
                    name = headers.get(":exception-type", "")
                else:
                    name = headers.get(":error-code", "")
                frames.append(
                    Frame(
                        str(message_type),
                        str(name),
                        bytes(message.payload),
                        str(headers.get(":error-message", "")),
                    )
                )
        except ParserError as exc:
            raise protocol_error(
                self._provider, f"corrupt event-stream message ({type(exc).__name__})"
            ) from None
        return frames
