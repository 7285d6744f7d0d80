"""Hostile webhook requests: huge bodies are refused before anything reads them, malformed signatures are a
plain 403, out-of-range numbers never reach a column, and a finished attempt's keys never change."""

from __future__ import annotations

import io
import logging
from urllib.parse import urlencode

import pytest
from django.test import RequestFactory
from django.test.client import ClientHandler

from campaigns.models import CallAttempt, DoNotCall
from telephony.models import ProviderEvent
from tests.telephony.conftest import FORM, PHONE, gather_path, status_path, twilio_params

pytestmark = pytest.mark.django_db

BIG = 49 * 1024 * 1024


class CountingInput(io.RawIOBase):
    """wsgi.input of `size` bytes made on demand (never held in memory), counting what the app reads."""

    def __init__(self, size: int, chunk: bytes = b"a") -> None:
        self.left, self.read_bytes, self.chunk = size, 0, chunk

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        self.read_bytes += n
        return (self.chunk * n)[:n]

    def readline(self, limit: int = -1) -> bytes:
        return self.read(limit if limit and limit > 0 else 65536)


def run_wsgi(path: str, body: CountingInput, content_type: str, length: int | None, **headers: str) -> int:
    """The request through the whole Django stack (middleware included) with this body as wsgi.input."""
    environ = RequestFactory().generic("POST", path, b"", content_type=content_type).environ
    environ["wsgi.input"] = body
    if length is None:
        environ.pop("CONTENT_LENGTH", None)
    else:
        environ["CONTENT_LENGTH"] = str(length)
    environ.update(headers)
    return ClientHandler()(environ).status_code


@pytest.mark.parametrize("content_type", [FORM, "multipart/form-data; boundary=xyz"])
def test_huge_unsigned_body_is_refused_before_it_is_read(attempt, public_url, content_type, settings):
    body = CountingInput(BIG, b"--xyz\r\n" if content_type.startswith("multipart") else b"a")

    status = run_wsgi(status_path(attempt.pk), body, content_type, BIG)

    assert status == 413
    assert body.read_bytes <= settings.WEBHOOK_MAX_BODY_BYTES + 1
    assert not ProviderEvent.objects.exists()


def test_chunked_body_without_length_is_refused_unread(attempt, public_url, settings):
    body = CountingInput(BIG)

    status = run_wsgi(gather_path(attempt.pk), body, FORM, None, HTTP_TRANSFER_ENCODING="chunked")

    assert status == 411
    assert body.read_bytes <= settings.WEBHOOK_MAX_BODY_BYTES + 1


def test_body_just_under_the_limit_is_still_signature_checked(client, attempt, public_url, settings):
    params = {**twilio_params(attempt, CallStatus="completed"), "pad": "x" * (settings.WEBHOOK_MAX_BODY_BYTES - 1000)}

    response = client.post(status_path(attempt.pk), urlencode(params), content_type=FORM)

    assert response.status_code == 403


@pytest.mark.parametrize("signature", ["é" * 28, "\u00ff" * 300, "x" * 10_000, "AAAA=\x00"])
def test_malformed_twilio_signature_is_a_bare_403(client, attempt, public_url, signature, caplog):
    params = twilio_params(attempt, CallStatus="completed")
    with caplog.at_level(logging.WARNING, logger="telephony.views"):
        response = client.post(
            status_path(attempt.pk), urlencode(params), content_type=FORM, HTTP_X_TWILIO_SIGNATURE=signature
        )

    assert response.status_code == 403
    assert response.content == b""
    assert "X-Twilio-Signature" in caplog.text
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize(
    "duration", ["1" * 30, "99999999999999999999", "-5", "١٢", "²", " 12e9 ", "3" * 19]
)
def test_out_of_range_call_duration_is_recorded_not_a_500(attempt, send_status, duration, caplog):
    with caplog.at_level(logging.WARNING, logger="telephony.views"):
        send_status(attempt, "completed", AnsweredBy="human", CallDuration=duration)

    attempt.refresh_from_db()
    assert attempt.status == CallAttempt.Status.COMPLETED and attempt.duration is None
    (event,) = ProviderEvent.objects.all()
    assert event.payload["CallDuration"] == duration and event.applied
    assert "CallDuration" in event.note and "CallDuration" in caplog.text


def test_call_duration_in_range_is_kept(attempt, send_status):
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="86400")

    attempt.refresh_from_db()
    assert attempt.duration == 86400
    assert ProviderEvent.objects.get().note == ""


def test_late_gather_does_not_change_a_finished_attempts_keys(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_gather(attempt, "")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="20")
    attempt.refresh_from_db()
    before = (attempt.digits, attempt.listened_to_end, attempt.timeline)

    send_gather(attempt, "1")

    attempt.refresh_from_db()
    assert (attempt.digits, attempt.listened_to_end, attempt.timeline) == before
    assert [e.applied for e in ProviderEvent.objects.filter(kind=ProviderEvent.Kind.GATHER)] == [True, False]


def test_late_gather_with_other_digits_keeps_the_first(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_gather(attempt, "1")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="20")
    attempt.refresh_from_db()
    timeline = attempt.timeline

    send_gather(attempt, "2")

    attempt.refresh_from_db()
    assert attempt.digits == "1" and attempt.timeline == timeline


def test_late_opt_out_still_reaches_the_list_but_not_the_attempt(attempt, send_status, send_gather):
    send_status(attempt, "in-progress", AnsweredBy="human")
    send_gather(attempt, "")
    send_status(attempt, "completed", AnsweredBy="human", CallDuration="20")

    send_gather(attempt, "9")

    attempt.refresh_from_db()
    assert attempt.digits == ""
    assert DoNotCall.objects.filter(phone=PHONE, source="keypress").exists()
