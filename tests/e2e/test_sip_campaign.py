"""Whole campaigns over SIP trunks: a real Celery worker runs Herald's own user agent against sipp.

Four campaigns run at once, each on its own SIP account whose trunk is a sipp UAS on 127.0.0.1: callees who
answer and press 1, one who presses 9 (opt-out), one who listens to the end without a key, and callees who
are always busy (retried once). sipp's exit
status is the far end's verdict on the SIP itself (ACKs, BYEs, nothing extra dialled); the database and the
report must say exactly what sipp did. How long the user agent's waits take is bench/sip_timers.py's to measure.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns.demo import daytime_zone
from campaigns.dialer import sweep
from campaigns.launch import launch_campaign
from campaigns.models import (
    Call,
    CallAttempt,
    Campaign,
    Contact,
    ContactList,
    DoNotCall,
    ScriptTemplate,
    Variant,
)
from campaigns.reports import campaign_report
from synthesis.audio import read_mulaw_wav
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from tests.sipp import SCENARIOS, Sipp
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CALLER_ID = "+862161234567"
TEXT = "您好，您的快递明天送达。确认请按1，如不想再接到此类电话请按9。"


def key_scenario(tmp_path: Path, key: str) -> str:
    """digit.xml (answer, press a key 300 ms after the ACK, wait for our BYE) pressing `key` instead of #."""
    source = (SCENARIOS / "digit.xml").read_text()
    assert "dtmf_2833_pound.pcap" in source, "digit.xml changed: update key_scenario"
    path = tmp_path / f"press_{key}.xml"
    path.write_text(source.replace("dtmf_2833_pound.pcap", f"dtmf_2833_{key}.pcap"))
    return str(path)  # absolute: Sipp joins it onto its scenario folder, which keeps an absolute path as is


def sip_campaign(name: str, uas: Sipp, phones: list[str], voices, password: str, **campaign_fields) -> Campaign:
    """A draft campaign whose calls go to the sipp UAS as their SIP trunk."""
    account = TelephonyAccount.objects.create(
        name=f"trunk {name}", kind=TelephonyAccount.Kind.SIP, account_sid="herald", sip_host=uas.host,
        sip_port=uas.port, caller_ids=[CALLER_ID], calls_per_second=20, max_concurrent_calls=10,
    )
    account.full_clean()
    set_auth_token(account, password)  # sipp does not challenge, but a campaign only launches with one
    contacts = ContactList.objects.create(name=f"{name} {secrets.token_hex(3)}")
    tz = daytime_zone(timezone.now())
    Contact.objects.bulk_create(Contact(contact_list=contacts, phone=p, name="张先生", timezone=tz) for p in phones)
    script = ScriptTemplate.objects.get_or_create(name="SIP reminder", defaults={"text": TEXT})[0]
    campaign = Campaign.objects.create(
        name=name, contact_list=contacts, telephony_account=account, caller_id=CALLER_ID,
        window_start=clock_time(0, 0), window_end=clock_time(23, 59), calls_per_second=20, max_concurrent_calls=10,
        **campaign_fields,
    )
    for voice, variant in zip(voices, "AB", strict=True):
        Variant.objects.create(campaign=campaign, name=variant, voice=voice, script=script)
    return campaign


def run_to_completion(campaigns: list[Campaign], worker, timeout: float = 150) -> None:
    def completed() -> bool:
        sweep()  # what beat does every SWEEP_INTERVAL
        assert worker.poll() is None, worker.log_path.read_text()[-3000:]
        return all(Campaign.objects.get(pk=c.pk).status == Campaign.Status.COMPLETED for c in campaigns)

    def states() -> str:
        states = {c.name: Counter(c.calls.values_list("state", flat=True)) for c in campaigns}
        return f"the campaigns to complete: {states}\n{worker.log_path.read_text()[-5000:]}"

    wait_until(completed, states, timeout=timeout, interval=0.3)


def sipp_done(uas: Sipp) -> None:
    code = uas.wait(30)
    assert code == 0, uas.report()


def test_sip_campaigns_run_end_to_end_against_sipp(celery_worker, voices, tmp_path):
    press_1 = [f"+86139000000{i:02d}" for i in range(3)]
    press_9 = ["+8613900000100"]
    busy = [f"+86139000002{i:02d}" for i in range(2)]
    listens = ["+8613900000300"]
    password = secrets.token_hex(8)
    with (
        Sipp(key_scenario(tmp_path, "1"), calls=len(press_1), timeout=180) as uas_1,
        Sipp(key_scenario(tmp_path, "9"), calls=len(press_9), timeout=180) as uas_9,
        Sipp("busy_486.xml", calls=2 * len(busy), timeout=180) as uas_busy,
        Sipp("answer.xml", calls=len(listens), timeout=180) as uas_listen,
    ):
        confirming = sip_campaign("press 1", uas_1, press_1, voices, password)
        opting_out = sip_campaign("press 9", uas_9, press_9, voices, password)
        engaged = sip_campaign(
            "busy", uas_busy, busy, voices, password, max_attempts=2, retry_delay=timedelta(seconds=1),
            retry_jitter=0,
        )
        listening = sip_campaign("listens", uas_listen, listens, voices, password)
        campaigns = [confirming, opting_out, engaged, listening]
        for campaign in campaigns:
            launch_campaign(campaign)

        run_to_completion(campaigns, celery_worker)
        uases = [uas_1, uas_9, uas_busy, uas_listen]
        for uas in uases:
            sipp_done(uas)
        messages = dict(zip(campaigns, (uas.messages for uas in uases), strict=True))

    log = celery_worker.log_path.read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]
    # Every attempt is one SIP call the trunk saw, under the Call-ID recorded as the provider's call id.
    for campaign in campaigns:
        for attempt in CallAttempt.objects.filter(call__campaign=campaign):
            assert attempt.provider == "sip"
            assert f"Call-ID: {attempt.provider_call_id}" in messages[campaign], (attempt, log[-3000:])

    # Answered, the clip cut short by the key, the key recorded: the same facts a Twilio <Gather> gives.
    for call in confirming.calls.all():
        (attempt,) = call.attempts.all()
        assert (call.state, call.outcome, call.attempts_made) == (Call.State.DONE, Call.Outcome.ANSWERED, 1)
        assert (attempt.status, attempt.digits, attempt.listened_to_end) == ("completed", "1", True), attempt.timeline
        assert attempt.answered_by == "" and attempt.duration is not None and attempt.error_code == ""
        steps = [step for step, _ in attempt.timeline]
        assert steps[:2] == ["created", "queued"] and steps[-3:] == ["in-progress", "gather:1", "completed"], steps
        assert attempt.answered_at <= attempt.ended_at
        # The clip went out as RTP until the key cut it short (the call lasts about 0.3 s before the key).
        media = re.search(rf"SIP call {attempt.provider_call_id} .* ended completed \[PCMU, (\d+) RTP packets sent, "
                          r"cut short, hung up by local\]", log)
        assert media and int(media.group(1)) >= 5, log[-3000:]

    # No key: the whole clip went out, then the gather's 5 s of silence, then our BYE.
    (listened,) = listening.calls.all()
    (attempt,) = listened.attempts.all()
    clip, _ = read_mulaw_wav(Path(settings.MEDIA_ROOT) / listened.audio.telephony_file)
    assert (listened.state, listened.outcome) == (Call.State.DONE, Call.Outcome.ANSWERED)
    assert (attempt.status, attempt.digits, attempt.listened_to_end) == ("completed", "", True)
    assert [step for step, _ in attempt.timeline][-4:] == ["ringing", "in-progress", "gather:-", "completed"]
    times = [datetime.fromisoformat(at) for _, at in attempt.timeline]
    assert times == sorted(times), attempt.timeline  # the call's events were recorded in the order they happened
    assert attempt.answered_at <= attempt.ended_at and attempt.duration > 0  # Twilio's CallDuration, seconds
    media = re.search(rf"SIP call {attempt.provider_call_id} .* ended completed \[PCMU, (\d+) RTP packets sent, "
                      r"played to the end, hung up by local\]", log)
    assert media and int(media.group(1)) == math.ceil(len(clip) / 160), (len(clip), log[-3000:])

    (opted_out,) = opting_out.calls.all()
    assert (opted_out.state, opted_out.outcome) == (Call.State.DONE, Call.Outcome.OPTED_OUT)
    assert DoNotCall.objects.filter(phone=press_9[0], source="keypress").exists()

    # Busy twice: retried after the campaign's delay, then done; the SIP answer is on every attempt.
    for call in engaged.calls.all():
        attempts = list(call.attempts.order_by("number"))
        assert (call.state, call.outcome, call.attempts_made) == (Call.State.DONE, Call.Outcome.BUSY, 2)
        assert [(a.number, a.status, a.error_code) for a in attempts] == [(1, "busy", "sip-486"), (2, "busy", "sip-486")]
        assert attempts[0].error_message == "SIP 486 Busy Here"
        assert attempts[1].created_at >= attempts[0].ended_at + engaged.retry_delay

    report = campaign_report(confirming).total
    assert (report.calls, report.attempts, report.dialled, report.answered, report.human) == (3, 3, 3, 3, 3)
    assert (report.listened_to_end, report.opted_out, report.digits) == (3, 0, {"1": 3})
    report = campaign_report(opting_out).total
    assert (report.answered, report.opted_out, report.digits) == (1, 1, {"9": 1})
    report = campaign_report(listening).total
    assert (report.answered, report.listened_to_end, report.digits) == (1, 1, {})
    report = campaign_report(engaged).total
    assert (report.calls, report.attempts, report.dialled, report.answered, report.busy) == (2, 4, 2, 0, 2)

    # The worker logged the calls with masked numbers and never the trunk password.
    assert "SIP call" in log and password not in log
    assert not any(phone in log for phone in press_1 + press_9 + busy + listens)
