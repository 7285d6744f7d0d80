"""The dial ledger with Twilio, against the local sandbox through the real twilio library.

Twilio has no idempotency key on call creation: after a create that timed out or got a 5xx, the call is looked
up (by To, From and the time the attempt began) before anything else. Found, the attempt adopts it; not there
on two looks, the attempt was never placed and the call may be dialled again. 20429 is retried with backoff
inside place; 21211 and 13224 say the number is invalid.
"""

from __future__ import annotations

import hashlib
import io
import socket
import wave
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from campaigns.models import Call, CallAttempt
from synthesis.models import RenderedAudio
from telephony import outcomes
from telephony.actions import NO_CALL_YET, place_call, settle_silent_attempts
from telephony.providers import twilio as twilio_provider
from telephony.providers.base import Dial
from telephony.providers.twilio import TwilioProvider
from tests.telephony.conftest import CALLER_ID, PHONE

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
# Every callee is busy: the call ends without fetching audio, which these tests do not serve.
BUSY = {"answer": 0, "busy": 1.0, "no_answer": 0, "machine": 0}


@pytest.fixture
def unreachable_public_url(settings) -> str:
    """Callbacks go nowhere: what Herald learns here, it learns by asking the provider."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.PUBLIC_URL = f"http://127.0.0.1:{port}"
    return settings.PUBLIC_URL


@pytest.fixture
def audio(settings, tmp_path) -> RenderedAudio:
    settings.MEDIA_ROOT = tmp_path
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 4000)
    data = buf.getvalue()
    key = hashlib.sha256(data + b"ledger-tests").hexdigest()
    relative = f"ledger-tests/{key}.wav"
    (Path(tmp_path) / relative).parent.mkdir(parents=True, exist_ok=True)
    (Path(tmp_path) / relative).write_bytes(data)
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text="您好", state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=0.5,
    )


@pytest.fixture
def claimed(make_call, audio, account, unreachable_public_url) -> Call:
    """A call the sweep has claimed, on an account fast enough that pacing never holds these tests up."""
    account.calls_per_second = 100
    account.save(update_fields=["calls_per_second"])
    return make_call(state=Call.State.DIALING, attempts_made=0, audio=audio, claimed_at=timezone.now())


def reclaim(call: Call) -> None:
    """What the sweep does when the call is due again."""
    Call.objects.filter(pk=call.pk, state=Call.State.READY).update(state=Call.State.DIALING, claimed_at=timezone.now())


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


# --- find --------------------------------------------------------------------------------------------


def dial_for(to: str = PHONE, caller_id: str = CALLER_ID) -> Dial:
    return Dial(attempt_id=1, to=to, caller_id=caller_id, audio_url="")


def test_find_lists_calls_to_the_number_from_our_caller_id_in_the_attempts_time(
    account, make_sandbox, unreachable_public_url, claimed
):
    sandbox = make_sandbox(**BUSY)
    provider = TwilioProvider(account)
    since = timezone.now()
    assert place_call(claimed.pk) == "placed"
    assert sandbox.wait_idle(10)
    (dialled,) = sandbox.calls()

    (found,) = provider.find(dial_for(), since=since, until=since + timedelta(seconds=30))
    assert (found.provider_call_id, found.status, found.duration) == (dialled["sid"], "busy", 0)
    assert abs(found.created_at - since) < timedelta(seconds=2)

    assert provider.find(dial_for(to="+8613800138999"), since=since, until=since) == []
    assert provider.find(dial_for(caller_id="+862160000000"), since=since, until=since) == []
    # Outside the window, allowing for clock skew between us and Twilio.
    assert provider.find(dial_for(), since=since + timedelta(minutes=5), until=since + timedelta(minutes=6)) == []
    assert provider.find(dial_for(), since=since - timedelta(minutes=6), until=since - timedelta(minutes=5)) == []


def test_find_sees_a_call_still_queued_which_has_no_start_time(account, make_sandbox, claimed):
    sandbox = make_sandbox(**BUSY, queue_delay=3.0)
    since = timezone.now()
    assert place_call(claimed.pk) == "placed"

    (found,) = TwilioProvider(account).find(dial_for(), since=since, until=since + timedelta(seconds=30))

    assert found.status == "queued"
    assert found.provider_call_id == sandbox.calls()[0]["sid"]


def test_find_reads_every_page(account, make_sandbox, claimed, monkeypatch):
    monkeypatch.setattr(twilio_provider, "LIST_PAGE_SIZE", 2)
    sandbox = make_sandbox(**BUSY)
    since = timezone.now()
    for _ in range(3):
        assert place_call(claimed.pk) == "placed"
        outcomes.apply_status(CallAttempt.objects.filter(call=claimed).latest("number").pk, S.BUSY)
        reclaim(claimed)
    assert sandbox.wait_idle(10)

    found = TwilioProvider(account).find(dial_for(), since=since, until=since + timedelta(seconds=60))

    assert sorted(f.provider_call_id for f in found) == sorted(c["sid"] for c in sandbox.calls())
    assert [f.created_at for f in found] == sorted(f.created_at for f in found)


# --- ambiguous creates, settled by looking the call up ----------------------------------------------


@pytest.mark.parametrize("fault", ["500-after", "timeout"])
def test_ambiguous_create_that_did_dial_adopts_the_call(fault, claimed, make_sandbox, monkeypatch):
    monkeypatch.setattr(twilio_provider, "HTTP_TIMEOUT", 1.0)
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: [fault]}, create_hang_seconds=3.0)

    assert place_call(claimed.pk) == "ambiguous"
    attempt = CallAttempt.objects.get(call=claimed)
    assert (attempt.status, attempt.provider_call_id) == (S.UNKNOWN, None)
    assert sandbox.wait_idle(10)
    (dialled,) = sandbox.calls()
    assert dialled["create_fault"] == fault

    assert settle_silent_attempts() == 0  # the early pass waits a few seconds after the attempt began
    assert settle_silent_attempts(now=later(11)) == 1

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert (attempt.provider_call_id, attempt.status) == (dialled["sid"], S.BUSY)
    assert attempt.placed_at is not None
    assert (claimed.state, claimed.outcome, claimed.attempts_made) == (Call.State.READY, Call.Outcome.BUSY, 1)
    assert len(sandbox.calls()) == 1  # nobody was dialled again
    assert settle_silent_attempts(now=later(3600)) == 0


def test_ambiguous_create_that_never_dialled_fails_after_two_looks_and_is_retried(claimed, make_sandbox):
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: ["500-before"]})

    assert place_call(claimed.pk) == "ambiguous"
    attempt = CallAttempt.objects.get(call=claimed)
    assert sandbox.calls() == [] and len(sandbox.create_requests()) == 1

    # The first look finds nothing: not conclusive yet (a list can lag a create), so it is only noted.
    assert settle_silent_attempts(now=later(11)) == 0
    attempt.refresh_from_db()
    assert attempt.status == S.UNKNOWN
    assert [mark for mark, _ in attempt.timeline] == ["created", NO_CALL_YET]
    assert settle_silent_attempts(now=later(15)) == 0  # too soon after the first look
    # The second look, long enough after the first, agrees: never placed.
    assert settle_silent_attempts(now=later(22)) == 1

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.FAILED, "never-placed")
    assert "never placed" in attempt.error_message
    assert claimed.state == Call.State.READY  # a transient failure: the call is dialled again
    assert claimed.attempts_made == 1

    reclaim(claimed)
    assert place_call(claimed.pk) == "placed"
    (dialled,) = sandbox.calls()
    assert CallAttempt.objects.get(call=claimed, number=2).provider_call_id == dialled["sid"]


def test_a_call_another_attempt_owns_is_not_adopted(claimed, make_sandbox):
    """Attempt 1 dialled; attempt 2's create got a 500 before Twilio acted. Attempt 1's call, a few seconds
    older and to the same number, is in the lookup window, but it is attempt 1's."""
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: [None, "500-before"]})
    claimed.campaign.retry_delay = timedelta(0)
    claimed.campaign.save(update_fields=["retry_delay"])
    assert place_call(claimed.pk) == "placed"
    first = CallAttempt.objects.get(call=claimed, number=1)
    outcomes.apply_status(first.pk, S.BUSY)  # its callback, which cannot reach us here
    reclaim(claimed)
    assert place_call(claimed.pk) == "ambiguous"
    second = CallAttempt.objects.get(call=claimed, number=2)

    assert settle_silent_attempts(now=later(11)) == 0
    assert settle_silent_attempts(now=later(22)) == 1

    second.refresh_from_db()
    assert (second.status, second.provider_call_id, second.error_code) == (S.FAILED, None, "never-placed")
    assert len(sandbox.calls()) == 1


def test_callbacks_that_arrive_between_two_looks_win(claimed, make_sandbox, send_status):
    make_sandbox(**BUSY, create_fault_script={PHONE: ["500-before"]})
    assert place_call(claimed.pk) == "ambiguous"
    attempt = CallAttempt.objects.get(call=claimed)
    assert settle_silent_attempts(now=later(11)) == 0

    # (Say the list lagged and the call does exist.) Its callbacks adopt it and move it on.
    send_status(attempt, "ringing", CallSid="CA" + "4" * 32)

    assert settle_silent_attempts(now=later(22)) == 0
    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_call_id) == (S.RINGING, "CA" + "4" * 32)


def test_ambiguous_attempt_whose_lookups_fail_is_closed_when_stale_without_redialling(
    claimed, make_sandbox, account
):
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: ["500-after"]})
    assert place_call(claimed.pk) == "ambiguous"
    sandbox.stop()  # and Twilio stays unreachable

    assert settle_silent_attempts(now=later(11)) == 0
    assert settle_silent_attempts(now=later(3600)) == 1

    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert attempt.status == S.FAILED and "never confirmed" in attempt.error_message
    assert claimed.state == Call.State.FAILED  # it may have rung: not dialled again


def test_a_worker_that_died_after_writing_the_attempt_is_settled_when_stale(
    claimed, make_sandbox, settings
):
    """A CREATED attempt with no call id: its worker died before or during the create. Looked up once stale."""
    sandbox = make_sandbox(**BUSY)
    attempt = CallAttempt.objects.create(call=claimed, number=1, provider="twilio", status=S.CREATED)
    Call.objects.filter(pk=claimed.pk).update(state=Call.State.IN_PROGRESS, attempts_made=1)

    assert settle_silent_attempts(now=later(11)) == 0  # maybe still in flight: left alone until stale
    stale = settings.DIAL_STALE_SECONDS + 1
    assert settle_silent_attempts(now=later(stale)) == 0
    assert settle_silent_attempts(now=later(stale + 11)) == 1

    attempt.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.FAILED, "never-placed")
    assert Call.objects.get(pk=claimed.pk).state == Call.State.READY
    assert sandbox.calls() == []


# --- error codes from create -------------------------------------------------------------------------


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The backoff the provider sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(twilio_provider, "time", SimpleNamespace(sleep=slept.append))
    return slept


def test_rate_limited_create_is_retried_with_backoff_and_dials_once(claimed, make_sandbox, sleeps):
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: ["20429", "20429"]})

    assert place_call(claimed.pk) == "placed"

    assert [r["fault"] for r in sandbox.create_requests()] == ["20429", "20429", None]
    assert len(sandbox.calls()) == 1
    assert len(sleeps) == 2
    assert all(0.8 * base <= slept <= 1.2 * base for slept, base in zip(sleeps, (0.5, 1.0), strict=True))
    attempt = CallAttempt.objects.get(call=claimed)
    assert attempt.status == S.QUEUED and attempt.provider_call_id == sandbox.calls()[0]["sid"]


def test_rate_limited_create_that_stays_refused_is_a_transient_failure(claimed, make_sandbox, sleeps):
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: ["20429"] * 4})

    assert place_call(claimed.pk) == "failed"

    assert len(sandbox.create_requests()) == 4 and sandbox.calls() == []  # bounded: 1 try + 3 retries
    assert len(sleeps) == 3
    assert all(0.8 * base <= slept <= 1.2 * base for slept, base in zip(sleeps, (0.5, 1.0, 2.0), strict=True))
    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.FAILED, "20429")
    assert claimed.state == Call.State.READY  # retried later, as any transient failure


@pytest.mark.parametrize("code", ["21211", "13224"])
def test_invalid_number_codes_are_permanent(code, claimed, make_sandbox, sleeps):
    sandbox = make_sandbox(**BUSY, create_fault_script={PHONE: [code]})

    assert place_call(claimed.pk) == "failed"

    assert len(sandbox.create_requests()) == 1 and sandbox.calls() == [] and sleeps == []
    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.FAILED, code)
    assert claimed.state == Call.State.FAILED
    assert claimed.outcome == Call.Outcome.INVALID_NUMBER


def _died_placing(call: Call, *, silent: float = 40):
    """A telephony worker holding this call's dial stopped beating `silent` seconds ago (kill -9)."""
    from campaigns.models import Worker

    seen = timezone.now() - timedelta(seconds=silent)
    return Worker.objects.create(
        instance=f"w{call.pk}", name="telephony@dead", pid=4321, seen_at=seen, queues="telephony",
        held=[["t1", "telephony.tasks.place_call", [call.pk], {}]],
    )


def test_an_attempt_whose_worker_died_before_the_create_is_looked_up_at_once_and_dialled_again(
    claimed, make_sandbox, settings
):
    """Killed between writing the attempt row and asking Twilio: looked up within seconds, not after
    DIAL_STALE_SECONDS, and, surely never placed, dialled again."""
    from campaigns import lifecycle
    from campaigns.workers import recover_dead_workers

    settings.WORKER_DEAD_SECONDS = 30
    sandbox = make_sandbox(**BUSY)
    attempt, _ = lifecycle.start_attempt(claimed.pk, 1, timezone.now())
    _died_placing(claimed)
    assert settle_silent_attempts(now=later(22)) == 0  # a CREATED attempt alone is nobody's to decide about

    assert recover_dead_workers().attempts_settled == 1
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.UNKNOWN, "worker-died")
    assert "telephony@dead" in attempt.error_message and "asking the provider" in attempt.error_message

    assert settle_silent_attempts(now=later(11)) == 0  # the first look: nothing yet, only noted
    assert settle_silent_attempts(now=later(22)) == 1
    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert (attempt.status, attempt.error_code) == (S.FAILED, "never-placed")
    assert claimed.state == Call.State.READY and sandbox.calls() == []
    reclaim(claimed)
    assert place_call(claimed.pk) == "placed" and len(sandbox.calls()) == 1


def test_an_attempt_whose_worker_died_after_the_create_adopts_its_call(claimed, make_sandbox, settings):
    """Killed after Twilio created the call, before the call id was written: the lookup finds and adopts it,
    and nobody is dialled twice."""
    from campaigns.workers import recover_dead_workers

    settings.WORKER_DEAD_SECONDS = 30
    sandbox = make_sandbox(**BUSY)
    assert place_call(claimed.pk) == "placed"
    (dialled,) = sandbox.calls()
    # What the row looked like in the instant before the call id was saved.
    CallAttempt.objects.filter(call=claimed).update(status=S.CREATED, provider_call_id=None, placed_at=None)
    _died_placing(claimed)

    assert recover_dead_workers().attempts_settled == 1
    assert settle_silent_attempts(now=later(11)) == 1
    attempt = CallAttempt.objects.get(call=claimed)
    assert attempt.provider_call_id == dialled["sid"]
    claimed.refresh_from_db()
    assert claimed.attempts_made == 1 and len(sandbox.calls()) == 1
