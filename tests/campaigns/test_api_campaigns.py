"""Campaigns through the API: created from a template campaign, then launched, paused, resumed and cancelled with
the admin's own verbs; on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import time as clock_time

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.urls import reverse

from campaigns import tokens
from campaigns.models import ApiAuditEntry, Call, CallFlow, Campaign


@pytest.fixture(autouse=True)
def fresh_rate_counts():
    cache.clear()


@pytest.fixture
def shop_token(db) -> str:
    user = User.objects.create_user("shop")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_campaign", "change_campaign", "view_campaign"])
    )
    return tokens.create_token(name="Shop", user=user, scopes=["read", "write"])[1]


def post(client, url: str, plain: str, body: object = None, **headers: str):
    return client.post(url, json.dumps(body) if body is not None else "", content_type="application/json",
                       headers={"Authorization": f"Bearer {plain}", **headers})  # fmt: skip


@pytest.fixture
def template(make_campaign) -> Campaign:
    campaign = make_campaign(
        3, weights=(2, 1), window_start=clock_time(9, 0), window_end=clock_time(20, 0), max_attempts=4,
        retry_policy={"busy": 600, "no_answer": 3600}, weekdays="01234",
    )  # fmt: skip
    campaign.flow = CallFlow.objects.create(name="Delivery flow")
    campaign.save()
    return campaign


def test_create_from_a_template_copies_variants_flow_windows_retries(
    client, template, shop_token, make_campaign
):
    tonight = make_campaign(5).contact_list  # another list, as tomorrow's deliveries would be
    body = {"template": template.pk, "name": "Deliveries 2026-12-08", "contact_list": tonight.pk}
    response = post(client, reverse("api:campaigns"), shop_token, body)
    assert response.status_code == 201, response.content
    answer = response.json()
    copy = Campaign.objects.get(pk=answer["id"])
    assert (answer["status"], answer["variants"], answer["flow"], answer["contact_list"]) == (
        "draft", ["A", "B"], "Delivery flow", tonight.pk,
    )  # fmt: skip
    copied = ["window_start", "window_end", "weekdays", "max_attempts", "retry_policy", "caller_id",
              "telephony_account_id", "flow_id", "calls_per_second", "disclosure_text"]  # fmt: skip
    assert {f: getattr(copy, f) for f in copied} == {f: getattr(template, f) for f in copied}
    assert [(v.name, v.voice_id, v.script_id, v.weight) for v in copy.variants.order_by("name")] == [
        (v.name, v.voice_id, v.script_id, v.weight) for v in template.variants.order_by("name")
    ]
    assert copy.created_by.username == "shop" and copy.launched_at is None

    again = post(client, reverse("api:campaigns"), shop_token, body)
    assert again.status_code == 400
    assert again.json()["error"] == "name: A campaign named 'Deliveries 2026-12-08' already exists."
    missing = post(client, reverse("api:campaigns"), shop_token, {**body, "name": "x", "template": 999_999})
    assert missing.json()["error"] == "template: No campaign with id 999999 to copy."


def test_launch_pause_resume_cancel(client, make_campaign, shop_token):
    campaign = make_campaign(4)
    url = lambda verb: reverse(f"api:campaign-{verb}", args=[campaign.pk])  # noqa: E731

    launched = post(client, url("launch"), shop_token, **{"Idempotency-Key": "launch-1"})
    assert launched.status_code == 200, launched.content
    assert (launched.json()["status"], launched.json()["planned"]) == ("running", 4)
    assert Call.objects.filter(campaign=campaign).count() == 4
    replay = post(client, url("launch"), shop_token, **{"Idempotency-Key": "launch-1"})
    assert replay.json() == launched.json() and replay["Idempotent-Replayed"] == "true"
    twice = post(client, url("launch"), shop_token)
    assert twice.status_code == 409
    assert (
        twice.json()["error"]
        == "Not launched: campaign is running; only draft or scheduled campaigns can be launched."
    )

    assert post(client, url("resume"), shop_token).status_code == 409
    paused = post(client, url("pause"), shop_token)
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    assert post(client, url("resume"), shop_token).json()["status"] == "running"
    cancelled = post(client, url("cancel"), shop_token).json()
    assert (cancelled["status"], cancelled["cancelled"]) == ("cancelled", 4)
    assert post(client, url("cancel"), shop_token).status_code == 409
    assert [(e.summary, e.replayed) for e in ApiAuditEntry.objects.filter(status=200).order_by("pk")] == [
        ("launch: now running", False), ("", True), ("pause: now paused", False), ("resume: now running", False),
        ("cancel: now cancelled", False),
    ]  # fmt: skip


def test_verbs_need_write_scope_and_change_permission(client, make_campaign, db):
    campaign = make_campaign(1)
    reader = User.objects.create_user("analyst")
    reader.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    read_only = tokens.create_token(name="BI", user=reader)[1]
    no_perm = tokens.create_token(name="BI write", user=reader, scopes=["read", "write"])[1]
    url = reverse("api:campaign-launch", args=[campaign.pk])
    assert "'write' scope" in post(client, url, read_only).json()["error"]
    assert post(client, url, no_perm).json()["error"] == (
        "This user needs the campaigns.change_campaign permission to launch, pause, resume or cancel campaigns."
    )
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    unknown = post(client, reverse("api:campaign-pause", args=[campaign.pk + 99]), no_perm)
    assert unknown.status_code == 403  # permissions first: nothing about other campaigns is told


@pytest.fixture
def order_system(db) -> str:
    """A token of an order system that adds contacts to campaigns and reads their calls."""
    user = User.objects.create_user("orders")
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "add_contact", "change_contact", "change_campaign", "view_campaign",
    ]))  # fmt: skip
    return tokens.create_token(name="Orders", user=user, scopes=["read", "write"])[1]


def _rows(first: int, n: int) -> list[dict]:
    return [
        {"phone": f"+86139{i:08d}", "external_id": f"JD{i:010d}", "name": f"李{i}",
         "variables": {"order_id": f"JD{i:010d}"}}
        for i in range(first, first + n)
    ]  # fmt: skip


def test_contacts_added_to_a_running_campaign_are_planned_once(client, make_campaign, order_system):
    campaign = make_campaign(3)
    from campaigns.launch import launch_campaign

    launch_campaign(campaign)
    url = reverse("api:campaign-contacts", args=[campaign.pk])
    body = {"contacts": [*_rows(0, 4), {"phone": "not a number", "external_id": "BAD1"}]}

    answer = post(client, url, order_system, body, **{"Idempotency-Key": "tonight-1"})
    assert answer.status_code == 200, answer.content
    added = answer.json()
    assert (added["created"], added["planned"], added["already_planned"]) == (4, 4, 0)
    assert [r["index"] for r in added["rejected"]] == [4]
    new_calls = Call.objects.filter(campaign=campaign, contact__external_id__startswith="JD")
    assert new_calls.count() == 4 and Call.objects.filter(campaign=campaign).count() == 7
    assert set(new_calls.values_list("state", flat=True)) <= {Call.State.RENDERING, Call.State.READY}
    # The same request again (a retry after a timeout): the first answer, nothing planned twice.
    replay = post(client, url, order_system, body, **{"Idempotency-Key": "tonight-1"})
    assert replay.json() == added and Call.objects.filter(campaign=campaign).count() == 7
    # The next batch overlaps: the contacts already in the campaign are updated, not called twice.
    overlap = post(client, url, order_system, {"contacts": _rows(2, 4)}).json()
    assert (overlap["created"], overlap["unchanged"], overlap["planned"], overlap["already_planned"]) == (2, 2, 2, 2)
    assert Call.objects.filter(campaign=campaign).count() == 9
    audit = ApiAuditEntry.objects.filter(path=url).order_by("pk").last()
    assert audit.summary.startswith(f"campaign {campaign.pk}: 2 planned; ")


def test_contacts_join_a_draft_campaigns_list_and_never_a_finished_one(client, make_campaign, order_system):
    draft = make_campaign(2)
    answer = post(client, reverse("api:campaign-contacts", args=[draft.pk]), order_system, {"contacts": _rows(0, 2)})
    assert (answer.json()["created"], answer.json()["planned"]) == (2, 0)  # launch plans them with the rest
    assert draft.contact_list.contacts.count() == 4 and not Call.objects.filter(campaign=draft).exists()

    done = make_campaign(2, status=Campaign.Status.COMPLETED)
    refused = post(client, reverse("api:campaign-contacts", args=[done.pk]), order_system, {"contacts": _rows(5, 1)})
    assert refused.status_code == 409
    assert refused.json()["error"] == "Contacts not added: the campaign is completed; start a new one from it."
    assert done.contact_list.contacts.count() == 2  # nothing written


def test_calls_are_looked_up_by_the_order_systems_external_id(client, make_campaign, order_system):
    campaign = make_campaign(2)
    from campaigns.launch import launch_campaign

    launch_campaign(campaign)
    post(client, reverse("api:campaign-contacts", args=[campaign.pk]), order_system, {"contacts": _rows(0, 2)})
    auth = {"Authorization": f"Bearer {order_system}"}

    found = client.get(reverse("api:calls"), {"external_id": "JD0000000001"}, headers=auth)
    assert found.status_code == 200, found.content
    (call,) = found.json()["calls"]
    assert (call["campaign_id"], call["external_id"], call["phone"], call["attempts"]) == (
        campaign.pk, "JD0000000001", "+8613900000001", 0,
    )  # fmt: skip
    assert {"state", "outcome", "final_digits", "final_action", "action_detail", "path"} <= call.keys()
    assert client.get(reverse("api:calls"), {"external_id": "nobody"}, headers=auth).json() == {"calls": []}
    missing = client.get(reverse("api:calls"), headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (
        400, "Say whose calls: ?external_id=<the contact's external_id>.",
    )  # fmt: skip
    in_campaign = client.get(
        reverse("api:campaign-calls", args=[campaign.pk]), {"external_id": "JD0000000000"}, headers=auth
    ).json()["calls"]
    assert [c["external_id"] for c in in_campaign] == ["JD0000000000"]
