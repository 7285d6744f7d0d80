"""A text said in a voice and streamed back over HTTP as it is made: for POST /api/v1/tts and the admin preview.

The web process enqueues synthesis.tasks.speak and waits for the first audio (so a failure before any audio
is an ordinary error answer), then hands the rest over chunk by chunk (synthesis.streaming carries them).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.http import StreamingHttpResponse
from kombu.exceptions import OperationalError

from synthesis import tasks
from synthesis.audio import streaming_wav_header
from synthesis.streaming import SpeechStream, StreamUnavailable

FORMATS = ("wav", "pcm")


def start_speech(voice_id: int, text: str, sample_rate: int) -> tuple[SpeechStream, bytes]:
    """Enqueue the speech and wait for its first audio (16-bit little-endian samples at `sample_rate`).

    Raises StreamUnavailable (no Redis, no queue) or SpeechFailed (the engine failed, or no worker answered
    within HERALD_TTS_WAIT_SECONDS), each with the reason.
    """
    stream = SpeechStream.open()
    try:
        tasks.speak.apply_async((stream.id, voice_id, text, sample_rate), expires=settings.TTS_WAIT_SECONDS)
    except OperationalError as exc:
        raise StreamUnavailable(f"the synthesis queue cannot be reached: {exc}") from exc
    return stream, stream.first_audio()


def speech_response(stream: SpeechStream, first: bytes, sample_rate: int, audio_format: str = "wav"):
    """The streaming answer: a WAV whose header gives no length, or RFC 2586 audio/L16 (big-endian)."""
    if audio_format == "wav":
        body = _audio(stream, streaming_wav_header(sample_rate) + first)
        content_type = "audio/wav"
    else:  # RFC 2586: L16 is in network byte order; the worker hands over WAV's little-endian samples
        body = (_big_endian(chunk) for chunk in _audio(stream, first))
        content_type = f"audio/L16;rate={sample_rate};channels=1"
    response = StreamingHttpResponse(body, content_type=content_type)
    response["X-Accel-Buffering"] = "no"  # a proxy (nginx) passes each chunk on at once
    return response


def _big_endian(samples: bytes) -> bytes:
    """Little-endian 16-bit samples (whole ones: the worker pushes whole arrays) swapped to big-endian."""
    swapped = bytearray(len(samples))
    swapped[0::2], swapped[1::2] = samples[1::2], samples[0::2]
    return bytes(swapped)


def _audio(stream: SpeechStream, first: bytes) -> Iterator[bytes]:
    """The answer's body. Closed before its end (the client went away), it tells the worker to stop."""
    finished = False
    try:
        yield first
        yield from stream.rest()
        finished = True
    finally:
        if not finished:
            stream.cancel()
