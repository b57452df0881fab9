"""OpenAI audio wire helpers and audio arithmetic: malformed answers, WAV headers, durations."""

from __future__ import annotations

import pytest

from homa.audio.v1 import audio_service_pb2 as audio_pb2
from homa_server.errors import Code, GatewayError, Reason
from homa_server.providers.openai.audio import build_speech_body, multipart_body, parse_transcription
from homa_server.routing.audio_live import wav_header
from homa_server.routing.audio_metering import audio_duration


@pytest.mark.parametrize("payload", [None, [], {}, {"text": 3}, {"text": "x", "segments": ["bad"]}])
def test_malformed_transcriptions_are_protocol_errors(payload: object) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_transcription("openai", payload)
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, Reason.UPSTREAM_PROTOCOL_ERROR)


def test_token_usage_is_read() -> None:
    usage = {"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59}
    parsed = parse_transcription("openai", {"text": "hi", "usage": usage})
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.total_tokens) == (14, 45, 59)


def test_extra_body_never_overrides_adapter_fields() -> None:
    request = audio_pb2.SynthesizeRequest(input="hi", voice="alloy")
    request.extra_body.update({"voice": "echo", "stream_format": "audio"})
    body = build_speech_body(request, "tts-1")
    assert (body["voice"], body["stream_format"], body["response_format"]) == ("alloy", "audio", "mp3")


def test_multipart_body_frames_fields_and_file() -> None:
    body, content_type = multipart_body([("model", "whisper-1")], ("a.wav", "audio/wav", b"\x00\x01"))
    boundary = content_type.partition("boundary=")[2]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n\x00\x01\r\n' in body


def test_wav_header_and_durations() -> None:
    header = wav_header(audio_pb2.AUDIO_ENCODING_LINEAR16, 16000, 2, 64000)
    assert len(header) == 44
    assert audio_duration("audio/wav", 44 + 64000, header) == pytest.approx(1.0)
    mulaw = wav_header(audio_pb2.AUDIO_ENCODING_MULAW, 8000, 1, 8000)
    assert int.from_bytes(mulaw[20:22], "little") == 7
    assert audio_duration("audio/wav", 44 + 8000, mulaw) == pytest.approx(1.0)
    assert audio_duration("audio/pcm;rate=22050", 44100) == pytest.approx(1.0)
    assert audio_duration("audio/pcm", 48000) == pytest.approx(1.0)
    assert audio_duration("audio/mpeg", 48000) == 0.0
