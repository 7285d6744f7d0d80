"""Why each contact not yet called is waiting: every reason for a call in that situation, counts that match
direct queries, pages that cover each reason exactly once, and a page behind the admin login."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Q
from django.urls import reverse

from campaigns.launch import launch_campaign
from campaigns.models import Call, Campaign, DoNotCall
from campaigns.waiting import REASONS, Waiting

pytestmark = pytest.mark.django_db

# Wednesday 10 June 2026, 00:30 UTC: 08:30 on the 10th in Shanghai (a holiday below), 21:30 on the 9th in
# São Paulo (after the window), 20:30 on the 9th in New York (inside it).
NOW = datetime(2026, 6, 10, 0, 30, tzinfo=UTC)
HOLIDAY, CLOSED, OPEN = "Asia/Shanghai", "America/Sao_Paulo", "America/New_York"


@pytest.fixture
def campaign(make_campaign) -> Campaign:
    campaign = make_campaign(
        20, window_start=time(9), window_end=time(21), holidays=["2026-06-10"], weekday_hours={}
    )
    launch_campaign(campaign)
    campaign.refresh_from_db()
    Call.objects.filter(campaign=campaign).update(
        state=Call.State.READY, timezone=OPEN, next_attempt_at=NOW - timedelta(minutes=5), error=""
    )
    return campaign


def _calls(campaign: Campaign) -> list[Call]:
    return list(campaign.calls.order_by("pk"))


def _set(call: Call, **fields) -> int:
    Call.objects.filter(pk=call.pk).update(**fields)
    return call.pk


def _reasons(campaign: Campaign, now: datetime = NOW) -> dict[int, tuple[str, str]]:
    waiting = Waiting(campaign, now)
    return {row.pk: (row.reason.code, row.detail) for row in waiting.page(limit=1000)}


def test_each_reason_appears_for_a_call_in_that_situation(campaign, settings):
    settings.TIME_ZONE = "Asia/Shanghai"  # the admin's zone, for retry times
    calls = iter(_calls(campaign))
    expected = {
        _set(next(calls), state=Call.State.DIALING): "dialling",
        _set(next(calls), state=Call.State.IN_PROGRESS, attempts_made=1): "dialling",
        _set(next(calls), state=Call.State.INVALID, error="missing variable order_id"): "script_error",
        _set(next(calls), state=Call.State.FAILED, outcome=Call.Outcome.FAILED,
             error="render failed: engine crashed"): "render_failed",
        _set(next(calls), state=Call.State.DONE, outcome=Call.Outcome.DO_NOT_CALL): "do_not_call",
        _set(next(calls), state=Call.State.DONE, outcome="no_consent"): "no_consent",
        _set(next(calls), state=Call.State.RENDERING): "rendering",
        _set(next(calls), hold=Call.Hold.NUMBER_CAP, attempts_made=1,
             next_attempt_at=NOW + timedelta(hours=3)): "daily_cap",
        _set(next(calls), attempts_made=1, next_attempt_at=datetime(2026, 6, 10, 1, 15, tzinfo=UTC)): "retry",
        _set(next(calls), next_attempt_at=NOW + timedelta(days=1)): "scheduled",
        _set(next(calls), timezone="Not/AZone"): "unknown_zone",
        _set(next(calls), timezone=HOLIDAY): "holiday",
        _set(next(calls), timezone=CLOSED): "window_closed",
        _set(next(calls)): "pacing",
    }
    on_dnc = next(calls)
    DoNotCall.objects.create(phone=on_dnc.phone, source="keypress")
    expected[on_dnc.pk] = "do_not_call"
    expected[_set(next(calls), state=Call.State.CANCELLED, outcome=Call.Outcome.DO_NOT_CALL)] = "do_not_call"
    expected[_set(next(calls), state=Call.State.CANCELLED, error="campaign ended before this call could be made")] = (
        "campaign_over"
    )
    # Called already: not waiting, not listed.
    answered = _set(next(calls), state=Call.State.DONE, outcome=Call.Outcome.ANSWERED, attempts_made=1)
    failed_after_dialling = _set(next(calls), state=Call.State.FAILED, outcome=Call.Outcome.FAILED, attempts_made=1)
    cancelled = _set(next(calls), state=Call.State.CANCELLED, outcome=Call.Outcome.DO_NOT_CALL, attempts_made=1)

    found = _reasons(campaign)
    for pk, code in expected.items():
        assert found[pk][0] == code, f"call {pk}: {found[pk]} (expected {code})"
    assert not {answered, failed_after_dialling, cancelled} & set(found)
    details = {code: found[pk][1] for pk, code in expected.items()}
    assert details["retry"] == "retry at 09:15 (Asia/Shanghai) (attempt 2)"
    assert details["render_failed"] == "render failed: engine crashed"
    assert details["campaign_over"] == "campaign ended before this call could be made"
    # 10 June is a holiday on every callee's own calendar: São Paulo's window next opens on the 11th.
    assert details["window_closed"] == (
        "opens at 09:00 on Thu 11 Jun callee-local (America/Sao_Paulo), in 35 h 30 min"
    )
    assert details["holiday"] == (
        "holiday in the callee's calendar; opens at 09:00 tomorrow callee-local (Asia/Shanghai), in 24 h 30 min"
    )
    assert details["daily_cap"] == "this number had its calls for 24 hours; next try at 11:30 (Asia/Shanghai)"
    assert details["pacing"].startswith("ready, due and inside the window")
    # The summary breaks the zone-bound reasons down by zone, on the callee's clock.
    counts = {count.reason.code: count for count in Waiting(campaign, NOW).counts()}
    assert [(z.timezone, z.calls, z.local_now) for z in counts["window_closed"].zones] == [(CLOSED, 1, "Tue 21:30")]
    assert counts["window_closed"].zones[0].opening.startswith("opens at 09:00 on Thu 11 Jun")
    assert details["unknown_zone"] == "time zone 'Not/AZone' is not known, so the callee's local time cannot be told"


def test_paused_and_not_started_campaigns_say_so(campaign):
    call = _calls(campaign)[0]
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.PAUSED, paused_reason="paused automatically: 10 of the last 20 attempts failed"
    )
    campaign.refresh_from_db()
    assert _reasons(campaign)[call.pk] == ("paused", "paused automatically: 10 of the last 20 attempts failed")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED, paused_reason="")
    campaign.refresh_from_db()
    assert _reasons(campaign)[call.pk][0] == "not_started"
    # Rendering and dialling say what they are whatever the campaign's state.
    _set(call, state=Call.State.RENDERING)
    assert _reasons(campaign)[call.pk][0] == "rendering"


def test_unreadable_rules_are_a_reason_not_a_crash(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(weekday_hours={"5": ["10:00", "25:00"]})
    campaign.refresh_from_db()
    code, detail = _reasons(campaign)[_calls(campaign)[0].pk]
    assert code == "rules_invalid" and "'25:00' is not a time" in detail


def _scatter(campaign: Campaign, seed: int) -> None:
    """Calls in every situation at random, plus some on the do-not-call list."""
    rng = random.Random(seed)
    zones = [OPEN, CLOSED, HOLIDAY, "Asia/Kolkata", "Europe/Berlin", "Not/AZone"]
    for call in _calls(campaign):
        fields = {
            "state": rng.choice([Call.State.READY] * 6 + Call.State.values),
            "timezone": rng.choice(zones),
            "attempts_made": rng.choice([0, 0, 1, 2]),
            "next_attempt_at": NOW + timedelta(minutes=rng.choice([-60, -1, 0, 1, 90, 2000])),
            "error": rng.choice(["", "", "render failed"]),
            "hold": rng.choice(["", "", Call.Hold.NUMBER_CAP]),
            "outcome": rng.choice(["", Call.Outcome.DO_NOT_CALL, "no_consent", Call.Outcome.ANSWERED]),
        }
        _set(call, **fields)
        if rng.random() < 0.1:
            DoNotCall.objects.get_or_create(phone=call.phone)


def _direct(campaign: Campaign) -> dict[str, set[int]]:
    """Each reason's calls by plain queries, written out independently of campaigns.waiting: a call takes
    the first reason whose query finds it."""
    S = Call.State
    calls = Call.objects.filter(campaign=campaign).filter(
        Q(state__in=[S.RENDERING, S.READY, S.DIALING, S.IN_PROGRESS])
        | Q(state__in=[S.DONE, S.FAILED, S.INVALID, S.CANCELLED], attempts_made=0)
    )
    dnc = set(DoNotCall.objects.values_list("phone", flat=True))
    claimed: set[int] = set()

    def take(query) -> set[int]:
        pks = set(query.values_list("pk", flat=True)) - claimed
        claimed.update(pks)
        return pks

    ready = calls.filter(state=S.READY)
    due = ready.filter(next_attempt_at__lte=NOW)
    later = ready.filter(next_attempt_at__gt=NOW)
    result = {
        "dialling": take(calls.filter(state__in=[S.DIALING, S.IN_PROGRESS])),
        "script_error": take(calls.filter(state=S.INVALID)),
        "render_failed": take(calls.filter(state=S.FAILED)),
        "do_not_call": take(calls.filter(state__in=[S.DONE, S.CANCELLED], outcome=Call.Outcome.DO_NOT_CALL))
        | take(calls.filter(state__in=[S.RENDERING, S.READY], phone__in=dnc)),
        "no_consent": take(calls.filter(state=S.DONE, outcome="no_consent")),
        "campaign_over": take(calls.filter(state=S.CANCELLED)),
        "rendering": take(calls.filter(state=S.RENDERING)),
        "daily_cap": take(later.filter(hold=Call.Hold.NUMBER_CAP)),
        "retry": take(later.filter(attempts_made__gt=0)),
        "scheduled": take(later),
        "unknown_zone": take(due.filter(timezone="Not/AZone")),
        # At NOW it is already 10 June (the holiday) in Shanghai, Kolkata and Berlin.
        "holiday": take(due.filter(timezone__in=[HOLIDAY, "Asia/Kolkata", "Europe/Berlin"])),
        "window_closed": take(due.filter(timezone=CLOSED)),
        "pacing": take(due.filter(timezone=OPEN)),
        "other": take(calls),
    }
    return {code: pks for code, pks in result.items() if pks}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_and_pages_equal_direct_queries(make_campaign, seed):
    campaign = make_campaign(
        150, window_start=time(9), window_end=time(21), holidays=["2026-06-10"], weekday_hours={}
    )
    launch_campaign(campaign)
    campaign.refresh_from_db()
    _scatter(campaign, seed)
    expected = _direct(campaign)
    assert {"pacing", "window_closed", "holiday", "do_not_call", "retry"} <= set(expected)

    waiting = Waiting(campaign, NOW)
    counts = {count.reason.code: count.calls for count in waiting.counts()}
    assert counts == {code: len(pks) for code, pks in expected.items()}
    for code, pks in expected.items():
        paged, after = [], 0
        while rows := waiting.page(code, after=after, limit=7):
            paged += [row.pk for row in rows]
            after = rows[-1].pk
        assert sorted(paged) == sorted(pks), code
    everything = [row.pk for row in waiting.page(limit=1000)]
    assert len(everything) == sum(counts.values()) == len(set(everything))


def test_reasons_are_listed_once_each():
    codes = [reason.code for reason in REASONS]
    assert len(codes) == len(set(codes))


# --- the admin page ------------------------------------------------------------------------------


def test_waiting_page_needs_the_admin_login(client, campaign):
    url = reverse("admin:campaigns_campaign_waiting", args=[campaign.pk])
    response = client.get(url)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    User.objects.create_user("clerk", password="pw", is_staff=True)  # staff, but no permission on campaigns
    client.login(username="clerk", password="pw")
    assert client.get(url).status_code == 403


def test_waiting_page_shows_counts_and_a_page_of_calls(admin_client, campaign, django_assert_max_num_queries):
    calls = _calls(campaign)
    _set(calls[0], timezone="Not/AZone")
    _set(calls[1], state=Call.State.RENDERING)
    url = reverse("admin:campaigns_campaign_waiting", args=[campaign.pk])
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "unknown time zone" in page and "rendering" in page and 'data-reason="unknown_zone"' in page
    assert calls[0].phone not in page  # numbers are masked
    only = admin_client.get(url, {"reason": "rendering"}).content.decode()
    assert f'data-call="{calls[1].pk}"' in only and f'data-call="{calls[0].pk}"' not in only
    # Linked from the campaign list and from its change page.
    assert url in admin_client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert url in admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()


def test_waiting_page_pages_by_call_id(admin_client, make_campaign):
    campaign = make_campaign(130)
    launch_campaign(campaign)
    url = reverse("admin:campaigns_campaign_waiting", args=[campaign.pk])
    first = admin_client.get(url)
    assert first.context["next_after"] is not None and len(first.context["rows"]) == 100
    second = admin_client.get(url, {"after": first.context["next_after"]})
    assert len(second.context["rows"]) == 30 and second.context["next_after"] is None
    seen = [r.pk for r in first.context["rows"]] + [r.pk for r in second.context["rows"]]
    assert sorted(seen) == sorted(campaign.calls.values_list("pk", flat=True))


def test_admin_form_rejects_unreadable_calling_rules(rf, admin_user, campaign):
    model_admin = admin.site._registry[Campaign]
    request = rf.get("/")
    request.user = admin_user
    fields = ["window_start", "window_end", "weekdays", "weekday_hours", "holidays"]
    form_class = model_admin.get_form(request, campaign, fields=fields)
    data = {"window_start": "09:00", "window_end": "20:00", "weekdays": list("0123456"),
            "weekday_hours_10": "10:00", "weekday_hours_11": "25:00", "holidays": "2026-10-01"}  # fmt: skip
    form = form_class(data=data, instance=campaign)
    assert not form.is_valid()
    assert form.errors["weekday_hours"] == ["Saturday to: enter a time like 09:30"]
    form = form_class(data={**data, "weekdays": list("01234"), "weekday_hours_11": "18:00"}, instance=campaign)
    assert not form.is_valid()  # hours for a day that is not called on: the calling rules' own check, on save
    assert form.errors["weekday_hours"][0].startswith("weekday_hours['5'] gives hours for Saturday")
    form = form_class(data={**data, "weekday_hours_11": "18:00"}, instance=campaign)
    assert form.is_valid(), form.errors
