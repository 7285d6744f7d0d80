"""The call-flow funnel in reports, downloads and the API, on a campaign whose every call and attempt is written
out below: answered by a person -> reached the menu -> each final action, per variant."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from campaigns import reports
from campaigns.lifecycle import rebuild_call_facts
from campaigns.models import (
    Call,
    CallAttempt,
    CallFlow,
    Campaign,
    Contact,
    ContactList,
    ScriptTemplate,
    Variant,
)
from telephony.models import TelephonyAccount
from voices.models import Voice

S, Out, A = Call.State, Call.Outcome, CallAttempt.Status
HOSTILE_SLOT = '=HYPERLINK("http://x","y")'

# (variant, state, outcome, [(status, answered_by, keys, listened_to_end, path, action, detail)])
CALLS = [
    # A: 7 calls. Keys "71" (an invalid key, then 1) confirm as surely as "1": the final action decides.
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "1", True, ["message", "1"], "confirmed", "")]),
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "71", True, ["message", "message", "1"], "confirmed", "")]),
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "21", True, ["message", "2", "2.1"], "rescheduled",
                                  "12月8日上午")]),
    ("A", S.DONE, Out.OPTED_OUT, [(A.COMPLETED, "human", "9", True, ["message", "9"], "opted_out", "")]),
    # Pressed 2 (the campaign's reschedule key) and hung up in the slot menu: not a reschedule.
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "2", True, ["message", "2"], "hung_up", "2")]),
    # Hung up during the message: answered by a person, never reached the menu.
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "", False, [], "", "")]),
    ("A", S.DONE, Out.NO_ANSWER, [(A.NO_ANSWER, "", "", False, [], "", "")]),
    # B: 6 calls. The latest attempt that reached the menu decides: no input first, a confirmation the next day.
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "", True, ["message", "message", "message"], "no_input",
                                  "message"),
                                 (A.COMPLETED, "human", "1", True, ["message", "1"], "confirmed", "")]),
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "0", True, ["message", "0"], "transferred", "")]),
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "0", True, ["message", "0"], "transfer_refused", "")]),
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "", True, ["message", "message", "message"], "no_input",
                                  "message")]),
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "22", True, ["message", "2", "2.2"], "rescheduled",
                                  HOSTILE_SLOT)]),
    ("B", S.DONE, Out.MACHINE, [(A.COMPLETED, "machine_end_beep", "", False, [], "", "")]),
]  # fmt: skip


def build_flow_campaign(name: str = "Flow reminders") -> Campaign:
    voice, _ = Voice.objects.get_or_create(name="Embedded zh", defaults={"engine": Voice.Engine.EMBEDDED})
    account, _ = TelephonyAccount.objects.get_or_create(name="Sandbox", defaults={"caller_ids": ["+8613800000000"]})
    contact_list = ContactList.objects.create(name=f"{name} contacts")
    script = ScriptTemplate.objects.create(name=f"{name} script", text="您好{name}，您的快递明天送达。")
    flow = CallFlow.objects.create(name=f"{name} flow")
    campaign = Campaign.objects.create(
        name=name, contact_list=contact_list, telephony_account=account, caller_id="+8613800000000",
        status=Campaign.Status.COMPLETED, flow=flow,
    )  # fmt: skip
    variants = {n: Variant.objects.create(campaign=campaign, name=n, voice=voice, script=script) for n in "AB"}
    for i, (variant, state, outcome, attempts) in enumerate(CALLS):
        phone = f"+86138{i:08d}"
        contact = Contact.objects.create(contact_list=contact_list, phone=phone, name=f"客户{i}")
        call = Call.objects.create(
            campaign=campaign, contact=contact, variant=variants[variant], phone=phone, timezone="Asia/Shanghai",
            state=state, outcome=outcome, attempts_made=len(attempts), text=f"您好客户{i}",
        )  # fmt: skip
        for number, (status, answered_by, keys, listened, path, action, detail) in enumerate(attempts, start=1):
            CallAttempt.objects.create(
                call=call, number=number, provider="twilio", status=status, answered_by=answered_by, digits=keys,
                listened_to_end=listened, path=path, action=action, action_detail=detail,
            )  # fmt: skip
    rebuild_call_facts(Call.objects.filter(campaign=campaign))
    return campaign


@pytest.fixture
def campaign(db) -> Campaign:
    return build_flow_campaign()


def funnel(row: reports.ReportRow) -> dict[str, int]:
    return {"human": row.human, "reached_menu": row.listened_to_end, **{s.action: s.calls for s in row.funnel}}


def test_funnel_per_variant(campaign):
    report = reports.campaign_report(campaign)
    total, a, b = report.rows

    assert report.has_flow
    assert funnel(a) == dict(human=6, reached_menu=5, confirmed=2, rescheduled=1, opted_out=1, transferred=0,
                             transfer_refused=0, no_input=0, hung_up=1)  # fmt: skip
    assert funnel(b) == dict(human=5, reached_menu=5, confirmed=1, rescheduled=1, opted_out=0, transferred=1,
                             transfer_refused=1, no_input=1, hung_up=0)  # fmt: skip
    assert funnel(total) == {k: funnel(a)[k] + funnel(b)[k] for k in funnel(a)}
    # Every call that reached the menu ended one way.
    for row in report.rows:
        assert sum(step.calls for step in row.funnel) == row.listened_to_end
    assert [step.share for step in a.funnel][:2] == [pytest.approx(2 / 5), pytest.approx(1 / 5)]


def test_confirmations_and_reschedules_are_final_actions_not_keys(campaign):
    report = reports.campaign_report(campaign)
    _, a, b = report.rows

    # A: "71" confirmed though it is not the confirm key; "2" hung up in the slot menu is no reschedule.
    assert (a.confirmed, a.rescheduled, a.opted_out) == (2, 1, 1)
    assert a.digits == {"1": 1, "71": 1, "21": 1, "9": 1, "2": 1}
    assert a.rate("confirm_rate") == pytest.approx(2 / 6)
    assert (b.confirmed, b.rescheduled) == (1, 1)
    assert b.rate("reschedule_rate") == pytest.approx(1 / 5)


def test_the_confirm_decision_uses_final_actions(campaign):
    report = reports.campaign_report(campaign)
    (decision,) = report.comparisons["confirm_rate"]

    assert (decision.control, decision.challenger) == ("A", "B")
    assert decision.control_rate == pytest.approx(2 / 6)
    assert decision.challenger_rate == pytest.approx(1 / 5)


def test_a_campaign_without_a_flow_counts_keys_and_has_no_funnel(campaign):
    campaign.flow = None
    campaign.save(update_fields=["flow"])
    report = reports.campaign_report(campaign)
    _, a, b = report.rows

    assert not report.has_flow
    assert (a.confirmed, a.rescheduled) == (1, 1)  # keys "1" and "2" as the campaign's confirm and reschedule keys
    assert a.actions == {} and b.actions == {}
    header, _ = reports.export_rows(report)
    assert not [c for c in header if c.startswith("action_")]


def test_voice_report_counts_flow_confirmations(campaign):
    (row,) = [r for r in reports.voice_report() if r.label == "Embedded zh"]
    assert (row.confirmed, row.rescheduled) == (3, 2)


def test_report_export_has_the_funnel_counts(campaign):
    header, rows = reports.export_rows(reports.campaign_report(campaign))
    table = [dict(zip(header, row, strict=True)) for row in rows]

    actions = [c for c in header if c.startswith("action_")]
    assert actions == [f"action_{a}" for a in reports.FUNNEL_ACTIONS]
    assert header.index(actions[-1]) < min(i for i, c in enumerate(header) if c.startswith("digit_"))
    by_variant = {r["variant"]: r for r in table}
    assert {k: by_variant["A"][k] for k in ("human", "listened_to_end", "action_confirmed", "action_hung_up")} == {
        "human": 6, "listened_to_end": 5, "action_confirmed": 2, "action_hung_up": 1,
    }  # fmt: skip
    assert by_variant[""]["action_transfer_refused"] == 1


def test_call_rows_carry_each_calls_path_action_and_slot(campaign):
    header, rows = reports.call_rows(campaign)
    calls = [dict(zip(header, row, strict=True)) for row in rows]

    assert len(calls) == len(CALLS)
    assert calls[2] | {"call_id": 0, "contact_id": 0} == {
        "call_id": 0, "contact_id": 0, "external_id": "", "phone": "+8613800000002", "variant": "A", "state": "done",
        "outcome": "answered", "attempts": 1, "final_digits": "21", "final_action": "rescheduled",
        "action_detail": "12月8日上午", "path": "message>2>2.1",
    }  # fmt: skip
    # The attempt the final action comes from: the second, not the first that ended in no input.
    assert (calls[7]["path"], calls[7]["final_action"], calls[7]["attempts"]) == ("message>1", "confirmed", 2)
    # Never reached the menu.
    assert (calls[5]["path"], calls[5]["final_action"], calls[5]["action_detail"]) == ("", "", "")


def test_call_rows_left_out_past_the_limit_are_counted(campaign):
    header, rows = reports.call_rows(campaign, limit=5)
    assert len(rows) == 6
    assert rows[-1] == [f"8 more calls: read every call from /api/v1/campaigns/{campaign.pk}/calls"]


def test_calls_in_downloads_guard_formulas(admin_client, campaign):
    from openpyxl import load_workbook

    response = admin_client.get(reverse("admin:campaigns_campaign_report_xlsx", args=[campaign.pk]))
    book = load_workbook(io.BytesIO(response.content))
    sheet = book["Calls"]
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    values = [cell.value for cell in cells]
    assert "'" + HOSTILE_SLOT in values and "message>2>2.2" in values
    header = [cell.value for cell in next(book["Variants"].iter_rows(max_row=1))]
    assert "action_confirmed" in header

    response = admin_client.get(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["action_confirmed"] for r in rows] == ["3", "2", "1"]


def test_report_page_shows_the_funnel(admin_client, campaign):
    response = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    html = response.content.decode()

    assert response.status_code == 200
    assert 'id="funnel"' in html and "Reached the menu" in html and "Transfer refused" in html
    row_a = html.split('id="funnel"')[1].split('data-row="A"')[1]  # the funnel's row of variant A
    assert '<td class="num" data-step="reached_menu">5</td>' in row_a.split("</tr>")[0]
    assert '<td class="num" data-step="confirmed">2<span class="ci">40%</span></td>' in row_a.split("</tr>")[0]


def test_report_page_without_a_flow_has_no_funnel(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(flow=None)
    response = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    assert response.status_code == 200 and 'id="funnel"' not in response.content.decode()


@pytest.fixture
def analyst_client(client, db):
    user = User.objects.create_user("analyst", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    return client


def test_api_report_has_the_funnel(analyst_client, campaign):
    data = analyst_client.get(reverse("api:campaign-report", args=[campaign.pk])).json()

    assert data["campaign"]["flow"] == "Flow reminders flow"
    assert data["funnel"][0] == {"variant": None, "human": 11, "reached_menu": 10, "confirmed": 3, "rescheduled": 2,
                                 "opted_out": 1, "transferred": 1, "transfer_refused": 1, "no_input": 1,
                                 "hung_up": 1}  # fmt: skip
    assert [f["variant"] for f in data["funnel"]] == [None, "A", "B"]
    assert data["variants"][0]["actions"]["confirmed"] == 2 and data["variants"][0]["confirmed"] == 2


def test_api_calls_pages_through_every_call(analyst_client, campaign):
    url = reverse("api:campaign-calls", args=[campaign.pk])
    first = analyst_client.get(url, {"limit": 10}).json()
    assert len(first["calls"]) == 10 and first["next"]
    second = analyst_client.get(first["next"]).json()
    assert len(second["calls"]) == 3 and second["next"] is None
    calls = first["calls"] + second["calls"]
    assert [c["call_id"] for c in calls] == sorted(Call.objects.filter(campaign=campaign).values_list("pk", flat=True))
    assert (calls[11]["path"], calls[11]["action_detail"]) == ("message>2>2.2", HOSTILE_SLOT)  # JSON: no guard


@pytest.mark.parametrize(
    ("params", "words"),
    [({"limit": "0"}, "limit=0 is out of range"), ({"limit": "5000"}, "1 to 1000"), ({"after": "x"}, "after='x'")],
)
def test_api_calls_refuses_bad_paging(analyst_client, campaign, params, words):
    response = analyst_client.get(reverse("api:campaign-calls", args=[campaign.pk]), params)
    assert response.status_code == 400 and words in response.json()["error"]


# --- the demo's flow ---------------------------------------------------------------------------------


def test_the_demo_campaign_runs_a_flow_its_simulated_callees_walk(db):
    from campaigns.demo import DEMO_KEYS, seed_demo
    from campaigns.launch import launch_campaign
    from campaigns.models import CallClip, VariantClip
    from sandbox.twilio.cli import _parse_digits

    demo = seed_demo(contacts=12, api_base_url="http://127.0.0.1:9", account_sid="AC" + "0" * 32,
                     auth_token="t" * 32, call_flow=True)  # fmt: skip
    campaign = demo.campaign
    flow = campaign.flow
    assert flow.problems() == []
    root = flow.build().root
    assert {key: node.action for key, node in root.children.items()} == {
        "1": "confirm", "2": "reschedule", "0": "transfer", campaign.opt_out_digit: "opt_out", "*": "repeat",
    }  # fmt: skip
    slots = flow.nodes.filter(action="slot").order_by("key")
    assert [(s.path, s.slot_days, s.slot_label) for s in slots] == [("2.1", 1, "上午"), ("2.2", 1, "下午")]

    # The sandbox's callees press every key the flow has, and sometimes nothing.
    keys = _parse_digits(DEMO_KEYS)
    assert set(root.children) <= set(keys) and sum(keys.values()) < 1

    # A second demo reuses the flow.
    again = seed_demo(contacts=3, api_base_url="http://127.0.0.1:9", account_sid="AC" + "0" * 32,
                      auth_token="t" * 32, call_flow=True)  # fmt: skip
    assert again.campaign.flow_id == flow.pk

    # Few renders: each clip without variables once per variant; slot confirmations per callee date only.
    assert launch_campaign(campaign) == 12
    fixed = VariantClip.objects.filter(variant__campaign=campaign)
    # (The message has the callee's name: it is each call's own audio, as without a flow.)
    assert fixed.count() == 2 * len(flow.clip_texts().keys() - {"2.1", "2.2"})
    per_callee = CallClip.objects.filter(call__campaign=campaign)
    assert set(per_callee.values_list("name", flat=True)) == {"2.1", "2.2"}
    voices = campaign.calls.values("variant_id").distinct().count()  # the split may leave a voice without calls
    assert per_callee.values("audio_id").distinct().count() == 2 * voices  # two slots per voice, one date


def test_seed_demo_without_a_flow_leaves_the_message_alone(db):
    from campaigns.demo import seed_demo

    demo = seed_demo(contacts=2, api_base_url="http://127.0.0.1:9", account_sid="AC" + "0" * 32, auth_token="t" * 32)
    assert demo.campaign.flow_id is None
