"""The dialer sweep: ready calls whose callee-local window is open go to the telephony queue, within each
campaign's and account's rate and concurrency limits; campaigns start and finish on time."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from campaigns import lifecycle
from campaigns.models import Call, Campaign
from campaigns.windows import calling_window
from telephony.tasks import enqueue_place_call

ACTIVE_STATES = (Call.State.DIALING, Call.State.IN_PROGRESS)


@dataclass
class SweepResult:
    enqueued: list[int] = field(default_factory=list)
    started: int = 0
    completed: list[int] = field(default_factory=list)


def _rate_budget(calls_per_second: float) -> int:
    return max(1, math.floor(calls_per_second * settings.SWEEP_INTERVAL))


def sweep(now: datetime | None = None) -> SweepResult:
    """Move ready calls whose callee-local window is open to the telephony queue, within rate limits."""
    now = now or timezone.now()
    result = SweepResult()
    result.started = lifecycle.start_due(now)
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING, ends_at__lte=now):
        lifecycle.finish(campaign, now, cancel_remaining=True)
        result.completed.append(campaign.pk)
    active = Counter(
        dict(
            Call.objects.filter(state__in=ACTIVE_STATES)
            .values_list("campaign_id")
            .annotate(n=Count("pk"))
            .values_list("campaign_id", "n")
        )
    )
    account_active: Counter = Counter()
    campaigns = list(Campaign.objects.filter(status=Campaign.Status.RUNNING).select_related("telephony_account"))
    for campaign in campaigns:
        account_active[campaign.telephony_account_id] += active[campaign.pk]
    account_budget: dict[int, int] = {}
    for campaign in campaigns:
        account = campaign.telephony_account
        if account.pk not in account_budget:
            account_budget[account.pk] = min(
                _rate_budget(account.calls_per_second), account.max_concurrent_calls - account_active[account.pk]
            )
        budget = min(
            campaign.max_concurrent_calls - active[campaign.pk],
            _rate_budget(campaign.calls_per_second),
            account_budget[account.pk],
        )
        if budget <= 0:
            continue
        picked = _pick_dialable(campaign, now, budget)
        spacing = 1.0 / min(campaign.calls_per_second, account.calls_per_second)
        for i, pk in enumerate(picked):
            if lifecycle.claim(pk, now):
                enqueue_place_call(pk, delay=i * spacing)
                result.enqueued.append(pk)
                account_budget[account.pk] -= 1
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING).exclude(
        pk__in=Call.objects.filter(state__in=lifecycle.OPEN).values("campaign_id")
    ):
        lifecycle.finish(campaign, now, cancel_remaining=False)
        result.completed.append(campaign.pk)
    return result


def _pick_dialable(campaign: Campaign, now: datetime, budget: int) -> list[int]:
    """Up to `budget` ready calls whose callee may be called now, oldest due first."""
    # Only callees whose zone is open now are read (whether a callee may be called depends on its zone and the
    # time alone): closed zones early in the order cannot starve open ones, and no row needs a second look.
    open_zones = calling_window(campaign).open_zones(now)
    if not open_zones:
        return []
    due = Call.objects.filter(
        campaign=campaign, state=Call.State.READY, next_attempt_at__lte=now, timezone__in=open_zones
    )
    return list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:budget])

