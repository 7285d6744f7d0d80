"""The SIP provider: what each SIP ending means for the attempt and the call, and the runtime around the UA.

The user agent itself (telephony.sip.ua.place_call) is replaced by a scripted fake here, the one seam of ours
these tests mock; tests/e2e/test_sip_campaign.py runs the real one against sipp. Everything else is real:
place_call, the runtime thread, the database threads and the outcome state machine. The runtime writes
from its own threads and connections, so these tests commit (transaction=True).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from campaigns.models import Call, CallAttempt, Campaign, DoNotCall
from campaigns.reports import campaign_report
from synthesis.audio import Waveform, read_mulaw_wav, write_mulaw_wav
from synthesis.models import RenderedAudio
from telephony import outcomes
from telephony.actions import place_call, settle_silent_attempts
from telephony.credentials import auth_token
from telephony.forms import TelephonyAccountForm
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers import sip as sip_provider
from telephony.providers.base import Dial, ProviderError
from telephony.providers.sip import RUNTIME, SHUTDOWN, SipProvider
from telephony.sip import types as sip
from tests.telephony.conftest import CALLER_ID, PHONE
from tests.wait import until, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status
PASSWORD = "trunk-pa55-5ecret"
MASKED_PHONE = "+86138****8000"


@pytest.fixture
def account(db) -> TelephonyAccount:
    """Overrides the telephony conftest's Twilio account: the campaign and its calls go over this SIP trunk."""
    account = TelephonyAccount.objects.create(
        name="Trunk", kind=TelephonyAccount.Kind.SIP, account_sid="herald", sip_host="127.0.0.1", sip_port=5070,
        sip_transport="tcp", sip_domain="herald.example", caller_ids=[CALLER_ID], calls_per_second=100,
        max_concurrent_calls=100,
    )
    from telephony.actions import set_auth_token

    set_auth_token(account, PASSWORD)
    return account


@pytest.fixture
def audio(db, settings, tmp_path) -> RenderedAudio:
    """A ready 8 kHz μ-law clip on disk, as the synthesis pipeline leaves it."""
    settings.MEDIA_ROOT = tmp_path
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)
    key = hashlib.sha256(b"sip-provider-tests").hexdigest()
    relative = f"sip-tests/{key}.wav"
    (tmp_path / "sip-tests").mkdir()
    write_mulaw_wav(tmp_path / relative, Waveform(tone, 8000))
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text="您好", state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=0.5,
    )


@pytest.fixture
def claimed(make_call, audio) -> Call:
    return make_call(state=Call.State.DIALING, attempts_made=0, audio=audio, claimed_at=timezone.now())


class FakeUA:
    """Stands in for telephony.sip.ua.place_call: records each CallSpec, sends scripted progress events, then
    returns `result` (or raises it). With `hold`, it waits after its events until released or aborted."""

    def __init__(self) -> None:
        self.specs: list[sip.CallSpec] = []
        self.events: list[str] = []
        self.result: sip.CallResult | Exception = sip.CallResult(outcome=sip.ANSWERED, call_id="")
        self.hold = False
        self.obey_abort = True
        self.on_abort: sip.CallResult | None = None
        self.release = threading.Event()
        self.holding = threading.Event()

    async def __call__(self, spec, *, on_progress=None, abort=None) -> sip.CallResult:
        self.specs.append(spec)
        for event in self.events:
            await on_progress(event)
        if self.hold:
            self.holding.set()

            def released_or_aborted() -> bool:
                return self.release.is_set() or (self.obey_abort and abort is not None and abort.is_set())

            await until(released_or_aborted, "the test to release the held call", timeout=60)
            if not self.release.is_set():
                return replace(self.on_abort, call_id=spec.call_id)
        if isinstance(self.result, Exception):
            raise self.result
        return replace(self.result, call_id=spec.call_id)


@pytest.fixture
def ua(monkeypatch) -> Iterator[FakeUA]:
    fake = FakeUA()
    monkeypatch.setattr("telephony.sip.ua.place_call", fake)
    yield fake
    fake.release.set()
    RUNTIME.drain(timeout=5)  # nothing may write to the database once the test's data is gone


def finished(call: Call) -> CallAttempt:
    """The call's only attempt once its end is recorded (the call is finalised in the same transaction)."""
    wait_until(lambda: CallAttempt.objects.get(call=call).status in {S.COMPLETED, S.BUSY, S.NO_ANSWER, S.FAILED},
             "the attempt to end")
    call.refresh_from_db()
    return CallAttempt.objects.get(call=call)


def answered(**fields) -> sip.CallResult:
    return sip.CallResult(outcome=sip.ANSWERED, call_id="", sip_code=200, sip_reason="OK", codec="PCMU",
                          talk_seconds=6.2, **fields)


def refused(outcome: str, code: int | None, reason: str = "", **fields) -> sip.CallResult:
    return sip.CallResult(outcome=outcome, call_id="", sip_code=code, sip_reason=reason, **fields)


# --- what each ending means ------------------------------------------------------------------------------

R, D, F = Call.State.READY, Call.State.DONE, Call.State.FAILED
Out = Call.Outcome
ENDINGS = [
    # result, attempt status, error code, call state (READY = will be retried), call outcome
    pytest.param(answered(played_to_end=True), S.COMPLETED, "", D, Out.ANSWERED, id="answered-listened"),
    pytest.param(answered(digits="1"), S.COMPLETED, "", D, Out.ANSWERED, id="answered-key-1"),
    pytest.param(answered(digits="9"), S.COMPLETED, "", D, Out.OPTED_OUT, id="answered-opt-out"),
    pytest.param(answered(), S.COMPLETED, "", D, Out.ANSWERED, id="answered-hung-up-early"),
    pytest.param(refused(sip.BUSY, 486, "Busy Here"), S.BUSY, "sip-486", R, Out.BUSY, id="busy"),
    pytest.param(refused(sip.BUSY, 600, "Busy Everywhere"), S.BUSY, "sip-600", R, Out.BUSY, id="busy-everywhere"),
    pytest.param(refused(sip.NO_ANSWER, 480, "Temporarily Unavailable"), S.NO_ANSWER, "sip-480", R, Out.NO_ANSWER,
                 id="no-answer"),
    pytest.param(refused(sip.CANCELED, 487, "Request Terminated"), S.NO_ANSWER, "sip-487", R, Out.NO_ANSWER,
                 id="canceled-after-ring-timeout"),
    pytest.param(refused(sip.DECLINED, 603, "Decline"), S.FAILED, "sip-603", F, Out.FAILED, id="declined"),
    pytest.param(refused(sip.INVALID_NUMBER, 404, "Not Found"), S.FAILED, "sip-404", F, Out.INVALID_NUMBER,
                 id="invalid-number"),
    pytest.param(refused(sip.FAILED, 403, "Forbidden"), S.FAILED, "sip-403", F, Out.FAILED, id="forbidden"),
    pytest.param(refused(sip.FAILED, 488, "Not Acceptable Here"), S.FAILED, "sip-488", F, Out.FAILED,
                 id="no-common-codec"),
    # What the carrier played decides (telephony.sip.announce), whatever its SIP answer was.
    pytest.param(refused(sip.INVALID_NUMBER, 487, "Request Terminated", announcement="invalid_number",
                         error="the carrier announced x (invalid_number)"), S.FAILED, "ann-invalid_number", F,
                 Out.INVALID_NUMBER, id="announced-empty-number"),
    pytest.param(refused(sip.NO_ANSWER, 487, "Request Terminated", announcement="powered_off",
                         error="the carrier announced x (powered_off)"), S.NO_ANSWER, "ann-powered_off", R,
                 Out.NO_ANSWER, id="announced-powered-off"),
    pytest.param(refused(sip.FAILED, 487, "Request Terminated", announcement="suspended",
                         error="the carrier announced x (suspended)"), S.FAILED, "ann-suspended", F, Out.FAILED,
                 id="announced-suspended"),
    pytest.param(refused(sip.BUSY, 487, "Request Terminated", announcement="busy",
                         error="the carrier announced x (busy)"), S.BUSY, "ann-busy", R, Out.BUSY, id="announced-busy"),
    pytest.param(refused(sip.INVALID_NUMBER, 487, "Request Terminated", sit="VC", error="the carrier played SIT VC"),
                 S.FAILED, "sit-VC", F, Out.INVALID_NUMBER, id="sit-vacant-code"),
    pytest.param(refused(sip.FAILED, 487, "Request Terminated", sit="NC", error="the carrier played SIT NC"),
                 S.FAILED, "sit-NC", R, Out.FAILED, id="sit-no-circuit"),
    pytest.param(refused(sip.FAILED, 408, "Request Timeout"), S.FAILED, "sip-408", R, Out.FAILED, id="4xx-408"),
    pytest.param(refused(sip.FAILED, 429, "Too Many Requests"), S.FAILED, "sip-429", R, Out.FAILED, id="4xx-429"),
    pytest.param(refused(sip.FAILED, 491, "Request Pending"), S.FAILED, "sip-491", R, Out.FAILED, id="4xx-491"),
    pytest.param(refused(sip.FAILED, 503, "Service Unavailable", retry_after=120.0), S.FAILED, "sip-503", R,
                 Out.FAILED, id="trunk-overloaded"),
    pytest.param(refused(sip.FAILED, 500, "Server Internal Error"), S.FAILED, "sip-500", R, Out.FAILED, id="5xx"),
    pytest.param(refused(sip.FAILED, None, error="the trunk 127.0.0.1:5070 (tcp) did not answer the INVITE within 32 s "
                 "(Timer B)"), S.FAILED, "sip", R, Out.FAILED, id="no-response"),
]


@pytest.mark.parametrize(("result", "status", "error_code", "call_state", "call_outcome"), ENDINGS)
def test_each_sip_ending_moves_the_attempt_and_the_call(ua, claimed, result, status, error_code, call_state,
                                                        call_outcome):
    ua.result = result
    before = timezone.now()

    assert place_call(claimed.pk) == "placed"
    attempt = finished(claimed)

    assert attempt.status == status
    assert attempt.error_code == error_code
    assert attempt.provider == "sip" and attempt.provider_call_id == ua.specs[0].call_id
    assert (claimed.state, claimed.outcome) == (call_state, call_outcome)
    if call_state == Call.State.READY:  # a passing condition: tried again after the campaign's delay
        assert claimed.next_attempt_at >= before + claimed.campaign.retry_delay
    if result.outcome == sip.ANSWERED:
        assert attempt.duration == 7  # talk time, rounded up to whole seconds like Twilio's
        assert attempt.answered_by == ""  # no answering-machine detection on SIP: counted as a person
        assert attempt.listened_to_end == bool(result.played_to_end or result.digits)
        assert attempt.digits == result.digits
    else:
        assert f"SIP {result.sip_code} {result.sip_reason}" in attempt.error_message or not result.sip_code
        assert result.error in attempt.error_message
        assert claimed.error == attempt.error_message
    assert DoNotCall.objects.filter(phone=PHONE).exists() == (result.digits == "9")


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        (401, "Unauthorized", "the trunk rejected the credentials of user 'herald' (401 again)"),
        (407, "Proxy Authentication Required", "the trunk asks for credentials (407) and none are configured"),
    ],
)
def test_a_trunk_refusing_the_credentials_pauses_the_campaign_and_keeps_the_call(ua, claimed, code, reason, error):
    """Every call of the campaign would meet the same refusal: it pauses with what to fix, once, and the call
    goes back to ready with its attempt unspent (nobody's phone rang)."""
    ua.result = refused(sip.FAILED, code, reason, error=error)

    assert place_call(claimed.pk) == "placed"
    wait_until(lambda: not CallAttempt.objects.filter(call=claimed).exists(), "the attempt row to go")

    claimed.refresh_from_db()
    campaign = claimed.campaign
    campaign.refresh_from_db()
    assert (claimed.state, claimed.attempts_made, claimed.claimed_at) == (Call.State.READY, 0, None)
    assert campaign.status == Campaign.Status.PAUSED
    assert f"SIP {code} {reason}" in campaign.paused_reason and error in campaign.paused_reason
    assert campaign.paused_reason.endswith("fix the SIP trunk's username and password, then resume")
    assert claimed.error.startswith("not dialled: ")


def test_announced_outcomes_follow_their_own_retry_rules(ua, claimed):
    """A phone switched off is tried again under the policy's "powered_off" minutes, not "no_answer"'s."""
    campaign = claimed.campaign
    campaign.retry_policy = {"no_answer": 600, "powered_off": 120}
    campaign.retry_jitter = 0
    campaign.save(update_fields=["retry_policy", "retry_jitter"])
    ua.result = refused(sip.NO_ANSWER, 487, "Request Terminated", announcement="powered_off")
    before = timezone.now()
    assert place_call(claimed.pk) == "placed"
    finished(claimed)
    assert claimed.state == Call.State.READY
    assert before + timedelta(minutes=119) < claimed.next_attempt_at < before + timedelta(minutes=125)


def test_an_overloaded_trunk_says_when_to_come_back(ua, claimed):
    ua.result = refused(sip.FAILED, 503, "Service Unavailable", retry_after=120.0)
    place_call(claimed.pk)
    attempt = finished(claimed)
    assert attempt.error_message == "SIP 503 Service Unavailable; the trunk asked us to retry after 120 s"


def test_hash_ends_the_gather_like_twilio_finish_on_key(ua, claimed):
    """Twilio's <Gather> finishes on # and reports no digit; the SIP provider means the same by it."""
    ua.result = answered(digits="#")
    place_call(claimed.pk)
    attempt = finished(claimed)
    assert (attempt.status, attempt.listened_to_end, attempt.digits) == (S.COMPLETED, True, "")


def test_progress_is_recorded_in_order_and_fetch_reports_it(ua, claimed, account):
    ua.events = [sip.TRYING, sip.RINGING, sip.ANSWER, sip.RINGING]  # a late 180 never moves the call back
    ua.hold = True
    ua.result = answered(digits="1")

    assert place_call(claimed.pk) == "placed"
    assert ua.holding.wait(5)
    attempt = CallAttempt.objects.get(call=claimed)
    wait_until(lambda: CallAttempt.objects.get(pk=attempt.pk).status == S.IN_PROGRESS, "the answer")
    provider = get_provider(account)
    assert isinstance(provider, SipProvider)
    assert provider.fetch(attempt.provider_call_id).status == S.IN_PROGRESS
    assert RUNTIME.in_flight() == 1

    ua.release.set()
    attempt = finished(claimed)
    assert [step for step, _ in attempt.timeline] == [
        "created", "queued", "initiated", "ringing", "in-progress", "gather:1", "completed",
    ]
    assert attempt.answered_at is not None and attempt.ended_at is not None
    wait_until(lambda: RUNTIME.in_flight() == 0, "the runtime to let go of the call")
    with pytest.raises(ProviderError) as excinfo:
        provider.fetch(attempt.provider_call_id)
    assert excinfo.value.permanent


def test_the_user_agent_gets_the_trunk_credentials_clip_and_twilio_gather(ua, claimed, audio, settings):
    place_call(claimed.pk)
    finished(claimed)

    (spec,) = ua.specs
    assert spec.to == f"sip:{PHONE}@127.0.0.1:5070"
    assert spec.from_uri == f"sip:{CALLER_ID}@herald.example"
    assert (spec.username, spec.password, spec.transport) == ("herald", PASSWORD, "tcp")
    assert spec.audio == read_mulaw_wav(Path(settings.MEDIA_ROOT) / audio.telephony_file)[0]
    assert (spec.max_digits, spec.stop_on_digit, spec.digit_timeout, spec.ring_timeout) == (1, True, 5.0, 30.0)
    assert spec.call_id == CallAttempt.objects.get(call=claimed).provider_call_id
    assert PASSWORD not in repr(spec)


def test_from_host_defaults_to_the_trunk_and_ipv6_hosts_are_bracketed(account, tmp_path, audio, settings):
    account.sip_domain, account.sip_host = "", "2001:db8::5"
    dial = Dial(attempt_id=1, to=PHONE, caller_id=CALLER_ID, audio_url="",
                audio_path=str(Path(settings.MEDIA_ROOT) / audio.telephony_file))
    spec = SipProvider(account).call_spec(dial, "abc")
    assert spec.to == f"sip:{PHONE}@[2001:db8::5]:5070"
    assert spec.from_uri == f"sip:{CALLER_ID}@[2001:db8::5]"


def test_the_user_agent_presents_the_caller_as_the_account_says(ua, claimed, account):
    TelephonyAccount.objects.filter(pk=account.pk).update(
        sip_display_name='Acme "Express"', sip_asserted_identity=f"tel:{CALLER_ID}", sip_privacy="id"
    )
    place_call(claimed.pk)
    finished(claimed)
    (spec,) = ua.specs
    assert (spec.display_name, spec.asserted_identity, spec.privacy) == ('Acme "Express"', f"tel:{CALLER_ID}", "id")


def test_an_account_without_presentation_sends_none(account, audio, settings):
    dial = Dial(attempt_id=1, to=PHONE, caller_id=CALLER_ID, audio_url="",
                audio_path=str(Path(settings.MEDIA_ROOT) / audio.telephony_file))
    spec = SipProvider(account).call_spec(dial, "abc")
    assert (spec.display_name, spec.asserted_identity, spec.privacy) == ("", "", "")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sip_display_name": "Acme\r\nX-Evil: 1"}, "control characters"),
        ({"sip_asserted_identity": "mailto:ops@example.com"}, "neither a SIP URI"),
        ({"sip_privacy": "user"}, "Privacy must be one of"),  # RFC 3323, but not one we send
    ],
)
def test_a_presentation_saved_past_validation_dials_nobody(ua, claimed, account, fields, message):
    TelephonyAccount.objects.filter(pk=account.pk).update(**fields)
    assert place_call(claimed.pk) == "failed"
    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert ua.specs == []
    assert attempt.error_code == "config" and message in attempt.error_message
    assert "caller presentation" in attempt.error_message
    assert claimed.state == Call.State.FAILED  # the account must be fixed: redialling would fail the same way


@pytest.mark.parametrize("problem", ["missing", "not-wav", "no-path"])
def test_unreadable_audio_dials_nobody_and_is_tried_again(ua, claimed, audio, settings, problem):
    path = Path(settings.MEDIA_ROOT) / audio.telephony_file
    if problem == "missing":
        path.unlink()
    elif problem == "not-wav":
        path.write_bytes(b"not a wav file")
    else:
        RenderedAudio.objects.filter(pk=audio.pk).update(telephony_file="")

    assert place_call(claimed.pk) == "failed"

    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert ua.specs == []
    assert (attempt.status, attempt.error_code, attempt.provider_call_id) == (S.FAILED, "audio", None)
    assert "message" in attempt.error_message or "audio" in attempt.error_message
    assert claimed.state == Call.State.READY  # not the callee's fault: tried again later


def test_missing_password_is_a_permanent_failure_before_dialling(ua, claimed, account):
    TelephonyAccount.objects.filter(pk=account.pk).update(auth_token_encrypted="", auth_token_env="HERALD_NO_SUCH")
    assert place_call(claimed.pk) == "failed"
    attempt = CallAttempt.objects.get(call=claimed)
    claimed.refresh_from_db()
    assert ua.specs == []
    assert attempt.error_code == "credentials" and "HERALD_NO_SUCH" in attempt.error_message
    assert claimed.state == Call.State.FAILED


@pytest.mark.parametrize("phone", ["12345", "+86 138 0013 8000", "+86138001@evil"])
def test_a_number_that_is_not_e164_is_not_dialled(ua, make_call, audio, phone):
    bad = make_call(phone=phone, state=Call.State.DIALING, attempts_made=0, audio=audio)
    assert place_call(bad.pk) == "failed"
    bad.refresh_from_db()
    assert ua.specs == [] and bad.state == Call.State.FAILED
    attempt = CallAttempt.objects.get(call=bad)
    assert attempt.error_code == "number" and "not an E.164 number" in attempt.error_message


def test_a_broken_user_agent_fails_the_attempt_instead_of_leaving_it_ringing(ua, claimed, caplog):
    ua.events = [sip.TRYING, sip.RINGING]
    ua.result = RuntimeError("boom")

    place_call(claimed.pk)
    attempt = finished(claimed)

    assert attempt.status == S.FAILED
    assert attempt.error_message == "SIP user agent error: RuntimeError: boom"
    assert claimed.state == Call.State.READY  # nobody heard the message: tried again like an unanswered call
    assert "the user agent failed" in caplog.text


def test_a_user_agent_breaking_after_the_answer_never_redials(ua, claimed):
    ua.events = [sip.TRYING, sip.ANSWER]
    ua.result = RuntimeError("boom")

    place_call(claimed.pk)
    attempt = finished(claimed)

    assert attempt.status == S.COMPLETED and "RuntimeError: boom" in attempt.error_message
    assert (claimed.state, claimed.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)


def test_an_end_that_cannot_be_written_is_handed_over_by_fetch(ua, claimed, account, monkeypatch):
    """The database refused the final write: the runtime keeps the call, and the settle sweep records it."""

    def broken(attempt_id, ending):
        raise RuntimeError("database is down")

    monkeypatch.setattr(outcomes, "record_ending", broken)
    monkeypatch.setattr(sip_provider, "RECORD_TRIES", 1)
    ua.result = refused(sip.BUSY, 486, "Busy Here")

    place_call(claimed.pk)
    attempt = CallAttempt.objects.get(call=claimed)
    provider = get_provider(account)
    wait_until(lambda: RUNTIME.in_flight() == 0, "the runtime to give up writing")
    assert provider.fetch(attempt.provider_call_id).status == S.BUSY
    attempt.refresh_from_db()
    assert attempt.status == S.QUEUED

    assert settle_silent_attempts(now=timezone.now() + timedelta(hours=1)) == 1

    attempt.refresh_from_db()
    claimed.refresh_from_db()
    assert attempt.status == S.BUSY
    assert claimed.state == Call.State.READY


def test_a_call_no_process_holds_is_closed_without_redialling(make_call, audio, account):
    call = make_call(audio=audio)
    attempt = CallAttempt.objects.create(
        call=call, number=1, provider="sip", status=S.RINGING, provider_call_id="0123456789abcdef@gone",
        created_at=timezone.now() - timedelta(hours=1),
    )

    with pytest.raises(ProviderError) as excinfo:
        get_provider(account).fetch(attempt.provider_call_id)
    assert excinfo.value.permanent
    assert "worker process that held it is gone" in str(excinfo.value)

    assert settle_silent_attempts() == 1
    attempt.refresh_from_db()
    call.refresh_from_db()
    assert attempt.status == S.FAILED
    assert "worker process that held it is gone" in attempt.error_message
    assert "not re-dialled" in attempt.error_message
    assert (call.state, call.outcome) == (Call.State.FAILED, Call.Outcome.FAILED)


@pytest.mark.parametrize(
    "status, age, settled",
    [
        (S.RINGING, timedelta(seconds=90), False),  # may still be ringing in the process that placed it
        (S.RINGING, timedelta(minutes=3), True),  # past ring timeout + Timer B: nobody holds it
        (S.IN_PROGRESS, timedelta(minutes=10), False),  # a long message, still playing
        (S.IN_PROGRESS, timedelta(minutes=20), True),  # not hours, as for Twilio: the channel comes back
    ],
)
def test_silent_sip_attempts_are_settled_once_no_call_can_still_be_running(
    make_call, audio, account, settings, status, age, settled
):
    settings.DIAL_STALE_SECONDS = 60
    call = make_call(audio=audio)
    attempt = CallAttempt.objects.create(
        call=call, number=1, provider="sip", status=status, provider_call_id=f"{status}@gone",
        created_at=timezone.now() - age,
    )
    assert settle_silent_attempts() == int(settled)
    attempt.refresh_from_db()
    assert (attempt.status == S.FAILED) is settled


def test_a_trunk_that_admits_by_ip_needs_no_password_to_launch(account, campaign, make_call, audio):
    from campaigns.launch import LaunchError, check_launchable

    make_call(audio=audio)  # the list needs a contact

    account.account_sid, account.auth_token_encrypted = "", ""
    account.save()
    campaign.status = campaign.Status.DRAFT
    check_launchable(campaign)  # no username: nothing to authenticate with, nothing missing
    account.account_sid = "herald"
    account.save()
    with pytest.raises(LaunchError, match="token|password"):
        check_launchable(campaign)
    account.sip_host = ""
    account.save()
    with pytest.raises(LaunchError, match="no SIP server"):
        check_launchable(campaign)


def test_sip_has_no_webhooks(account):
    assert get_provider(account).verify_webhook("https://x.test/telephony/twilio/1/status", {}, "sig") is False


# --- shutdown ----------------------------------------------------------------------------------------------

def test_shutdown_hangs_up_a_ringing_call_and_it_is_tried_again(ua, claimed):
    ua.events, ua.hold = [sip.TRYING, sip.RINGING], True
    ua.on_abort = refused(sip.CANCELED, 487, "Request Terminated")
    place_call(claimed.pk)
    assert ua.holding.wait(5)

    assert RUNTIME.drain(timeout=0.2) == 1

    attempt = finished(claimed)
    assert attempt.status == S.NO_ANSWER
    assert attempt.error_message == f"{SHUTDOWN}; SIP 487 Request Terminated"
    assert claimed.state == Call.State.READY


def test_shutdown_cuts_off_a_call_that_ignores_the_hang_up(ua, claimed, monkeypatch):
    monkeypatch.setattr(sip_provider, "CANCEL_GRACE_SECONDS", 0.2)
    ua.events, ua.hold, ua.obey_abort = [sip.TRYING, sip.ANSWER], True, False
    place_call(claimed.pk)
    assert ua.holding.wait(5)
    wait_until(lambda: CallAttempt.objects.get(call=claimed).status == S.IN_PROGRESS, "the answer")

    assert RUNTIME.drain(timeout=0.1) == 1

    attempt = finished(claimed)
    assert (attempt.status, attempt.error_message) == (S.COMPLETED, SHUTDOWN)
    assert (claimed.state, claimed.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)  # never dialled again


def test_shutdown_waits_for_calls_that_finish_in_time(ua, claimed):
    ua.hold, ua.result = True, answered(played_to_end=True)
    place_call(claimed.pk)
    assert ua.holding.wait(5)
    threading.Timer(0.3, ua.release.set).start()

    assert RUNTIME.drain(timeout=10) == 0

    attempt = CallAttempt.objects.get(call=claimed)  # written before drain returned
    assert (attempt.status, attempt.error_message) == (S.COMPLETED, "")


def test_the_runtime_starts_again_after_a_drain(ua, make_call, audio):
    first = make_call(phone="+8613800138001", state=Call.State.DIALING, attempts_made=0, audio=audio)
    place_call(first.pk)
    finished(first)
    RUNTIME.drain(timeout=1)

    second = make_call(phone="+8613800138002", state=Call.State.DIALING, attempts_made=0, audio=audio)
    place_call(second.pk)
    assert finished(second).status == S.COMPLETED


def test_many_calls_run_at_once_on_one_runtime(ua, make_call, audio, campaign):
    ua.events, ua.hold, ua.result = [sip.TRYING, sip.ANSWER], True, answered(digits="2")
    calls = [
        make_call(phone=f"+86138001380{i:02d}", state=Call.State.DIALING, attempts_made=0, audio=audio)
        for i in range(12)
    ]
    for call in calls:
        assert place_call(call.pk) == "placed"
    wait_until(lambda: len(ua.specs) == 12 and RUNTIME.in_flight() == 12, "all twelve calls in flight")

    ua.release.set()
    for call in calls:
        assert finished(call).digits == "2"
    assert campaign_report(campaign).total.digits == {"2": 12}


# --- logs --------------------------------------------------------------------------------------------------

def test_the_password_never_reaches_the_logs_and_numbers_are_masked(ua, claimed, caplog):
    caplog.set_level(logging.DEBUG)
    ua.events = [sip.TRYING, sip.RINGING]
    ua.result = refused(sip.FAILED, 401, "Unauthorized", error="the trunk refused our credentials")

    place_call(claimed.pk)
    finished(claimed)

    assert PASSWORD not in caplog.text
    sip_lines = [r.getMessage() for r in caplog.records if r.name == "telephony.providers.sip"]
    assert any(MASKED_PHONE in line for line in sip_lines), sip_lines
    assert not any(PHONE in line for line in sip_lines)


# --- the account in forms and the admin ----------------------------------------------------------------------

def account_form(**fields) -> TelephonyAccountForm:
    data = {
        "name": "Carrier", "kind": "sip", "account_sid": "herald", "auth_token": "", "auth_token_env": "",
        "api_base_url": "", "caller_ids": f'["{CALLER_ID}"]', "calls_per_second": "1", "max_concurrent_calls": "10",
        "sip_host": "sip.example.com", "sip_port": "5060", "sip_transport": "udp", "sip_domain": "",
    }
    data.update(fields)
    return TelephonyAccountForm(data=data)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sip_host": ""}, "sip_host", "A SIP trunk account needs the SIP server's host name or IP address."),
        ({"sip_port": "0"}, "sip_port", "A port is a number from 1 to 65535."),
        ({"sip_port": "65536"}, "sip_port", "A port is a number from 1 to 65535."),
        ({"sip_host": "sip:trunk.example.com"}, "sip_host", "no sip:"),
        ({"sip_host": "trunk.example.com:5060"}, "sip_host", "the port has its own field"),
        ({"sip_host": "user@trunk.example.com"}, "sip_host", "no user@"),
        ({"sip_domain": "herald example"}, "sip_domain", "Enter a host name or IP address only"),
    ],
)
def test_sip_account_validation_says_what_is_wrong(fields, field, message):
    form = account_form(**fields)
    assert not form.is_valid()
    assert any(message in error for error in form.errors[field]), form.errors


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"sip_display_name": "Acme\nX-Evil: 1"}, "sip_display_name", "control characters"),
        ({"sip_display_name": "Acme\tDeliveries"}, "sip_display_name", "control characters"),
        ({"sip_display_name": "x" * 65}, "sip_display_name", "at most 64 characters"),
        ({"sip_asserted_identity": "+862161234567"}, "sip_asserted_identity", "neither a SIP URI"),
        ({"sip_asserted_identity": "<sip:a@b>"}, "sip_asserted_identity", "no spaces, quotes or <>"),
        ({"sip_asserted_identity": "tel:6123"}, "sip_asserted_identity", "needs +country code"),
        ({"sip_privacy": "header"}, "sip_privacy", "Select a valid choice"),
    ],
)
def test_sip_caller_presentation_validation_says_what_is_wrong(fields, field, message):
    form = account_form(**fields)
    assert not form.is_valid()
    assert any(message in error for error in form.errors[field]), form.errors


def test_sip_caller_presentation_is_saved():
    form = account_form(sip_display_name='Acme "Express" 快递', sip_asserted_identity="tel:+862161234567",
                        sip_privacy="none")
    assert form.is_valid(), form.errors
    account = form.save()
    assert (account.sip_display_name, account.sip_asserted_identity, account.sip_privacy) == (
        'Acme "Express" 快递', "tel:+862161234567", "none",
    )
    assert tuple(TelephonyAccount.Privacy.values) == sip.PRIVACY_VALUES  # the admin offers what the UA sends


@pytest.mark.parametrize("host", ["sip.example.com", "192.0.2.10", "2001:db8::1", "[2001:db8::1]", "localhost"])
def test_sip_account_accepts_host_names_and_addresses(host):
    form = account_form(sip_host=host)
    assert form.is_valid(), form.errors


def test_a_twilio_account_needs_no_sip_fields():
    form = account_form(kind="twilio")
    for name in ("sip_host", "sip_port", "sip_transport", "sip_domain"):
        del form.data[name]
    assert form.is_valid(), form.errors
    account = form.save()
    assert (account.sip_host, account.sip_port, account.sip_transport) == ("", 5060, "udp")


def test_a_sip_account_is_set_up_in_the_admin_with_a_write_only_password(admin_client):
    page = admin_client.get("/admin/telephony/telephonyaccount/add/")
    assert b"SIP trunk" in page.content and b"Twilio" in page.content
    for field in (b"SIP caller presentation", b"sip_display_name", b"sip_asserted_identity", b"sip_privacy"):
        assert field in page.content

    missing_host = account_form(sip_host="").data | {"auth_token": PASSWORD}
    response = admin_client.post("/admin/telephony/telephonyaccount/add/", missing_host)
    assert response.status_code == 200
    assert "A SIP trunk account needs the SIP server&#x27;s host name or IP address." in response.content.decode()
    assert PASSWORD not in response.content.decode()
    assert not TelephonyAccount.objects.exists()

    data = account_form(sip_transport="tls", sip_port="5061", sip_domain="herald.example").data
    response = admin_client.post("/admin/telephony/telephonyaccount/add/", data | {"auth_token": PASSWORD})
    assert response.status_code == 302, response.content.decode()[-3000:]
    account = TelephonyAccount.objects.get()
    assert (account.kind, account.sip_host, account.sip_port, account.sip_transport, account.sip_domain) == (
        "sip", "sip.example.com", 5061, "tls", "herald.example",
    )
    assert auth_token(account) == PASSWORD and PASSWORD not in account.auth_token_encrypted

    change = admin_client.get(f"/admin/telephony/telephonyaccount/{account.pk}/change/").content.decode()
    assert PASSWORD not in change and "stored (encrypted)" in change
    listing = admin_client.get("/admin/telephony/telephonyaccount/").content.decode()
    assert "sip:sip.example.com:5061 (tls)" in listing
