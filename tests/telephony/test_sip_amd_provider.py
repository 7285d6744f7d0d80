"""Answering-machine detection through a SIP trunk account: what the user agent is asked to do for each machine
action, and what an attempt records when a machine answered (the report's machine outcome, as with Twilio)."""

from __future__ import annotations

import pytest

from campaigns.models import Call, CallAttempt, Campaign
from synthesis.audio import read_mulaw_wav
from telephony.actions import place_call
from telephony.models import TelephonyAccount
from telephony.sip import types as sip
from tests.telephony.test_sip_provider import (  # noqa: F401
    account,
    answered,
    audio,
    claimed,
    finished,
    ua,
)

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status


def detect_machines(account: TelephonyAccount) -> None:  # noqa: F811
    TelephonyAccount.objects.filter(pk=account.pk).update(sip_amd=True)


def test_without_detection_every_answer_is_a_person(ua, claimed):  # noqa: F811
    place_call(claimed.pk)
    finished(claimed)
    [spec] = ua.specs
    assert (spec.amd, spec.voicemail) == ("", b"")


def test_a_campaign_that_hangs_up_on_machines_asks_for_detection_only(ua, claimed, account):  # noqa: F811
    detect_machines(account)
    place_call(claimed.pk)
    finished(claimed)
    [spec] = ua.specs
    assert (spec.amd, spec.voicemail) == ("Enable", b"")


def test_a_campaign_that_leaves_voicemails_hands_the_clip_over(ua, claimed, account, audio, settings):  # noqa: F811
    from pathlib import Path

    detect_machines(account)
    Campaign.objects.filter(pk=claimed.campaign_id).update(machine_action=Campaign.MachineAction.VOICEMAIL)
    Call.objects.filter(pk=claimed.pk).update(voicemail_audio=audio)
    place_call(claimed.pk)
    finished(claimed)
    [spec] = ua.specs
    assert spec.amd == "DetectMessageEnd"
    assert spec.voicemail == read_mulaw_wav(Path(settings.MEDIA_ROOT) / audio.telephony_file)[0]


def test_a_machine_is_recorded_and_the_call_ends_as_a_machine(ua, claimed, account):  # noqa: F811
    detect_machines(account)
    ua.result = answered(answered_by="machine_end_beep", voicemail_played=True, played_to_end=False)
    place_call(claimed.pk)
    attempt = finished(claimed)
    assert (attempt.status, attempt.answered_by) == (S.COMPLETED, "machine_end_beep")
    claimed.refresh_from_db()
    assert claimed.outcome == Call.Outcome.MACHINE


def test_a_person_found_by_detection_is_recorded_too(ua, claimed, account):  # noqa: F811
    detect_machines(account)
    ua.result = answered(answered_by="human", played_to_end=True)
    place_call(claimed.pk)
    attempt = finished(claimed)
    assert (attempt.status, attempt.answered_by) == (S.COMPLETED, "human")
    claimed.refresh_from_db()
    assert claimed.outcome != Call.Outcome.MACHINE


def test_ending_for_carries_what_detection_said():
    from telephony.providers.sip import ending_for

    ending = ending_for(sip.CallResult(outcome=sip.ANSWERED, call_id="x", talk_seconds=3.2, answered_by="fax"))
    assert (ending.status, ending.answered_by, ending.gather) == (S.COMPLETED, "fax", None)
