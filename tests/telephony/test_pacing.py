"""Dialling limits: calls per second and channels per account, shared by processes; the per-number 24 h cap.

The limiter runs against real Redis (the test broker's database) and against the file-lock fallback of the
embedded setup. These tests check what the limiter grants and refuses, never how fast: the never-exceeds
property over a minute of four real processes, and how soon a dead worker's channel comes back, are measured
by bench/pacing.py, whose figures the issue asks for. place_call runs against the local Twilio sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.demo import daytime_zone
from campaigns.management.commands.demo import Command
from campaigns.models import Call, CallAttempt, Campaign, Contact, ContactList, DoNotCall, Variant
from campaigns.waiting import Waiting, admin_time
from synthesis.models import RenderedAudio
from telephony import outcomes, pacing
from telephony.actions import place_call
from telephony.models import TelephonyAccount
from tests.telephony.conftest import CALLER_ID, PHONE, closed_port_url
from tests.telephony.test_place_call import place_from_two_workers_at_once
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
S = CallAttempt.Status


def unsaved_account(*, cps: float = 10.0, channels: int = 10, created_us: int | None = None) -> TelephonyAccount:
    """An account under a key no other test uses; the limiter needs only its id, creation time and limits."""
    created_us = created_us or time.time_ns() // 1000
    return TelephonyAccount(
        pk=created_us % 1_000_000_000,
        created_at=EPOCH + timedelta(microseconds=created_us),
        calls_per_second=cps,
        max_concurrent_calls=channels,
    )


@pytest.fixture(params=["redis", "file"])
def store(request, settings, tmp_path) -> str:
    """Both places the limits can live: the test broker's Redis, or locked state files under VAR_DIR."""
    settings.VAR_DIR = tmp_path
    settings.PACING_REDIS_URL = settings.CELERY_BROKER_URL if request.param == "redis" else ""
    return request.param


# --- calls per second ---------------------------------------------------------------------------------


def test_grants_from_one_process_are_spaced_by_one_over_cps(store):
    account = unsaved_account(cps=4)
    spacing = pacing.slot_spacing(account)
    grants = [pacing.acquire_dial(account, f"a.{n}") for n in range(4)]

    assert all(isinstance(grant, pacing.Grant) for grant in grants)
    # The first dials at once; each later one slept for its own slot, one spacing after the slot before it.
    assert grants[0].waited == 0
    assert all(0 < grant.waited <= spacing + 1e-6 for grant in grants[1:]), grants  # Redis counts in µs
    assert spacing == pytest.approx(1.01 / 4)


def test_a_slot_further_than_the_wait_is_refused_and_its_channel_given_back(store):
    account = unsaved_account(cps=1)
    first = pacing.acquire_dial(account, "a.1")
    refused = pacing.acquire_dial(account, "b.1", wait=0.5)

    assert isinstance(first, pacing.Grant) and first.waited == 0
    assert isinstance(refused, pacing.Refusal) and refused.reason == "pacing"
    assert 0 < refused.retry_in <= pacing.slot_spacing(account) - 0.5  # then the slot is within the wait
    assert pacing.in_use(account) == 1


DRAWING_WORKER = """
import json, sys
from datetime import UTC, datetime, timedelta
import django
django.setup()
from telephony import pacing
from telephony.models import TelephonyAccount
created_us, pk, cps, channels, wait, tries, name = sys.argv[1:]
created = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(created_us))
account = TelephonyAccount(
    pk=int(pk), created_at=created, calls_per_second=float(cps), max_concurrent_calls=int(channels)
)
pacing.in_use(account)  # connected (or the state folder made) before the go
print("ready", flush=True)
sys.stdin.readline()
answers = [pacing.acquire_dial(account, f"{name}.{n}", wait=float(wait)) for n in range(int(tries))]
print(json.dumps([a.reason if isinstance(a, pacing.Refusal) else "grant" for a in answers]), flush=True)
"""


def draw_from_four_processes(account: TelephonyAccount, settings, *, wait: float, tries: int) -> list[str]:
    """Four processes ask for `tries` dials each, all at once; what each was answered: grant, pacing or channels."""
    created_us = (account.created_at - EPOCH) // timedelta(microseconds=1)
    args = [str(created_us), str(account.pk), str(account.calls_per_second), str(account.max_concurrent_calls),
            str(wait), str(tries)]
    workers = [
        subprocess.Popen([sys.executable, "-c", DRAWING_WORKER, *args, f"w{i}"], cwd=ROOT, env=worker_env(settings),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # no process may start asking before the others are ready to
            worker.stdin.write("go\n")
            worker.stdin.flush()
        answers = []
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            answers += json.loads(out)
        return answers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)


def worker_env(settings) -> dict[str, str]:
    """A process started by a test uses the limiter's store the test uses."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "HERALD_VAR_DIR": str(settings.VAR_DIR),
        "HERALD_PACING_REDIS_URL": settings.PACING_REDIS_URL,
    }


def test_four_processes_draw_from_one_schedule(store, settings):
    """Twelve requests from four processes inside one spacing, none willing to wait: one slot, so one dial."""
    account = unsaved_account(cps=1, channels=100)

    answers = draw_from_four_processes(account, settings, wait=0, tries=3)

    assert sorted(answers) == ["grant"] + ["pacing"] * 11, answers
    assert pacing.in_use(account) == 1  # each refused request gave its channel back


def test_four_processes_share_the_channels(store, settings):
    account = unsaved_account(cps=1000, channels=2)

    answers = draw_from_four_processes(account, settings, wait=1.0, tries=1)

    assert sorted(answers) == ["channels", "channels", "grant", "grant"], answers
    assert pacing.in_use(account) == 2


# --- channels ----------------------------------------------------------------------------------------------


def test_channels_are_limited_and_come_back_on_release(store):
    account = unsaved_account(cps=1000, channels=2)
    assert isinstance(pacing.acquire_dial(account, "a.1"), pacing.Grant)
    assert isinstance(pacing.acquire_dial(account, "b.1"), pacing.Grant)

    full = pacing.acquire_dial(account, "c.1")
    assert isinstance(full, pacing.Refusal) and full.reason == "channels"
    assert 0 < full.retry_in <= pacing.CARRIER_LEASE_SECONDS
    assert isinstance(pacing.acquire_dial(account, "b.1"), pacing.Grant)  # the same lease again: no new channel
    assert pacing.in_use(account) == 2

    pacing.release(account, "a.1")
    pacing.release(account, "a.1")  # idempotent
    assert isinstance(pacing.acquire_dial(account, "c.1"), pacing.Grant)
    assert pacing.in_use(account) == 2


def test_a_lease_runs_out_unless_renewed(store, monkeypatch):
    monkeypatch.setattr(pacing, "CARRIER_LEASE_SECONDS", 0.4)
    account = unsaved_account(cps=1000, channels=2)
    pacing.acquire_dial(account, "kept.1")
    pacing.acquire_dial(account, "lapsed.1")

    time.sleep(0.2)  # on purpose: half of both leases goes by, then only one is renewed
    assert pacing.renew(account, "kept.1", seconds=1.0)
    time.sleep(0.4)  # on purpose: past the unrenewed lease's end (0.4 s), well inside the renewed one's (1.2 s)

    assert pacing.in_use(account) == 1  # lapsed.1 ran out; kept.1 was renewed
    pacing.release(account, "kept.1")
    assert not pacing.renew(account, "kept.1")  # a released lease is never held again by a renewal
    assert pacing.in_use(account) == 0


CRASHING_WORKER = """
import sys, time
from datetime import UTC, datetime, timedelta
import django
django.setup()
from telephony import pacing
from telephony.models import TelephonyAccount
pacing.LEASE_SECONDS = 1.0  # renewed every third of a second while this process lives
created = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(sys.argv[1]))
account = TelephonyAccount(pk=int(sys.argv[2]), created_at=created, calls_per_second=1000, max_concurrent_calls=1)
grant = pacing.acquire_dial(account, "crashing.1", keep_alive_for=600)
print("held" if isinstance(grant, pacing.Grant) else grant, flush=True)
time.sleep(600)  # a call in progress, until the test kills this process
"""


def test_a_crashed_workers_channel_comes_back_after_its_lease(store, settings):
    """A SIP call's lease is renewed by the process that holds the call; killed, its channel frees itself."""
    account = unsaved_account(cps=1000, channels=1)
    created_us = (account.created_at - EPOCH) // timedelta(microseconds=1)
    worker = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, str(created_us), str(account.pk)],
        cwd=ROOT, env=worker_env(settings), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "held"
        alive_until = time.monotonic() + 1.6  # longer than the lease: only renewals keep it
        while time.monotonic() < alive_until:
            refused = pacing.acquire_dial(account, "survivor.1")
            assert isinstance(refused, pacing.Refusal) and refused.reason == "channels"
            time.sleep(0.1)  # on purpose: keep asking for longer than one lease (1.6 s > 1 s)

        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        wait_until(lambda: isinstance(pacing.acquire_dial(account, "survivor.1"), pacing.Grant),
                   "the dead worker's channel to come back", interval=0.05)
        # It came back because the dead worker's lease ran out: no renewal can hold it again.
        assert not pacing.renew(account, "crashing.1")
        assert pacing.in_use(account) == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


# --- the store cannot be reached: never dial blind ---------------------------------------------------------


@pytest.mark.parametrize("where", ["redis", "file"])
def test_an_unreachable_store_refuses_and_is_logged_once(where, settings, tmp_path, caplog):
    settings.VAR_DIR, settings.PACING_REDIS_URL = tmp_path, ""
    account = unsaved_account()
    assert isinstance(pacing.acquire_dial(account, "ok.1"), pacing.Grant)  # reachable: any earlier outage is over
    if where == "redis":
        settings.PACING_REDIS_URL = closed_port_url("redis")
    else:
        settings.VAR_DIR = tmp_path / "a-file"
        settings.VAR_DIR.write_text("not a folder")
    caplog.set_level(logging.INFO, logger="telephony.pacing")

    refusals = [pacing.acquire_dial(account, f"down.{n}") for n in range(3)]

    assert refusals == [pacing.Refusal("pacing", pacing.RETRY_WHEN_DOWN)] * 3
    assert pacing.in_use(account) is None
    assert not pacing.renew(account, "down.1")
    pacing.release(account, "down.1")  # never raises
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    settings.VAR_DIR, settings.PACING_REDIS_URL = tmp_path, ""
    assert isinstance(pacing.acquire_dial(account, "back.1"), pacing.Grant)
    assert "reachable again" in caplog.text


# --- place_call ------------------------------------------------------------------------------------------------


@pytest.fixture
def limits(account):
    """Set the account's limits: limits(cps=..., channels=...)."""

    def set_limits(*, cps: float = 100, channels: int = 100) -> TelephonyAccount:
        account.calls_per_second, account.max_concurrent_calls = cps, channels
        account.save(update_fields=["calls_per_second", "max_concurrent_calls"])
        return account

    return set_limits


def assert_back_to_ready(call: Call) -> None:
    call.refresh_from_db()
    assert (call.state, call.claimed_at, call.attempts_made) == (Call.State.READY, None, 0)
    assert not CallAttempt.objects.filter(call=call).exists()


@pytest.mark.django_db
def test_no_slot_within_the_wait_puts_the_call_back_to_ready(store, claimed, limits, make_sandbox,
                                                              unreachable_public_url):
    sandbox = make_sandbox()
    account = limits(cps=0.5)  # a slot every two seconds
    assert isinstance(pacing.acquire_dial(account, "another.1"), pacing.Grant)

    assert place_call(claimed.pk) == "pacing"

    assert_back_to_ready(claimed)
    assert sandbox.calls() == []
    assert pacing.in_use(account) == 1  # only the other call's: this one's channel was given back


@pytest.mark.django_db
def test_no_free_channel_puts_the_call_back_to_ready(store, claimed, limits, make_sandbox, unreachable_public_url):
    sandbox = make_sandbox()
    account = limits(channels=1)
    assert isinstance(pacing.acquire_dial(account, "another.1"), pacing.Grant)

    assert place_call(claimed.pk) == "channels"

    assert_back_to_ready(claimed)
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_an_unreachable_store_dials_nobody(claimed, limits, make_sandbox, unreachable_public_url, settings):
    sandbox = make_sandbox()
    limits()
    settings.PACING_REDIS_URL = closed_port_url("redis")

    assert place_call(claimed.pk) == "pacing"

    assert_back_to_ready(claimed)
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_the_channel_is_held_for_the_call_and_given_back_at_its_final_status(store, claimed, limits,
                                                                            make_sandbox, unreachable_public_url):
    make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)
    account = limits(channels=1)

    assert place_call(claimed.pk) == "placed"
    attempt = CallAttempt.objects.get(call=claimed)
    assert pacing.in_use(account) == 1

    outcomes.apply_status(attempt.pk, S.RINGING)
    assert pacing.in_use(account) == 1
    outcomes.apply_status(attempt.pk, S.COMPLETED, answered_by="human", duration=9)
    assert pacing.in_use(account) == 0


@pytest.mark.django_db
def test_call_ended_gives_the_attempts_channel_back(store, claimed, limits, make_sandbox, unreachable_public_url):
    make_sandbox()
    account = limits(channels=1)
    place_call(claimed.pk)
    attempt = CallAttempt.objects.get(call=claimed)

    pacing.call_ended(attempt)
    pacing.call_ended(attempt)  # a duplicate final event

    assert pacing.in_use(account) == 0


@pytest.mark.django_db
def test_a_provider_error_before_dialling_gives_the_channel_back(store, claimed, limits, unreachable_public_url):
    account = limits()
    account.api_base_url = closed_port_url()
    account.save(update_fields=["api_base_url"])

    assert place_call(claimed.pk) == "failed"

    assert pacing.in_use(account) == 0


@pytest.mark.django_db
def test_a_call_that_changed_during_the_wait_is_not_dialled_and_gives_the_channel_back(
    store, claimed, limits, make_sandbox, unreachable_public_url, monkeypatch
):
    sandbox = make_sandbox()
    account = limits()
    acquire_dial = pacing.acquire_dial

    def opted_out_meanwhile(*args, **kwargs):
        granted = acquire_dial(*args, **kwargs)
        DoNotCall.objects.create(phone=PHONE, source="keypress")
        return granted

    monkeypatch.setattr(pacing, "acquire_dial", opted_out_meanwhile)

    assert place_call(claimed.pk) == "do not call"

    assert sandbox.calls() == []
    assert not CallAttempt.objects.filter(call=claimed).exists()
    assert pacing.in_use(account) == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_call_dial_once_and_hold_one_channel(store, claimed, limits, make_sandbox,
                                                                unreachable_public_url):
    sandbox = make_sandbox()
    account = limits()
    assert sorted(place_from_two_workers_at_once(claimed.pk)) == ["not claimed", "placed"]
    assert len(sandbox.calls()) == 1
    assert pacing.in_use(account) == 1  # the loser did not give back the winner's channel


# --- at most MAX_CALLS_PER_NUMBER_24H calls to a number in any 24 hours, all campaigns together ------------------


def campaign_like(campaign: Campaign, name: str) -> Campaign:
    """Another running campaign on the same account, with its own contact list."""
    other = Campaign.objects.create(
        name=name, contact_list=ContactList.objects.create(name=f"{name} contacts"),
        telephony_account=campaign.telephony_account, caller_id=CALLER_ID, status=Campaign.Status.RUNNING,
        window_start=campaign.window_start, window_end=campaign.window_end,
    )
    variant = campaign.variants.get()
    Variant.objects.create(campaign=other, name="A", voice=variant.voice, script=variant.script)
    return other


@pytest.fixture
def other_campaign(campaign) -> Campaign:
    return campaign_like(campaign, "Other campaign")


def call_in(campaign: Campaign, audio: RenderedAudio, **fields) -> Call:
    contact = Contact.objects.create(
        contact_list=campaign.contact_list, phone=PHONE, name="张先生", timezone=daytime_zone(timezone.now())
    )
    return Call.objects.create(
        campaign=campaign, contact=contact, variant=campaign.variants.get(), phone=PHONE, timezone=contact.timezone,
        text="您好", audio=audio, next_attempt_at=timezone.now(), **fields,
    )


def attempts_at(call: Call, *ages: timedelta) -> list[CallAttempt]:
    now = timezone.now()
    return [
        CallAttempt.objects.create(
            call=call, number=n, provider="twilio", status=S.NO_ANSWER, created_at=now - age, ended_at=now - age
        )
        for n, age in enumerate(ages, start=1)
    ]


@pytest.mark.django_db
def test_a_number_called_three_times_in_24_hours_across_campaigns_waits(
    campaign, other_campaign, audio, limits, make_sandbox, unreachable_public_url
):
    sandbox = make_sandbox()
    limits()
    earlier = call_in(campaign, audio, state=Call.State.DONE, attempts_made=3)
    oldest_counted = attempts_at(earlier, timedelta(hours=25), timedelta(hours=23), timedelta(hours=1))[1]
    now_due = call_in(other_campaign, audio, state=Call.State.DIALING, attempts_made=1, claimed_at=timezone.now())
    attempts_at(now_due, timedelta(hours=2))

    assert place_call(now_due.pk) == "number cap"

    now_due.refresh_from_db()
    assert (now_due.state, now_due.claimed_at, now_due.attempts_made) == (Call.State.READY, None, 1)
    assert now_due.next_attempt_at == oldest_counted.created_at + timedelta(hours=24)
    assert now_due.attempts.count() == 1
    assert sandbox.calls() == []
    assert pacing.in_use(campaign.telephony_account) == 0  # refused before any channel was taken


@pytest.mark.django_db
def test_a_number_under_the_cap_is_dialled(campaign, other_campaign, audio, limits, make_sandbox,
                                           unreachable_public_url):
    sandbox = make_sandbox()
    limits()
    earlier = call_in(campaign, audio, state=Call.State.DONE, attempts_made=3)
    attempts_at(earlier, timedelta(hours=25), timedelta(hours=24, minutes=1), timedelta(hours=1))
    now_due = call_in(other_campaign, audio, state=Call.State.DIALING, attempts_made=1, claimed_at=timezone.now())
    attempts_at(now_due, timedelta(hours=2))

    assert place_call(now_due.pk) == "placed"  # two in the last 24 hours: the third may go

    assert [d["to"] for d in sandbox.calls()] == [PHONE]


@pytest.mark.django_db
def test_the_cap_is_a_setting(make_call, audio, limits, make_sandbox, unreachable_public_url, settings):
    sandbox = make_sandbox()
    limits()
    settings.MAX_CALLS_PER_NUMBER_24H = 1
    retry = make_call(state=Call.State.DIALING, attempts_made=1, audio=audio, claimed_at=timezone.now())
    (first,) = attempts_at(retry, timedelta(hours=3))

    assert place_call(retry.pk) == "number cap"

    retry.refresh_from_db()
    assert retry.next_attempt_at == first.created_at + timedelta(hours=24)
    assert sandbox.calls() == []


@pytest.mark.django_db
def test_a_call_the_cap_holds_back_says_so_on_the_waiting_page(
    make_call, audio, limits, make_sandbox, unreachable_public_url, settings
):
    """The real cap, not a row set up by hand: place_call holds the call, and Why waiting names the cap."""
    make_sandbox()
    limits()
    settings.MAX_CALLS_PER_NUMBER_24H = 1
    settings.TIME_ZONE = "UTC"
    held = make_call(state=Call.State.DIALING, attempts_made=1, audio=audio, claimed_at=timezone.now())
    (first,) = attempts_at(held, timedelta(hours=3))
    retry_due = make_call(phone="+8613800000099", state=Call.State.READY, attempts_made=1, audio=audio)
    Call.objects.filter(pk=retry_due.pk).update(next_attempt_at=timezone.now() + timedelta(hours=2))

    assert place_call(held.pk) == "number cap"

    held.refresh_from_db()
    assert held.hold == Call.Hold.NUMBER_CAP
    waiting = Waiting(held.campaign)
    rows = {row.pk: row for row in waiting.page(limit=100)}
    assert rows[held.pk].reason.code == "daily_cap"
    next_try = admin_time(first.created_at + timedelta(hours=24), waiting.now)
    assert rows[held.pk].detail == f"this number had its calls for 24 hours; next try at {next_try}"
    assert rows[retry_due.pk].reason.code == "retry"  # an ordinary retry is not mistaken for the cap
    assert {c.reason.code: c.calls for c in waiting.counts()}["daily_cap"] == 1


@pytest.mark.django_db
def test_a_call_dialled_after_the_cap_lifted_no_longer_shows_the_hold(make_call, audio, limits, make_sandbox,
                                                                        unreachable_public_url, settings):
    make_sandbox()
    limits()
    settings.MAX_CALLS_PER_NUMBER_24H = 1
    call = make_call(state=Call.State.DIALING, attempts_made=1, audio=audio, claimed_at=timezone.now())
    attempts_at(call, timedelta(hours=3))
    assert place_call(call.pk) == "number cap"
    settings.MAX_CALLS_PER_NUMBER_24H = 2  # the cap no longer holds it
    Call.objects.filter(pk=call.pk).update(state=Call.State.DIALING, claimed_at=timezone.now())

    assert place_call(call.pk) == "placed"

    call.refresh_from_db()
    assert (call.state, call.hold, call.attempts_made) == (Call.State.IN_PROGRESS, "", 2)


@pytest.mark.django_db(transaction=True)
def test_two_campaigns_dialling_one_number_at_once_stay_within_the_cap(
    campaign, other_campaign, audio, limits, make_sandbox, unreachable_public_url
):
    """Both may count two earlier attempts at once; the count is made again, serialised, where the row is written."""
    sandbox = make_sandbox()
    limits()
    earlier = call_in(campaign_like(campaign, "Earlier campaign"), audio, state=Call.State.DONE, attempts_made=2)
    attempts_at(earlier, timedelta(hours=3), timedelta(hours=2))
    due = [
        call_in(c, audio, state=Call.State.DIALING, claimed_at=timezone.now()) for c in (campaign, other_campaign)
    ]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def worker(call: Call) -> None:
        try:
            barrier.wait(5)
            results.append(place_call(call.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(call,)) for call in due]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == ["number cap", "placed"]
    assert len(sandbox.calls()) == 1
    assert CallAttempt.objects.filter(call__phone=PHONE).count() == 3


@pytest.mark.django_db
def test_the_demo_stops_waiting_when_only_the_cap_holds_its_calls(make_call, audio):
    """`make demo` run again within 24 hours: the calls left wait a day for the cap, so the demo reports."""
    later = timezone.now() + timedelta(hours=20)
    held = make_call(state=Call.State.READY, audio=audio)
    Call.objects.filter(pk=held.pk).update(hold=Call.Hold.NUMBER_CAP, next_attempt_at=later)
    make_call(phone="+8613800000098", state=Call.State.DONE, audio=audio)

    assert Command._held_by_the_cap(held.campaign) == 1
    on_the_line = make_call(phone="+8613800000097", state=Call.State.IN_PROGRESS, audio=audio)
    assert Command._held_by_the_cap(held.campaign) == 0  # something still happens: keep following
    Call.objects.filter(pk=on_the_line.pk).update(state=Call.State.DONE)
    Call.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert Command._held_by_the_cap(held.campaign) == 0  # due again: the dialer will take it
