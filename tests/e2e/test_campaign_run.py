"""A whole campaign against the sandbox carrier, with a real Celery worker process over Redis.

The sandbox decides what each simulated callee does; the test checks that Herald dialled nobody twice per
attempt, recorded every outcome the sandbox produced, and that the report counts exactly what happened.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from campaigns.demo import seed_demo
from campaigns.dialer import sweep
from campaigns.launch import launch_campaign
from campaigns.models import Call, CallAttempt, Campaign
from campaigns.reports import campaign_report
from sandbox.twilio import TwilioSandbox
from synthesis.models import RenderedAudio
from telephony.models import ProviderEvent
from tests.campaigns.direct_sql import variant_counts
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _run_to_completion(campaign: Campaign, sandbox: TwilioSandbox, worker, timeout: float = 150) -> None:
    def completed() -> bool:
        sweep()  # what beat does every SWEEP_INTERVAL
        campaign.refresh_from_db()
        if campaign.status == Campaign.Status.COMPLETED:
            return True
        assert worker.poll() is None, worker.log_path.read_text()[-3000:]
        return False

    def states() -> str:
        states = Counter(campaign.calls.values_list("state", flat=True))
        return f"the campaign to complete: {states}\n{worker.log_path.read_text()[-3000:]}"

    wait_until(completed, states, timeout=timeout, interval=0.3)


def test_campaign_runs_end_to_end_against_the_sandbox(celery_worker, live_server, twilio_account_credentials):
    sid, token = twilio_account_credentials
    sandbox = TwilioSandbox(
        {sid: token}, seed=11, answer=0.5, busy=0.15, no_answer=0.15, machine=0.15, failed=0.05,
        digits={"1": 0.5, "2": 0.2, "9": 0.1}, hangup_early=0.15, time_scale=0.002,
    ).start()
    try:
        demo = seed_demo(
            contacts=30, api_base_url=sandbox.url, account_sid=sid, auth_token=token,
            retry_delay=timedelta(seconds=1), calls_per_second=20, max_concurrent_calls=8,
        )
        campaign = demo.campaign
        assert launch_campaign(campaign) == 30
        _run_to_completion(campaign, sandbox, celery_worker)
        # Let the last callbacks land (the campaign completes when the final status is applied).
        assert sandbox.wait_idle(20)  # every simulated call finished: its callbacks posted, and answered
        dialled = sandbox.calls()
    finally:
        sandbox.stop()

    attempts = {a.provider_call_id: a for a in CallAttempt.objects.filter(call__campaign=campaign)}
    calls = {c.phone: c for c in campaign.calls.all()}

    # Every sandbox call belongs to exactly one attempt, and nobody was dialled twice for one attempt.
    assert sorted(attempts) == sorted(d["sid"] for d in dialled)
    assert all(a.provider_call_id for a in attempts.values())
    per_number = Counter(d["to"] for d in dialled)
    for phone, call in calls.items():
        assert per_number[phone] == call.attempts_made == call.attempts.count(), phone
        assert call.attempts_made <= campaign.max_attempts
        numbers = sorted(call.attempts.values_list("number", flat=True))
        assert numbers == list(range(1, call.attempts_made + 1))

    # Every outcome the sandbox produced is recorded on its attempt.
    for d in dialled:
        attempt = attempts[d["sid"]]
        assert attempt.status == d["status"], d
        assert (attempt.answered_by or None) == d["answered_by"], d
        assert (attempt.digits or None) == d["digits"], d
        if d["status"] == "completed":
            assert attempt.duration == d["duration"]
    # Audio was fetched through signed URLs for every call a person answered; machines are hung up on
    # (the campaign's default machine action) as soon as asynchronous detection says so.
    humans = [d for d in dialled if d["status"] == "completed" and not (d["answered_by"] or "").startswith("machine")]
    assert humans and all(d["audio_fetched"] for d in humans)
    machines = [d for d in dialled if (d["answered_by"] or "").startswith("machine")]
    assert all(d["status"] == "completed" for d in machines)
    assert not ProviderEvent.objects.filter(signature_valid=False).exists()

    # Calls end where the sandbox says they should.
    for phone, call in calls.items():
        last = max((d for d in dialled if d["to"] == phone), key=lambda d: d["n"])
        if last["digits"] == "9":
            assert call.outcome == Call.Outcome.OPTED_OUT
        elif last["status"] == "completed":
            assert call.outcome in (Call.Outcome.ANSWERED, Call.Outcome.MACHINE)
        elif last["status"] in ("busy", "no-answer"):
            assert call.attempts_made == campaign.max_attempts, "retries stop only at max attempts"
        assert call.state in (Call.State.DONE, Call.State.FAILED)

    # The report counts exactly what the sandbox did.
    report = campaign_report(campaign)
    answered_numbers = {d["to"] for d in dialled if d["status"] == "completed"}
    # Human: answered and not a machine. With asynchronous detection, a callee who hangs up before it reports
    # has no answered_by at all, and counts as a person, as in the report.
    human_numbers = {
        d["to"]
        for d in dialled
        if d["status"] == "completed" and not (d["answered_by"] or "").startswith(("machine", "fax"))
    }
    assert report.total.calls == 30
    assert report.total.attempts == len(dialled)
    assert report.total.dialled == len(per_number)
    assert report.total.answered == len(answered_numbers)
    assert report.total.human == len(human_numbers)
    assert report.total.machine == len(answered_numbers - human_numbers)
    assert report.total.opted_out == len({d["to"] for d in dialled if d["digits"] == "9"})
    expected_digits = Counter(d["digits"] for d in dialled if d["digits"])
    assert report.total.digits == dict(expected_digits)
    assert sum(v.calls for v in report.variants) == 30
    assert sum(v.answered for v in report.variants) == report.total.answered
    # The per-call facts the report reads were kept by the real webhooks: they equal the attempts counted by hand.
    direct = variant_counts(campaign.pk)
    for row in report.variants:
        for name in ("calls", "attempts", "dialled", "answered", "human", "listened_to_end", "opted_out",
                     "confirmed", "rescheduled", "timed_attempts", "talk_seconds"):  # fmt: skip
            assert getattr(row, name) == direct[row.label][name], (row.label, name)
        assert row.digits == direct[row.label]["digits"]
    assert report.total.confirmed == expected_digits["1"] and report.total.rescheduled == expected_digits["2"]

    # Every distinct text was rendered once; the cache holds real telephony audio for each.
    keys = set(campaign.calls.values_list("audio_id", flat=True))
    assert RenderedAudio.objects.filter(render_key__in=keys, state="ready").count() == len(keys)
