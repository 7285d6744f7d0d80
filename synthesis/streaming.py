"""Streamed speech (POST /api/v1/tts): a synthesis worker says one text with a voice's engine, chunk by chunk, and
hands the audio to the web process that asked through one Redis list per request.

Web processes never run an engine (GPT-SoVITS needs torch, which only synthesis workers have). The web process
opens a SpeechStream, queues ``synthesis.tasks.speak`` with the stream's id and waits on the list; the worker
pushes messages onto it, each one byte of kind and a body:

    S                 the worker has the request (from then on the web waits for audio, not for a worker)
    A<pcm>            signed 16-bit little-endian mono PCM at the asked rate, in order
    E                 the end: the whole text was said
    X<json>           {"error": "...", "permanent": bool}: the voice or the engine failed

The web process sets the stream's cancel key when its client goes away or it stops waiting; the worker checks it
between chunks and stops the engine. The worker never runs more than MAX_QUEUED_CHUNKS ahead of the reader, and
every key expires on its own (STREAM_TTL_SECONDS), so a stream whose web process died leaves nothing behind.
Logs say the voice, lengths and timings, never the text.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from django.conf import settings
from django.utils import translation

from synthesis.actions import instant_voice_problem, voice_problem, voice_spec
from synthesis.audio import AudioError, PcmStream
from synthesis.engines import get_engine
from synthesis.engines.base import EngineError, failure_reason
from voices.models import Voice

log = logging.getLogger(__name__)

STARTED, AUDIO, END, ERROR = b"S", b"A", b"E", b"X"
MAX_QUEUED_CHUNKS = 32  # the worker waits while this many chunks are unread
STREAM_TTL_SECONDS = 120  # keys expire this long after the worker's last push (or the cancel)
_ROOM_POLL_SECONDS = 0.05


class StreamUnavailable(Exception):
    """There is no Redis to stream through, or it cannot be reached."""


class SpeechFailed(Exception):
    """The speech cannot be delivered: `status` is the HTTP status that says why (502 the engine or the voice
    failed for good, 503 a transient engine failure, 504 no worker or no audio in time)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def speech_problem(voice: Voice) -> str | None:
    """Why `voice` cannot speak in this installation now (consent, engine setup, base models), in English for
    API callers, or None when it can. The launch preflight's checks."""
    if not voice.is_usable():
        return "it is a cloned voice without a valid speaker consent: record the speaker's consent first"
    with translation.override("en"):
        try:
            return voice_problem(voice) or instant_voice_problem(voice)
        except EngineError as exc:
            return exc.message


_clients: dict[tuple[str, float], redis.Redis] = {}
_clients_lock = threading.Lock()


def _redis(read_timeout: float) -> redis.Redis:
    url = settings.TTS_REDIS_URL
    if not url:
        raise StreamUnavailable(
            "streamed speech needs Redis, and this installation has none: set HERALD_TTS_REDIS_URL "
            "(or CELERY_BROKER_URL to a Redis)"
        )
    key = (url, read_timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # The socket timeout is above the longest BLPOP, so only a Redis that stopped answering hits it.
            client = _clients[key] = redis.Redis.from_url(
                url, socket_connect_timeout=2.0, socket_timeout=read_timeout + 5.0
            )
    return client


class SpeechStream:
    """One request's audio on its way from a synthesis worker to a web process."""

    def __init__(self, stream_id: str, *, wait: float | None = None) -> None:
        self.id = stream_id
        self.key = f"herald:tts:{stream_id}"
        self.cancel_key = f"{self.key}:cancel"
        self.wait = settings.TTS_WAIT_SECONDS if wait is None else wait
        self.client = _redis(self.wait)

    @classmethod
    def open(cls) -> SpeechStream:
        """A new stream with a random id, for one request (StreamUnavailable when there is no Redis)."""
        return cls(secrets.token_urlsafe(16))

    @property
    def tag(self) -> str:
        """Enough of the id to follow one stream through the logs."""
        return self.id[:8]

    # --- the web process's side ------------------------------------------------------------------------

    def _take(self, timeout: float) -> tuple[bytes, bytes] | None:
        try:
            item = self.client.blpop([self.key], timeout=max(timeout, 0.01))
        except redis.RedisError as exc:
            raise StreamUnavailable(f"the Redis for streamed speech cannot be reached: {exc}") from exc
        if item is None:
            return None
        message = item[1]
        return message[:1], message[1:]

    def first_audio(self) -> bytes:
        """Wait for the worker's first audio; SpeechFailed (with the stream cancelled) when it fails, or when no
        worker answers or no audio comes within the wait."""
        deadline = time.monotonic() + self.wait
        taken = False
        while (left := deadline - time.monotonic()) > 0:
            message = self._take(left)
            if message is None:
                break
            kind, body = message
            if kind == STARTED:
                taken = True
            elif kind == AUDIO:
                return body
            else:
                self.cancel()
                raise self._failure(kind, body)
        self.cancel()
        if taken:
            raise SpeechFailed(f"the synthesis worker made no audio within {self.wait:g} s", status=504)
        raise SpeechFailed(
            f"no synthesis worker took the request within {self.wait:g} s (are synthesis workers running, "
            "or busy with a long render queue?)",
            status=504,
        )

    def rest(self) -> Iterator[bytes]:
        """The audio after the first, as the worker makes it, until its end. SpeechFailed when the worker fails
        or falls silent for the wait: the caller's answer is then cut short."""
        while True:
            message = self._take(self.wait)
            if message is None:
                log.warning("speech %s: the synthesis worker fell silent for %g s; cut short", self.tag, self.wait)
                raise SpeechFailed(f"the synthesis worker fell silent for {self.wait:g} s", status=504)
            kind, body = message
            if kind == AUDIO:
                yield body
            elif kind == END:
                return
            elif kind != STARTED:
                failure = self._failure(kind, body)
                log.warning("speech %s: failed after audio had been sent; cut short: %s", self.tag, failure.message)
                raise failure

    @staticmethod
    def _failure(kind: bytes, body: bytes) -> SpeechFailed:
        if kind == END:
            return SpeechFailed("the engine made no audio for this text", status=502)
        if kind == ERROR:
            error = json.loads(body)
            return SpeechFailed(error["error"], status=502 if error["permanent"] else 503)
        return SpeechFailed(f"unexpected message {kind!r} from the synthesis worker", status=502)

    def cancel(self) -> None:
        """Tell the worker to stop (the client went away, or the web stopped waiting) and drop what it queued."""
        try:
            with self.client.pipeline() as pipe:
                pipe.set(self.cancel_key, b"1", ex=STREAM_TTL_SECONDS)
                pipe.delete(self.key)
                pipe.execute()
        except redis.RedisError as exc:  # the keys expire anyway; the worker stops when nobody reads
            log.warning("speech %s: could not cancel: %s", self.tag, exc)

    # --- the synthesis worker's side ---------------------------------------------------------------------

    def cancelled(self) -> bool:
        """Whether the web process has given up on this stream."""
        return bool(self.client.exists(self.cancel_key))

    def push(self, kind: bytes, body: bytes = b"") -> bool:
        """Queue one message once the reader has room for it; False when the stream was cancelled, or its reader
        has read nothing for STREAM_TTL_SECONDS (then nothing is queued)."""
        waited_since = time.monotonic()
        while True:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(self.cancel_key)
                pipe.llen(self.key)
                cancelled, queued = pipe.execute()
            if cancelled:
                self.client.delete(self.key)  # anything pushed while the web was cancelling
                return False
            if queued < MAX_QUEUED_CHUNKS or kind != AUDIO:
                break
            if time.monotonic() - waited_since > STREAM_TTL_SECONDS:
                log.warning("speech %s: the reader stopped reading; giving up", self.tag)
                return False
            time.sleep(_ROOM_POLL_SECONDS)
        with self.client.pipeline() as pipe:
            pipe.rpush(self.key, kind + body)
            pipe.expire(self.key, STREAM_TTL_SECONDS)
            pipe.execute()
        return True

    def fail(self, message: str, *, permanent: bool) -> None:
        """Tell the reader why the speech failed."""
        self.push(ERROR, json.dumps({"error": message, "permanent": permanent}).encode())


@dataclass
class Spoken:
    """What one streamed speech came to, for the worker's log and the task's result: never the text."""

    chunks: int = 0
    samples: int = 0
    first_audio_seconds: float | None = None
    seconds: float = 0.0
    cancelled: bool = False
    error: str = ""


def speak(stream_id: str, voice_id: int, text: str, sample_rate: int) -> Spoken:
    """Say `text` with the voice into the stream as `sample_rate` PCM: a synthesis worker's half of POST
    /api/v1/tts."""
    stream = SpeechStream(stream_id)
    spoken = Spoken()
    began = time.monotonic()
    try:
        if stream.push(STARTED):
            _say(stream, voice_id, text, sample_rate, spoken)
        else:
            spoken.cancelled = True
    except redis.RedisError as exc:
        spoken.error = f"Redis failed while streaming: {exc}"
    spoken.seconds = round(time.monotonic() - began, 3)
    if spoken.cancelled:
        result = "cancelled by the client" if spoken.chunks else "cancelled by the client before any audio"
    else:
        result = f"failed ({spoken.error[:200]})" if spoken.error else "done"
    first = f", the first after {spoken.first_audio_seconds:.2f} s" if spoken.first_audio_seconds is not None else ""
    log.info(
        "speech %s: voice %s, %d characters, %d Hz: %s; %d chunks, %.2f s of audio in %.2f s%s",
        stream.tag, voice_id, len(text), sample_rate, result, spoken.chunks, spoken.samples / sample_rate,
        spoken.seconds, first,
    )
    return spoken


def _say(stream: SpeechStream, voice_id: int, text: str, sample_rate: int, spoken: Spoken) -> None:
    began = time.monotonic()

    def send(data: bytes) -> bool:
        if not data:
            return True
        if not stream.push(AUDIO, data):
            return False
        if spoken.first_audio_seconds is None:
            spoken.first_audio_seconds = round(time.monotonic() - began, 3)
        spoken.chunks += 1
        spoken.samples += len(data) // 2
        return True

    try:
        voice = Voice.objects.select_related("fill_voice").filter(pk=voice_id).first()
        if voice is None:
            raise EngineError(f"voice {voice_id} was deleted", permanent=True)
        problem = speech_problem(voice)  # again: the consent may have been revoked since the request was checked
        if problem:
            raise EngineError(f"voice {voice_id} cannot speak: {problem}", permanent=True)
        engine = get_engine(voice.engine)
        pcm = PcmStream(sample_rate)
        chunks = engine.stream(voice_spec(voice), text)
        try:
            said = all(send(pcm.feed(wave)) for wave in chunks) and send(pcm.finish()) and stream.push(END)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # stops the engine's own work (eSpeak's render thread) when the client has gone
        spoken.cancelled = not said
    except redis.RedisError:
        raise
    except (EngineError, AudioError) as exc:
        spoken.error = failure_reason(exc)
        stream.fail(spoken.error, permanent=not isinstance(exc, EngineError) or exc.permanent)
    except Exception as exc:  # a bug in an engine or here: the caller hears why rather than waiting for nothing
        log.exception("speech %s: voice %s failed", stream.tag, voice_id)
        spoken.error = failure_reason(exc)
        stream.fail(spoken.error, permanent=True)
