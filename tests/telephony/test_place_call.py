"""place_call against the local Twilio sandbox, through the real twilio library.

The attempt row is committed before the provider hears of the call; a call is never dialled twice, and an
ambiguous provider failure is never re-dialled.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign, DoNotCall
from synthesis.models import RenderedAudio
from telephony.actions import place_call, set_auth_token, settle_silent_attempts
from telephony.models import ProviderEvent
from tests.telephony.conftest import CALLER_ID, PHONE, closed_port_url

S = CallAttempt.Status


class FailingTwilio:
    """Answers every API request with one HTTP status and counts them."""

    def __init__(self, status: int) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(self.path)
                body = json.dumps({"code": 20500, "message": "Internal Server Error", "status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def failing_twilio(account) -> Iterator[Callable[[int], FailingTwilio]]:
    servers: list[FailingTwilio] = []

    def make(status: int) -> FailingTwilio:
        server = FailingTwilio(status)
        servers.append(server)
        account.api_base_url = server.url
        account.save(update_fields=["api_base_url"])
        return server

    yield make
    for server in servers:
        server.close()


@pytest.mark.django_db
def test_places_a_claimed_call_with_the_attempt_written_first(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)

    assert place_call(claimed.pk) == "placed"

    (dialled,) = sandbox.calls()
    (attempt,) = CallAttempt.objects.filter(call=claimed)
    claimed.refresh_from_db()
    assert attempt.provider_call_id == dialled["sid"]
    assert attempt.number == 1 and attempt.provider == "twilio"
    assert attempt.status == S.QUEUED and attempt.placed_at is not None
    assert [status for status, _ in attempt.timeline] == ["created", "queued"]
    assert (claimed.state, claimed.attempts_made) == (Call.State.IN_PROGRESS, 1)
    assert (dialled["to"], dialled["from"]) == (PHONE, CALLER_ID)
    assert dialled["machine_detection"] == "Enable"


@pytest.mark.django_db
def test_a_callee_is_called_from_the_campaigns_number_that_shares_the_most_digits_with_theirs(
    claimed, make_sandbox, unreachable_public_url
):
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)
    mobile = "+8613800000000"  # the callee is +8613800138000: a mobile number, like this one
    claimed.campaign.caller_id_pool = ["+862161234568", mobile]
    claimed.campaign.save(update_fields=["caller_id_pool"])

    assert place_call(claimed.pk) == "placed"

    (dialled,) = sandbox.calls()
    assert (dialled["to"], dialled["from"]) == (PHONE, mobile)


@pytest.mark.django_db
def test_the_provider_is_asked_with_signed_urls_for_this_attempt(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)
    place_call(claimed.pk)
    attempt = CallAttempt.objects.get(call=claimed)
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    status_url = f"{unreachable_public_url}/telephony/twilio/{attempt.pk}/status"
    assert {url for url, _, _ in dialled["callbacks"]} == {status_url}
    assert dialled["audio"][0]["url"].startswith(f"{unreachable_public_url}/audio/{claimed.audio_id}.wav?expires=")


@pytest.mark.django_db
def test_a_call_that_is_not_claimed_is_not_dialled(make_call, audio, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    ready = make_call(state=Call.State.READY, attempts_made=0, audio=audio)

    assert place_call(ready.pk) == "not claimed"
    assert place_call(10**9) == "not claimed"

    assert sandbox.calls() == []
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db
def test_placing_twice_dials_once(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()

    assert place_call(claimed.pk) == "placed"
    assert place_call(claimed.pk) == "not claimed"

    assert len(sandbox.calls()) == 1
    assert CallAttempt.objects.filter(call=claimed).count() == 1


def place_from_two_workers_at_once(call_id: int) -> list[str]:
    """Run place_call for one call in two threads released together; returns both results."""
    barrier = threading.Barrier(2)
    results: list[str] = []

    def worker() -> None:
        try:
            barrier.wait(5)
            results.append(place_call(call_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_workers_placing_the_same_call_at_once_dial_once(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    assert sorted(place_from_two_workers_at_once(claimed.pk)) == ["not claimed", "placed"]
    assert len(sandbox.calls()) == 1
    assert CallAttempt.objects.filter(call=claimed).count() == 1


@pytest.mark.django_db
def test_do_not_call_number_is_never_dialled(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    DoNotCall.objects.create(phone=PHONE, source="admin")

    assert place_call(claimed.pk) == "do not call"

    claimed.refresh_from_db()
    assert (claimed.state, claimed.outcome) == (Call.State.DONE, Call.Outcome.DO_NOT_CALL)
    assert sandbox.calls() == []
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Campaign.Status.PAUSED, Campaign.Status.SCHEDULED])
def test_campaign_not_running_puts_the_call_back(claimed, make_sandbox, unreachable_public_url, status):
    sandbox = make_sandbox()
    Campaign.objects.filter(pk=claimed.campaign_id).update(status=status)

    assert place_call(claimed.pk) == "campaign not running"

    claimed.refresh_from_db()
    assert (claimed.state, claimed.claimed_at, claimed.attempts_made) == (Call.State.READY, None, 0)
    assert sandbox.calls() == []
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Campaign.Status.CANCELLED, Campaign.Status.COMPLETED])
def test_call_claimed_as_the_campaign_ends_is_cancelled(claimed, make_sandbox, unreachable_public_url, status):
    """cancel_campaign and the end-of-campaign sweep only cancel ready calls: a claimed one must not be left ready."""
    sandbox = make_sandbox()
    Campaign.objects.filter(pk=claimed.campaign_id).update(status=status)

    assert place_call(claimed.pk) == "campaign over"

    claimed.refresh_from_db()
    assert claimed.state == Call.State.CANCELLED
    assert status in claimed.error
    assert sandbox.calls() == []
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db
def test_closed_window_puts_the_call_back(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    Call.objects.filter(pk=claimed.pk).update(timezone="Not/AZone")  # unknown zones are never open

    assert place_call(claimed.pk) == "window closed"

    claimed.refresh_from_db()
    assert claimed.state == Call.State.READY
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_audio_not_ready_waits_for_rendering(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    RenderedAudio.objects.filter(pk=claimed.audio.pk).update(state=RenderedAudio.State.RENDERING)

    assert place_call(claimed.pk) == "audio not ready"

    claimed.refresh_from_db()
    assert claimed.state == Call.State.RENDERING
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_unreachable_provider_fails_the_attempt_and_retries_later(claimed, account, unreachable_public_url):
    account.api_base_url = closed_port_url()
    account.save()
    before = timezone.now()

    assert place_call(claimed.pk) == "failed"

    (attempt,) = CallAttempt.objects.filter(call=claimed)
    claimed.refresh_from_db()
    assert attempt.status == S.FAILED
    assert attempt.provider_call_id is None
    assert "cannot reach Twilio" in attempt.error_message
    assert claimed.state == Call.State.READY
    assert claimed.next_attempt_at >= before + claimed.campaign.retry_delay
    assert claimed.attempts_made == 1


@pytest.mark.django_db
def test_unreachable_provider_on_the_last_attempt_fails_the_call(make_call, audio, account, unreachable_public_url):
    account.api_base_url = closed_port_url()
    account.save()
    last = make_call(state=Call.State.DIALING, attempts_made=2, audio=audio)

    assert place_call(last.pk) == "failed"

    last.refresh_from_db()
    assert (last.state, last.outcome, last.attempts_made) == (Call.State.FAILED, Call.Outcome.FAILED, 3)
    assert CallAttempt.objects.get(call=last).number == 3


@pytest.mark.django_db
def test_unresolvable_provider_host_is_not_ambiguous(claimed, account, unreachable_public_url, monkeypatch, settings):
    """No connection was made, so nobody was dialled: retry later, like a refused connection."""
    settings.TWILIO_API_HOSTS = ["twilio.herald.invalid"]

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    account.api_base_url = "https://twilio.herald.invalid"
    account.save()

    assert place_call(claimed.pk) == "failed"

    claimed.refresh_from_db()
    assert CallAttempt.objects.get(call=claimed).status == S.FAILED
    assert claimed.state == Call.State.READY


@pytest.mark.django_db
def test_server_error_is_ambiguous_and_never_redialled(claimed, failing_twilio, unreachable_public_url):
    server = failing_twilio(500)

    assert place_call(claimed.pk) == "ambiguous"

    assert len(server.requests) == 1  # neither we nor the twilio library retried the create
    (attempt,) = CallAttempt.objects.filter(call=claimed)
    claimed.refresh_from_db()
    assert attempt.status == S.UNKNOWN
    assert "500" in attempt.error_message
    assert claimed.state == Call.State.IN_PROGRESS  # not back to ready: it may be ringing right now
    assert place_call(claimed.pk) == "not claimed"
    assert len(server.requests) == 1

    assert settle_silent_attempts() == 0  # too early to give up on it
    later = timezone.now() + timedelta(hours=1)
    assert settle_silent_attempts(now=later) == 1

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert attempt.status == S.FAILED
    assert "never confirmed" in attempt.error_message and "not re-dialled" in attempt.error_message
    assert (claimed.state, claimed.outcome) == (Call.State.FAILED, Call.Outcome.FAILED)
    assert "not re-dialled" in claimed.error
    assert len(server.requests) == 1
    assert settle_silent_attempts(now=later) == 0


@pytest.mark.django_db
def test_ambiguous_attempt_is_settled_by_its_callbacks(claimed, failing_twilio, unreachable_public_url, send_status):
    """The create request got a 500 but Twilio did place the call: its callbacks finish the attempt."""
    failing_twilio(500)
    assert place_call(claimed.pk) == "ambiguous"
    attempt = CallAttempt.objects.get(call=claimed)

    send_status(attempt, "completed", CallSid="CA" + "5" * 32, AnsweredBy="human", CallDuration="11")

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert (attempt.status, attempt.provider_call_id) == (S.COMPLETED, "CA" + "5" * 32)
    assert (claimed.state, claimed.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
    later = timezone.now() + timedelta(hours=3)
    assert settle_silent_attempts(now=later) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 503])
def test_rate_limited_provider_is_retried_not_ambiguous(claimed, failing_twilio, unreachable_public_url, status):
    failing_twilio(status)

    assert place_call(claimed.pk) == "failed"

    claimed.refresh_from_db()
    assert CallAttempt.objects.get(call=claimed).status == S.FAILED
    assert claimed.state == Call.State.READY


@pytest.mark.django_db
def test_rejected_number_is_a_permanent_failure(make_call, audio, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    bad = make_call(phone="12345", state=Call.State.DIALING, attempts_made=0, audio=audio)

    assert place_call(bad.pk) == "failed"

    (attempt,) = CallAttempt.objects.filter(call=bad)
    bad.refresh_from_db()
    assert attempt.status == S.FAILED and attempt.error_code == "21211"
    assert "Invalid 'To' Phone Number" in attempt.error_message
    assert (bad.state, bad.outcome) == (Call.State.FAILED, Call.Outcome.INVALID_NUMBER)
    assert "Invalid 'To' Phone Number" in bad.error
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_wrong_credentials_pause_the_campaign_and_keep_the_call(claimed, account, make_sandbox, unreachable_public_url):
    # Every call would meet them: the campaign pauses (tests/telephony/test_twilio_account_errors.py has the rest).
    make_sandbox()
    set_auth_token(account, "not-the-sandbox-token")

    assert place_call(claimed.pk) == "account refused"

    claimed.refresh_from_db()
    assert not CallAttempt.objects.filter(call=claimed).exists()
    assert (claimed.state, claimed.attempts_made) == (Call.State.READY, 0) and "20003" in claimed.error
    campaign = Campaign.objects.get(pk=claimed.campaign_id)
    assert campaign.status == Campaign.Status.PAUSED and "20003" in campaign.paused_reason


@pytest.mark.django_db
def test_missing_credentials_pause_the_campaign_with_the_reason(claimed, account, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    account.auth_token_encrypted = ""
    account.auth_token_env = "HERALD_TEST_NO_SUCH_TOKEN"
    account.save()

    assert place_call(claimed.pk) == "account refused"

    claimed.refresh_from_db()
    assert not CallAttempt.objects.filter(call=claimed).exists()
    assert claimed.state == Call.State.READY and "HERALD_TEST_NO_SUCH_TOKEN" in claimed.error
    campaign = Campaign.objects.get(pk=claimed.campaign_id)
    assert campaign.status == Campaign.Status.PAUSED and "HERALD_TEST_NO_SUCH_TOKEN" in campaign.paused_reason
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_silent_attempt_is_settled_from_what_the_provider_says(claimed, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox(answer=0, busy=1.0, no_answer=0, machine=0)
    place_call(claimed.pk)
    assert sandbox.wait_idle(10)  # the busy callback went nowhere: Herald never heard it
    attempt = CallAttempt.objects.get(call=claimed)
    assert attempt.status == S.QUEUED

    later = timezone.now() + timedelta(hours=1)
    assert settle_silent_attempts(now=later) == 1

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert attempt.status == S.BUSY
    assert (claimed.state, claimed.outcome) == (Call.State.READY, Call.Outcome.BUSY)


@pytest.mark.django_db(transaction=True)
def test_callbacks_from_the_sandbox_finish_the_call(claimed, make_sandbox, live_server, settings):
    """End to end through HTTP: signed callbacks land on the webhooks, the callee presses 9."""
    settings.PUBLIC_URL = live_server.url
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0, digits={"9": 1.0})

    assert place_call(claimed.pk) == "placed"
    assert sandbox.wait_idle(10)

    (dialled,) = sandbox.calls()
    assert dialled["audio_fetched"] and dialled["digits"] == "9"
    assert [status for _, _, status in dialled["callbacks"]] == [204, 204, 204, 204]
    assert [r["status"] for r in dialled["requests"] if r["kind"] == "gather-action"] == [200]
    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert attempt.status == S.COMPLETED and attempt.answered_by == "human" and attempt.digits == "9"
    assert attempt.listened_to_end and attempt.duration and attempt.duration > 0
    assert (claimed.state, claimed.outcome) == (Call.State.DONE, Call.Outcome.OPTED_OUT)
    assert DoNotCall.objects.filter(phone=PHONE).exists()
    events = ProviderEvent.objects.filter(attempt=attempt)
    # 4 status callbacks, the gather and the async answering-machine report (human)
    assert events.count() == 6 and all(e.signature_valid for e in events)


@pytest.mark.django_db
def test_attempt_the_provider_has_no_record_of_is_closed_not_redialled(claimed, make_sandbox, unreachable_public_url):
    first = make_sandbox(answer=0, busy=1.0, no_answer=0, machine=0)
    place_call(claimed.pk)
    assert first.wait_idle(10)
    first.stop()
    fresh = make_sandbox()  # restarted: it has never heard of the call

    assert settle_silent_attempts(now=timezone.now() + timedelta(hours=1)) == 1

    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert attempt.status == S.FAILED and "no record of this call" in attempt.error_message
    assert (claimed.state, claimed.outcome) == (Call.State.FAILED, Call.Outcome.FAILED)
    assert fresh.calls() == []


@pytest.mark.django_db
def test_provider_outage_while_settling_leaves_the_attempt_open(claimed, account, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox(answer=0, busy=1.0, no_answer=0, machine=0)
    place_call(claimed.pk)
    assert sandbox.wait_idle(10)
    account.api_base_url = closed_port_url()
    account.save()

    assert settle_silent_attempts(now=timezone.now() + timedelta(hours=1)) == 0

    assert CallAttempt.objects.get(call=claimed).status == S.QUEUED
    claimed.refresh_from_db()
    assert claimed.state == Call.State.IN_PROGRESS


@pytest.mark.django_db
def test_missing_credentials_do_not_stop_settling_other_attempts(make_call, account):
    account.auth_token_encrypted = ""
    account.save()
    asked = make_call(phone="+8613800138001")
    CallAttempt.objects.create(call=asked, number=1, provider="twilio", status=S.RINGING, provider_call_id="CA" + "7" * 32)
    lost = make_call(phone="+8613800138002")
    CallAttempt.objects.create(call=lost, number=1, provider="twilio", status=S.UNKNOWN)

    assert settle_silent_attempts(now=timezone.now() + timedelta(hours=1)) == 1

    assert Call.objects.get(pk=asked.pk).state == Call.State.IN_PROGRESS
    assert Call.objects.get(pk=lost.pk).state == Call.State.FAILED
