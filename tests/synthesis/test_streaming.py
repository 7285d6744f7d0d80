"""synthesis.streaming's Redis protocol on a real Redis, both halves in this process: the web's waits and the
worker's bound and cancel (the whole path, with a Celery worker, is in tests/campaigns/test_api_tts.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from synthesis import streaming
from synthesis.streaming import AUDIO, END, ERROR, MAX_QUEUED_CHUNKS, STARTED, SpeechFailed, SpeechStream


@pytest.fixture
def stream() -> Iterator[SpeechStream]:
    opened = SpeechStream.open()
    yield opened
    opened.client.delete(opened.key, opened.cancel_key)


def worker_side(stream: SpeechStream) -> SpeechStream:
    return SpeechStream(stream.id)


def test_the_web_gets_the_first_audio_then_the_rest_until_the_end(stream):
    worker = worker_side(stream)
    for kind, body in ((STARTED, b""), (AUDIO, b"\x01\x00"), (AUDIO, b"\x02\x00"), (AUDIO, b"\x03\x00"), (END, b"")):
        assert worker.push(kind, body)
    assert stream.first_audio() == b"\x01\x00"
    assert list(stream.rest()) == [b"\x02\x00", b"\x03\x00"]
    assert not stream.client.exists(stream.key)  # all read: nothing left behind


@pytest.mark.parametrize(("permanent", "status"), [(True, 502), (False, 503)])
def test_an_error_before_audio_is_the_engines_message_with_its_status(stream, permanent, status):
    worker = worker_side(stream)
    worker.push(STARTED)
    worker.fail("GPU out of memory", permanent=permanent)
    with pytest.raises(SpeechFailed) as failed:
        stream.first_audio()
    assert (failed.value.message, failed.value.status) == ("GPU out of memory", status)
    assert worker.cancelled()


def test_the_end_without_audio_is_a_failure(stream):
    worker_side(stream).push(END)
    with pytest.raises(SpeechFailed, match="made no audio") as failed:
        stream.first_audio()
    assert failed.value.status == 502


def test_waits_end_in_504_saying_whether_a_worker_took_it():
    quiet = SpeechStream(SpeechStream.open().id, wait=0.3)
    with pytest.raises(SpeechFailed, match="no synthesis worker took the request within 0.3 s") as failed:
        quiet.first_audio()
    assert failed.value.status == 504 and quiet.cancelled()
    taken = SpeechStream(SpeechStream.open().id, wait=0.3)
    worker_side(taken).push(STARTED)
    with pytest.raises(SpeechFailed, match="the synthesis worker made no audio within 0.3 s"):
        taken.first_audio()
    for s in (quiet, taken):
        s.client.delete(s.key, s.cancel_key)


def test_a_failure_after_audio_breaks_the_rest_off(stream):
    worker = worker_side(stream)
    worker.push(AUDIO, b"\x01\x00")
    worker.push(AUDIO, b"\x02\x00")
    worker.push(ERROR, json.dumps({"error": "decoder failed", "permanent": True}).encode())
    assert stream.first_audio() == b"\x01\x00"
    rest = stream.rest()
    assert next(rest) == b"\x02\x00"
    with pytest.raises(SpeechFailed, match="decoder failed"):
        next(rest)
    silent = SpeechStream(stream.id, wait=0.3)
    with pytest.raises(SpeechFailed, match="fell silent for 0.3 s"):
        next(silent.rest())


def test_the_worker_waits_while_the_reader_is_behind_and_stops_when_cancelled(stream):
    worker = worker_side(stream)
    for _ in range(MAX_QUEUED_CHUNKS):
        assert worker.push(AUDIO, b"\x00\x00")
    results: list[bool] = []
    blocked = threading.Thread(target=lambda: results.append(worker.push(AUDIO, b"\x01\x00")))
    blocked.start()
    time.sleep(0.3)
    assert blocked.is_alive() and stream.client.llen(stream.key) == MAX_QUEUED_CHUNKS  # no room: it waits
    assert stream.first_audio() == b"\x00\x00"  # one read makes room
    blocked.join(timeout=5)
    assert results == [True] and stream.client.llen(stream.key) == MAX_QUEUED_CHUNKS

    blocked = threading.Thread(target=lambda: results.append(worker.push(AUDIO, b"\x02\x00")))
    blocked.start()
    time.sleep(0.2)
    stream.cancel()  # the client went away
    blocked.join(timeout=5)
    assert results == [True, False]
    assert worker.push(END) is False  # nothing more goes in after a cancel
    assert not stream.client.exists(stream.key) and stream.client.ttl(stream.cancel_key) > 0


def test_no_redis_configured_is_said_plainly(settings):
    settings.TTS_REDIS_URL = ""
    with pytest.raises(streaming.StreamUnavailable, match="streamed speech needs Redis"):
        SpeechStream.open()


def test_an_unreachable_redis_is_unavailable_not_a_crash(settings):
    settings.TTS_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with pytest.raises(streaming.StreamUnavailable, match="cannot be reached"):
        SpeechStream(SpeechStream.open().id, wait=0.2).first_audio()

