from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from campaigns.demo import zone_where_hour_is
from campaigns.dialer import sweep
from campaigns.launch import launch_campaign
from campaigns.lifecycle import release_stale_claims
from campaigns.models import Call, Campaign
from campaigns.windows import is_open

pytestmark = pytest.mark.django_db


def _ready(campaign) -> None:
    campaign.calls.filter(state=Call.State.RENDERING).update(state=Call.State.READY)


def test_window_is_callee_local_and_hard_capped():
    noon_utc = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    # 20:00 in Shanghai, 07:00 in New York.
    assert is_open("Asia/Shanghai", noon_utc, time(9), time(21), "0123456")
    assert not is_open("America/New_York", noon_utc, time(0), time(23, 59), "0123456")  # before 08:00 cap
    late = noon_utc + timedelta(hours=1, minutes=30)  # 21:30 Shanghai
    assert not is_open("Asia/Shanghai", late, time(0), time(23, 59), "0123456")  # after 21:00 cap
    assert not is_open("Asia/Shanghai", noon_utc, time(9), time(21), "56")  # weekend only
    assert not is_open("Not/AZone", noon_utc, time(0), time(23, 59), "0123456")


def test_sweep_claims_within_concurrency_and_rate(make_campaign, django_capture_on_commit_callbacks):
    campaign = make_campaign(30, max_concurrent_calls=4, calls_per_second=100)
    launch_campaign(campaign)
    _ready(campaign)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = sweep()
    assert len(result.enqueued) == 4
    assert len(callbacks) >= 4
    assert campaign.calls.filter(state=Call.State.DIALING).count() == 4
    # A second sweep sees the four still on the line and claims nothing.
    assert sweep().enqueued == []


def test_sweep_rate_budget_per_interval(make_campaign, settings):
    settings.SWEEP_INTERVAL = 1.0
    campaign = make_campaign(30, max_concurrent_calls=100, calls_per_second=3)
    launch_campaign(campaign)
    _ready(campaign)
    assert len(sweep().enqueued) == 3


def test_sweep_skips_callees_outside_their_window(make_campaign):
    campaign = make_campaign(5)
    launch_campaign(campaign)
    _ready(campaign)
    # Move two callees to a zone where it is 03:00 now.
    night_zone = zone_where_hour_is(timezone.now(), 3)
    pks = list(campaign.calls.values_list("pk", flat=True)[:2])
    Call.objects.filter(pk__in=pks).update(timezone=night_zone)
    claimed = sweep().enqueued
    assert len(claimed) == 3 and not set(claimed) & set(pks)


def test_sweep_waits_for_next_attempt_time_and_paused_campaigns(make_campaign):
    campaign = make_campaign(3)
    launch_campaign(campaign)
    _ready(campaign)
    campaign.calls.update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert sweep().enqueued == []
    campaign.calls.update(next_attempt_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    assert sweep().enqueued == []


def test_campaign_completes_when_no_call_is_open(make_campaign):
    campaign = make_campaign(2)
    launch_campaign(campaign)
    campaign.calls.update(state=Call.State.DONE, outcome=Call.Outcome.ANSWERED)
    assert campaign.pk in sweep().completed
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED and campaign.finished_at


def test_campaign_end_time_cancels_what_was_not_dialled(make_campaign):
    campaign = make_campaign(3)
    launch_campaign(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(ends_at=timezone.now() - timedelta(seconds=1))
    sweep()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.CANCELLED}


def test_stale_claims_without_an_attempt_go_back_to_ready(make_campaign):
    campaign = make_campaign(2)
    launch_campaign(campaign)
    _ready(campaign)
    sweep()
    later = timezone.now() + timedelta(hours=1)
    assert release_stale_claims(now=later) == 2
    assert set(campaign.calls.values_list("state", flat=True)) == {Call.State.READY}
