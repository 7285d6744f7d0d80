"""The admin's dashboard and call log: figures that match a campaign with known states, today in the admin's
time zone, the JSON the page refreshes from, staff-only access, and numbers masked unless a permission says."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from campaigns import dashboard
from campaigns.launch import launch_campaign
from campaigns.models import Call, CallAttempt, Campaign, Worker
from campaigns.policy import outcome_of
from herald.logmask import mask_phone
from synthesis.models import RenderedAudio

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# 10:00 in Shanghai on 10 June 2026: "today" there began at 16:00 UTC on 9 June.
NOW = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)
TODAY = NOW - timedelta(hours=1)
YESTERDAY = datetime(2026, 6, 9, 15, 59, tzinfo=UTC)  # 23:59 on the 9th in Shanghai


@pytest.fixture
def campaign(make_campaign) -> Campaign:
    campaign = make_campaign(12)
    launch_campaign(campaign)
    campaign.refresh_from_db()
    return campaign


def _attempt(call: Call, number: int, status: str, ended_at: datetime, **fields) -> CallAttempt:
    Call.objects.filter(pk=call.pk).update(attempts_made=number)
    return CallAttempt.objects.create(
        call=call, number=number, provider="twilio", status=status, ended_at=ended_at, created_at=ended_at, **fields
    )


@pytest.fixture
def known(campaign) -> dict:
    """Calls in known states and attempts with known outcomes, most ended today (Shanghai), one yesterday."""
    calls = list(campaign.calls.order_by("pk"))
    states = [Call.State.DONE] * 3 + [Call.State.FAILED, Call.State.DIALING, Call.State.IN_PROGRESS,
                                      Call.State.IN_PROGRESS, Call.State.READY]  # fmt: skip
    for call, state in zip(calls, states, strict=False):
        Call.objects.filter(pk=call.pk).update(state=state)
    attempts = [
        _attempt(calls[0], 1, S.COMPLETED, TODAY, answered_by="human", action="confirmed", path=["message", "1"]),
        _attempt(calls[1], 1, S.BUSY, YESTERDAY),
        _attempt(calls[1], 2, S.COMPLETED, TODAY, answered_by="machine_end_beep"),
        _attempt(calls[2], 1, S.COMPLETED, TODAY, answered_by="human", digits=campaign.opt_out_digit),
        _attempt(calls[3], 1, S.FAILED, TODAY, error_code="21211", error_message="not a number"),
        _attempt(calls[7], 1, S.NO_ANSWER, TODAY),
        _attempt(calls[7], 2, S.BUSY, TODAY - timedelta(minutes=5)),
        _attempt(calls[8], 1, S.FAILED, TODAY, error_code="31005"),
        _attempt(calls[9], 1, S.UNKNOWN, TODAY, error_message="the provider did not answer"),
        _attempt(calls[10], 1, S.COMPLETED, TODAY, answered_by="human", action="opted_out", path=["message", "9"]),
    ]
    return {"calls": calls, "attempts": attempts}


def test_figures_match_a_campaign_with_known_states(campaign, known, settings, django_assert_max_num_queries):
    settings.WORKER_DEAD_SECONDS = 30
    Worker.objects.create(instance=uuid.uuid4().hex, name="telephony@gone", pid=7, queues="telephony",
                          seen_at=NOW - timedelta(minutes=5), held=[["t", "x", [], {}]])  # fmt: skip
    Worker.objects.create(instance=uuid.uuid4().hex, name="telephony@alive", pid=8, seen_at=NOW)
    RenderedAudio.objects.filter(pk=RenderedAudio.objects.order_by("pk").first().pk).update(state="failed")
    user = User.objects.create_user("boss", is_staff=True)

    # Eight aggregate or bounded queries, and two for the user's permissions: none per call.
    with timezone.override(SHANGHAI), django_assert_max_num_queries(10):
        shown = dashboard.figures(user, now=NOW)

    [row] = [c for c in shown["campaigns"] if c["id"] == campaign.pk]
    assert row["total"] == 12
    assert row["finished"] == 4  # three done, one failed
    assert row["by_state"] == {"rendering": 4, "ready": 1, "dialing": 1, "in_progress": 2, "done": 3, "failed": 1}
    assert shown["on_the_line"] == {"dialing": 1, "in_progress": 2, "total": 3}
    renders = RenderedAudio.objects.values_list("state", flat=True)
    assert shown["renders"] == {s: sum(1 for r in renders if r == s) for s in ("pending", "rendering", "failed")}
    assert shown["renders"]["failed"] == 1 and shown["renders"]["pending"] >= 1
    assert [w["name"] for w in shown["stalled_workers"]] == ["telephony@gone"]
    assert shown["stalled_workers"][0]["held"] == 1

    # Today's outcomes follow policy.outcome_of, attempt by attempt; yesterday's busy is not today's.
    expected = dict.fromkeys(dashboard.OUTCOME_FILTERS, 0)
    for attempt in known["attempts"]:
        if attempt.ended_at >= datetime(2026, 6, 9, 16, 0, tzinfo=UTC):
            expected[outcome_of(attempt, campaign, permanent_error=False)[0]] += 1
    assert shown["outcomes_today"] == expected
    assert expected == {"answered": 1, "machine": 1, "busy": 1, "no_answer": 1, "failed": 2, "opted_out": 2,
                        "invalid_number": 1}  # fmt: skip
    assert shown["actions_today"] == {"confirmed": 1, "opted_out": 1}
    assert shown["time_zone"] == "Asia/Shanghai"
    assert shown["as_of"] == "2026-06-10 10:00:00"

    # Recent calls: the latest ended attempts first, masked, each linking to its call's log.
    first = shown["recent"][0]
    assert first["ended_at"] == "2026-06-10 09:00:00"
    assert first["phone"] == mask_phone(Call.objects.get(pk=first["call"]).phone)
    assert first["log_url"] == reverse("admin:campaigns_call_log", args=[first["call"]])
    assert len(shown["recent"]) == len(known["attempts"])


def test_today_is_the_admins_day(campaign, known):
    user = User.objects.create_user("boss", is_staff=True)
    # In New York it is 22:00 on 9 June: yesterday's Shanghai busy (15:59 UTC) ended "today" there.
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        shown = dashboard.figures(user, now=NOW)
    assert shown["outcomes_today"]["busy"] == 2


def _staff(*perms: str, username: str = "staff") -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="campaigns"))
    return user


def test_dashboard_and_its_json_are_for_staff_with_view_rights(client, campaign, known):
    User.objects.create_user("customer", password="pw")
    client.login(username="customer", password="pw")
    for name in ("dashboard", "dashboard_json"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]

    _staff()
    client.login(username="staff", password="pw")
    assert client.get(reverse("dashboard")).status_code == 403
    assert client.get(reverse("dashboard_json")).status_code == 403

    _staff("view_campaign", "view_call", username="viewer")
    client.login(username="viewer", password="pw")
    page = client.get(reverse("dashboard"))
    assert page.status_code == 200
    html = page.content.decode()
    assert campaign.name in html and reverse("dashboard_json") in html
    data = client.get(reverse("dashboard_json")).json()
    assert data["on_the_line"]["total"] == 3
    assert [c["total"] for c in data["campaigns"] if c["id"] == campaign.pk] == [12]
    phones = {c.phone for c in known["calls"]}
    assert data["recent"] and all(r["phone"] not in phones for r in data["recent"])
    assert all(r["phone"] in {mask_phone(p) for p in phones} for r in data["recent"])
    assert not any(p in html for p in phones)
    # The admin's home leads to the dashboard.
    assert reverse("dashboard") in client.get(reverse("admin:index")).content.decode()


def test_full_numbers_only_with_the_permission(client, campaign, known, caplog):
    _staff("view_campaign", "view_call", "view_full_number")
    client.login(username="staff", password="pw")
    data = client.get(reverse("dashboard_json")).json()
    phones = {c.phone for c in known["calls"]}
    assert data["full_numbers"] and data["recent"] and all(r["phone"] in phones for r in data["recent"])
    call = known["calls"][0]
    assert call.phone in client.get(reverse("admin:campaigns_call_log", args=[call.pk])).content.decode()
    assert call.phone in client.get(reverse("admin:campaigns_call_change", args=[call.pk])).content.decode()
    assert not any(p in record.getMessage() for record in caplog.records for p in phones)


def test_call_log_page_shows_attempts_audio_and_flow(client, campaign, known, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    call = known["calls"][1]
    RenderedAudio.objects.filter(render_key=call.audio_id).update(state=RenderedAudio.State.READY)
    CallAttempt.objects.filter(call=call, number=2).update(
        timeline=[["queued", "2026-06-10T00:59:00+00:00"], ["completed", "2026-06-10T01:00:00+00:00"]],
        path=["message", "2", "2.1"], action="rescheduled", action_detail="12月8日上午", digits="21",
    )
    CallAttempt.objects.filter(call=call, number=1).update(error_code="sip-486", error_message="Busy Here")
    _staff("view_call")
    client.login(username="staff", password="pw")

    change = client.get(reverse("admin:campaigns_call_change", args=[call.pk])).content.decode()
    log_url = reverse("admin:campaigns_call_log", args=[call.pk])
    assert log_url in change and call.phone not in change and mask_phone(call.phone) in change

    response = client.get(log_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert mask_phone(call.phone) in html and call.phone not in html
    assert "2026-06-10 08:59:00" in html and "2026-06-10 09:00:00" in html  # marks in Shanghai time
    assert "message › 2 › 2.1" in html and "rescheduled (12月8日上午)" in html
    assert "sip-486 Busy Here" in html and '<dd class="digits">21</dd>' in html
    assert "/audio/" in html and "sig=" in html and "<audio controls" in html
    assert html.index('data-attempt="1"') < html.index('data-attempt="2"')

    assert client.get(reverse("admin:campaigns_call_log", args=[999999])).status_code == 404
    _staff(username="nobody")
    client.login(username="nobody", password="pw")
    assert client.get(log_url).status_code == 403
