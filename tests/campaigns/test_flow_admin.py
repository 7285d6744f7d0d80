"""The call flow editor and "walk the call": what staff save is checked, what they hear is the flow's own walk."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from campaigns.flow_admin import flow_problems
from campaigns.models import CallFlow, Campaign, Contact, ContactList, FlowNode
from synthesis.models import RenderedAudio
from voices.models import Voice

A = FlowNode.Action
NODE_FIELDS = ("under", "key", "action", "text", "slot_label", "slot_days", "slot_field", "transfer_to",
               "transfer_fallback_text")


def flow_post(name: str, rows: list[dict], *, initial: list[FlowNode] = (), **flow_fields) -> dict:
    """The change form as a browser posts it: the flow's fields and one inline row per key."""
    data = {
        "name": name, "menu_text": "确认请按1，改期请按2，退订请按9，重听请按星号。", "invalid_text": "按键无效。",
        "no_input_text": "没有听到按键。", "goodbye_text": "再见。", "max_prompts": "3", "input_timeout": "5",
        "nodes-TOTAL_FORMS": str(len(rows)), "nodes-INITIAL_FORMS": str(len(initial)),
        "nodes-MIN_NUM_FORMS": "0", "nodes-MAX_NUM_FORMS": "1000",
        **flow_fields,
    }
    for i, row in enumerate(rows):
        for field in NODE_FIELDS:
            data[f"nodes-{i}-{field}"] = row.get(field, "")
        if i < len(initial):
            data[f"nodes-{i}-id"] = str(initial[i].pk)
            data[f"nodes-{i}-flow"] = str(initial[i].flow_id)
        if row.get("DELETE"):
            data[f"nodes-{i}-DELETE"] = "on"
    return data


GOOD_ROWS = [
    {"key": "1", "action": "confirm", "text": "感谢您的确认，{name}。"},
    {"key": "2", "action": "reschedule", "text": "明天上午请按1，明天下午请按2。"},
    {"under": "2", "key": "1", "action": "slot", "text": "已为您改到{slot}。", "slot_label": "上午", "slot_days": "1"},
    {"under": "2", "key": "2", "action": "slot", "text": "已为您改到{slot}。", "slot_label": "下午", "slot_days": "1"},
    {"key": "9", "action": "opt_out", "text": "您将不会再接到我们的电话。"},
    {"key": "*", "action": "repeat"},
]


def error_messages(response) -> list[str]:
    return [m.message for m in response.context["messages"] if m.level_tag == "error"]


@pytest.fixture
def flow(db) -> CallFlow:
    """1 confirm, 2 reschedule (slots 2.1, 2.2), 9 opt out, * repeat."""
    flow = CallFlow.objects.create(name="送货", menu_text="确认请按1，改期请按2。")
    FlowNode.objects.create(flow=flow, key="1", action=A.CONFIRM, text="感谢您的确认。")
    reschedule = FlowNode.objects.create(flow=flow, key="2", action=A.RESCHEDULE, text="上午请按1，下午请按2。")
    for key, label in (("1", "上午"), ("2", "下午")):
        FlowNode.objects.create(flow=flow, parent=reschedule, key=key, action=A.SLOT, text="已改到{slot}。",
                                slot_days=1, slot_label=label)
    FlowNode.objects.create(flow=flow, key="9", action=A.OPT_OUT, text="您将不会再接到我们的电话。")
    FlowNode.objects.create(flow=flow, key="*", action=A.REPEAT)
    return flow


@pytest.fixture
def flow_campaign(make_campaign, flow) -> Campaign:
    campaign = make_campaign(2, flow=flow)
    return campaign


# --- the editor ---------------------------------------------------------------------------------------------


def test_a_good_flow_saves_with_slots_under_their_key(admin_client):
    response = admin_client.post(reverse("admin:campaigns_callflow_add"), flow_post("送货", GOOD_ROWS), follow=True)
    assert error_messages(response) == []
    assert any("was added successfully" in m.message for m in response.context["messages"])
    flow = CallFlow.objects.get(name="送货")
    assert flow.problems() == []
    assert sorted((n.path, n.action) for n in flow.nodes.select_related("parent")) == [
        ("*", "repeat"), ("1", "confirm"), ("2", "reschedule"), ("2.1", "slot"), ("2.2", "slot"), ("9", "opt_out"),
    ]
    # The change page shows the slots back under their key, in menu order.
    page = admin_client.get(reverse("admin:campaigns_callflow_change", args=[flow.pk]))
    forms = page.context["inline_admin_formsets"][0].formset.forms
    rows = [(f.initial.get("under", ""), f.instance.key) for f in forms]
    assert rows == [("", "*"), ("", "1"), ("", "2"), ("2", "1"), ("2", "2"), ("", "9")]
    assert "flow_problems" in page.context and page.context["flow_problems"] == []
    assert reverse("admin:campaigns_callflow_walk", args=[flow.pk]) in page.content.decode()


def test_a_flow_with_problems_is_saved_but_kept_on_its_page_with_every_problem(admin_client):
    rows = [
        {"key": "1", "action": "confirm", "text": ""},
        {"key": "2", "action": "reschedule", "text": "明天上午请按1。"},
        {"key": "0", "action": "transfer", "text": "正在转接。"},
    ]
    response = admin_client.post(reverse("admin:campaigns_callflow_add"), flow_post("坏的", rows))
    flow = CallFlow.objects.get(name="坏的")
    assert response.status_code == 302 and response.url == reverse("admin:campaigns_callflow_change", args=[flow.pk])
    page = admin_client.get(response.url)
    errors = [m.message for m in page.context["messages"] if m.level_tag == "error"]
    assert errors == flow_problems(flow) and len(errors) == 3, errors
    assert any(e.startswith("key 2:") and "needs at least one slot" in e for e in errors), errors
    warnings = [m.message for m in page.context["messages"] if m.level_tag == "warning"]
    assert warnings == ["The flow “坏的” was saved, but no campaign can use it until these are fixed:"]
    assert not any("successfully" in m.message for m in page.context["messages"])
    assert page.context["flow_problems"] == errors
    assert any(e.startswith("key 1") and "says nothing" in e for e in errors), errors
    assert any(e.startswith("key 0:") and "needs a number" in e for e in errors), errors
    listing = admin_client.get(reverse("admin:campaigns_callflow_changelist")).content.decode()
    assert f"{len(errors)} problems: cannot be used" in listing

    # Fixed in the same page: slots added under key 2, the texts written, the transfer given its number.
    nodes = list(flow.nodes.order_by("key"))  # 0, 1, 2
    fixed = [
        {"key": "0", "action": "transfer", "text": "正在转接。", "transfer_to": "+864008001234"},
        {"key": "1", "action": "confirm", "text": "谢谢。"},
        {"key": "2", "action": "reschedule", "text": "明天上午请按1。"},
        {"under": "2", "key": "1", "action": "slot", "text": "已改到{slot}。", "slot_days": "1", "slot_label": "上午"},
    ]
    response = admin_client.post(page.request["PATH_INFO"], flow_post("坏的", fixed, initial=nodes), follow=True)
    assert error_messages(response) == []
    assert flow.problems() == []
    assert response.context["cl"]  # back on the list, as after any good save
    assert "ready" in response.content.decode()


def test_a_slot_under_a_key_that_is_not_there_is_a_form_error(admin_client):
    rows = [
        {"key": "1", "action": "confirm", "text": "谢谢。"},
        {"under": "3", "key": "1", "action": "slot", "text": "已改到{slot}。", "slot_days": "1"},
        {"key": "1", "action": "opt_out", "text": "不再来电。"},
    ]
    response = admin_client.post(reverse("admin:campaigns_callflow_add"), flow_post("孤儿", rows))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert "there is no key 3 in the message's menu" in errors[1]["under"][0]
    assert "key 1 is already used in the message's menu" in errors[2]["key"][0]
    assert not CallFlow.objects.filter(name="孤儿").exists()


def test_deleting_a_reschedule_key_takes_its_slots_along(admin_client, flow):
    nodes = sorted(flow.nodes.select_related("parent"), key=lambda n: n.path)  # *, 1, 2, 2.1, 2.2, 9
    rows = [{"under": n.parent.key if n.parent_id else "", "key": n.key, "action": n.action, "text": n.text,
             "slot_days": n.slot_days or "", "slot_label": n.slot_label} for n in nodes]
    for row in rows[2:5]:
        row["DELETE"] = True
    response = admin_client.post(reverse("admin:campaigns_callflow_change", args=[flow.pk]),
                                 flow_post(flow.name, rows, initial=nodes), follow=True)
    assert error_messages(response) == []
    assert sorted(n.path for n in flow.nodes.select_related("parent")) == ["*", "1", "9"]


@pytest.mark.parametrize("status", [Campaign.Status.RUNNING, Campaign.Status.PAUSED])
def test_a_flow_under_a_running_or_paused_campaign_is_read_only(admin_client, flow_campaign, flow, status):
    Campaign.objects.filter(pk=flow_campaign.pk).update(status=status)
    url = reverse("admin:campaigns_callflow_change", args=[flow.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert [c.pk for c in page.context["locked_by"]] == [flow_campaign.pk]
    html = page.content.decode()
    assert "Read-only" in html and 'name="_save"' not in html and 'name="nodes-0-key"' not in html
    assert html.count("reschedule key 2") == 2 and "已改到{slot}。" in html  # the slots, shown under their key
    rows = [{"key": "1", "action": "confirm", "text": "改了。"}]
    assert admin_client.post(url, flow_post("改名", rows)).status_code == 403
    assert CallFlow.objects.get(pk=flow.pk).name == flow.name
    delete = reverse("admin:campaigns_callflow_delete", args=[flow.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_a_draft_campaign_does_not_lock_its_flow(admin_client, flow_campaign, flow):
    page = admin_client.get(reverse("admin:campaigns_callflow_change", args=[flow.pk]))
    assert page.context["has_change_permission"] is True and page.context["locked_by"] == []


def test_the_campaign_form_offers_the_flow_and_locks_it_after_launch(admin_client, flow_campaign, flow):
    url = reverse("admin:campaigns_campaign_change", args=[flow_campaign.pk])
    form = admin_client.get(url).context["adminform"].form
    assert "flow" in form.fields and form.initial["flow"] == flow.pk
    Campaign.objects.filter(pk=flow_campaign.pk).update(status=Campaign.Status.RUNNING)
    assert "flow" not in admin_client.get(url).context["adminform"].form.fields


# --- walk the call ------------------------------------------------------------------------------------------


def press(client, flow, **body) -> tuple[int, dict]:
    response = client.post(reverse("admin:campaigns_callflow_press", args=[flow.pk]), json.dumps(body),
                           content_type="application/json")
    return response.status_code, (response.json() if response["Content-Type"] == "application/json" else {})


def test_the_walk_page_offers_the_first_campaign_and_its_first_contact(admin_client, flow_campaign, flow):
    page = admin_client.get(reverse("admin:campaigns_callflow_walk", args=[flow.pk]))
    form = page.context["form"]
    variant = flow_campaign.variants.order_by("pk").first()
    first = flow_campaign.contact_list.contacts.order_by("pk").first()
    assert (form.initial["voice"], form.initial["script"]) == (variant.voice_id, variant.script_id)
    assert (form.initial["contact_list"], form.initial["contact"]) == (flow_campaign.contact_list_id, first.pk)
    assert page.context["walk"] is None


def test_the_walk_renders_every_clip_for_the_contact_and_serves_it(admin_client, flow_campaign, flow, settings):
    variant = flow_campaign.variants.order_by("pk").first()
    contact = flow_campaign.contact_list.contacts.order_by("pk").last()
    page = admin_client.post(reverse("admin:campaigns_callflow_walk", args=[flow.pk]), {
        "voice": variant.voice_id, "script": variant.script_id, "contact_list": flow_campaign.contact_list_id,
        "contact": contact.pk,
    })
    assert page.status_code == 200, page.context["form"].errors
    walk = page.context["walk"]
    assert walk.problem == "" and walk.contact == contact
    clips = {c.name: c for c in walk.clips}
    assert set(clips) == {"message", "invalid", "no_input", "goodbye", "menu", "1", "2", "2.1", "2.2", "9"}
    assert all(c.problem == "" and c.url.startswith("/") for c in clips.values()), [c.problem for c in clips.values()]
    assert contact.name in clips["message"].text and contact.fields["order_id"] in clips["message"].text
    assert clips["2.1"].said.endswith("上午") and clips["2.1"].said in clips["2.1"].text
    audio = admin_client.get(clips["2.2"].url)
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"
    assert RenderedAudio.objects.filter(state=RenderedAudio.State.READY).count() == len(clips)
    config = page.context["config"]
    assert config["start"] == {**config["start"], "play": ["message"], "gather": "", "prompts": 1, "path": ["message"]}
    assert config["clips"]["2.1"]["url"] == clips["2.1"].url
    assert 'id="walk-config"' in page.content.decode()


def test_a_clip_with_a_missing_field_says_so_and_the_rest_render(admin_client, flow_campaign, flow):
    FlowNode.objects.filter(flow=flow, key="1", parent=None).update(text="谢谢，订单{order_id}的{送货地址}已确认。")
    variant = flow_campaign.variants.order_by("pk").first()
    page = admin_client.post(reverse("admin:campaigns_callflow_walk", args=[flow.pk]), {
        "voice": variant.voice_id, "script": variant.script_id, "contact_list": flow_campaign.contact_list_id,
    })
    clips = {c.name: c for c in page.context["walk"].clips}
    assert clips["1"].problem == "the sample contact has no 送货地址" and clips["1"].url == ""
    assert clips["message"].url and clips["9"].url


def test_an_overlong_clip_is_not_rendered(admin_client, flow_campaign, flow):
    FlowNode.objects.filter(flow=flow, key="9").update(text="您将不会再接到我们的电话。" * 40)
    variant = flow_campaign.variants.order_by("pk").first()
    page = admin_client.post(reverse("admin:campaigns_callflow_walk", args=[flow.pk]), {
        "voice": variant.voice_id, "script": variant.script_id, "contact_list": flow_campaign.contact_list_id,
    })
    clips = {c.name: c for c in page.context["walk"].clips}
    assert re.fullmatch(r"\d+ characters: too long to preview \(at most 300\)", clips["9"].problem)
    assert not RenderedAudio.objects.filter(text__contains="您将不会再接到我们的电话。您将不会").exists()


def test_keys_walk_the_flow_on_the_server(admin_client, flow):
    status, step = press(admin_client, flow, menu="", prompts=1, key="2", path=["message"])
    assert status == 200
    assert (step["play"], step["gather"], step["prompts"], step["path"]) == (["2"], "2", 1, ["message", "2"])
    status, step = press(admin_client, flow, menu="2", prompts=1, key="5", path=step["path"])
    assert (step["play"], step["gather"], step["prompts"], step["action"]) == (["invalid", "2"], "2", 2, "")
    status, step = press(admin_client, flow, menu="2", prompts=2, key="1", path=step["path"])
    assert (step["action"], step["gather"], step["path"]) == ("rescheduled", None, ["message", "2", "2", "2.1"])
    assert step["ending"] == "Rescheduled"
    status, step = press(admin_client, flow, menu="", prompts=1, key="9", path=["message"])
    assert (step["action"], step["opt_out"], step["play"]) == ("opted_out", True, ["9"])
    status, step = press(admin_client, flow, menu="", prompts=3, key="", path=["message"])
    assert (step["action"], step["play"], step["detail"]) == ("no_input", ["no_input", "goodbye"], "message")


def test_a_refused_transfer_plays_its_fallback(admin_client, flow):
    FlowNode.objects.create(flow=flow, key="0", action=A.TRANSFER, text="正在转接。", transfer_to="+864008001234",
                            transfer_fallback_text="请拨打4008001234。")
    status, step = press(admin_client, flow, menu="", prompts=1, key="0", path=["message"])
    assert (step["action"], step["transfer_to"], step["path"]) == ("transferred", "+864008001234", ["message", "0"])
    status, step = press(admin_client, flow, refused="0", path=step["path"])
    assert status == 200
    assert (step["action"], step["play"], step["path"]) == ("transfer_refused", ["0:fallback"], ["message", "0"])
    status, answer = press(admin_client, flow, refused="1", path=["message"])
    assert status == 400 and answer["error"] == "refused: key 1 is not a transfer"
    status, answer = press(admin_client, flow, refused="8", path=["message"])
    assert status == 400 and answer["error"] == "no node at '8'"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"menu": "1", "prompts": 1, "key": "1"}, "'1' is not a menu"),
        ({"menu": "7", "prompts": 1, "key": "1"}, "no node at '7'"),
        ({"menu": "", "prompts": 1, "key": "12"}, "key: one of 0-9 or *"),
        ({"menu": "", "prompts": 1, "key": "#"}, "key: one of 0-9 or *"),
        ({"menu": "", "prompts": 1, "key": 1}, "key: one of 0-9 or *"),
        ({"menu": "", "prompts": 9, "key": "1"}, "prompts: the times the menu was offered so far, 1 to 3"),
        ({"menu": "", "prompts": "1", "key": "1"}, "prompts:"),
        ({"menu": "", "prompts": 1, "key": "1", "path": "message"}, "path: the nodes walked so far"),
        ([1, 2], "send a JSON object"),
    ],
)
def test_forged_keys_and_menus_are_refused_by_name(admin_client, flow, body, error):
    response = admin_client.post(reverse("admin:campaigns_callflow_press", args=[flow.pk]), json.dumps(body),
                                 content_type="application/json")
    assert response.status_code == 400 and error in response.json()["error"], response.json()


def test_the_walk_refuses_a_flow_with_problems(admin_client, flow):
    FlowNode.objects.filter(flow=flow, parent__key="2").delete()
    status, answer = press(admin_client, flow, menu="", prompts=1, key="1")
    assert status == 409 and "a reschedule key needs at least one slot" in answer["error"]
    page = admin_client.post(reverse("admin:campaigns_callflow_walk", args=[flow.pk]), {})
    assert page.context["walk"] is None and page.context["problems"] == flow_problems(flow) != []


def test_only_staff_who_may_view_flows_walk_them(client, django_user_model, flow):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    walk = reverse("admin:campaigns_callflow_walk", args=[flow.pk])
    assert client.get(walk).status_code == 403
    assert press(client, flow, menu="", prompts=1, key="1")[0] == 403
    user.user_permissions.add(Permission.objects.get(codename="view_callflow"))
    assert client.get(walk).status_code == 200
    assert press(client, flow, menu="", prompts=1, key="1")[0] == 200
    client.logout()
    assert client.post(reverse("admin:campaigns_callflow_press", args=[flow.pk]), "{}",
                       content_type="application/json").status_code == 302  # to the login page


def test_the_key_endpoint_wants_a_csrf_token_and_a_post(admin_user, flow):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    url = reverse("admin:campaigns_callflow_press", args=[flow.pk])
    body = json.dumps({"menu": "", "prompts": 1, "key": "1"})
    assert client.post(url, body, content_type="application/json").status_code == 403
    assert client.get(url).status_code == 405
    client.get(reverse("admin:campaigns_callflow_walk", args=[flow.pk]))  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.json()["action"] == "confirmed"


def test_a_cloned_voice_says_the_disclosure_first_and_an_engine_problem_is_shown(admin_client, flow_campaign, flow):
    Campaign.objects.filter(pk=flow_campaign.pk).update(disclosure_text="这是一通自动语音电话。")
    cloned = Voice.objects.create(name="克隆", engine=Voice.Engine.GPT_SOVITS)
    variant = flow_campaign.variants.order_by("pk").first()
    page = admin_client.post(reverse("admin:campaigns_callflow_walk", args=[flow.pk]), {
        "voice": cloned.pk, "script": variant.script_id, "contact_list": flow_campaign.contact_list_id,
    })
    clips = {c.name: c for c in page.context["walk"].clips}
    assert clips["message"].text.startswith("这是一通自动语音电话。您好")
    assert not clips["1"].text.startswith("这是一通")  # the disclosure is said once, before the message
    walk = page.context["walk"]
    assert walk.problem.startswith("this voice cannot be previewed: ") and all(c.url == "" for c in walk.clips)
    assert page.content.decode().count("this voice cannot be previewed") == 1
    assert page.context["config"] is None and 'id="walk-keypad"' not in page.content.decode()


def test_a_flow_no_campaign_uses_yet_is_walked_with_what_staff_pick(admin_client, flow, make_campaign):
    other = make_campaign(2)  # its list, voice and script, but not this flow
    variant = other.variants.order_by("pk").last()
    walk = reverse("admin:campaigns_callflow_walk", args=[flow.pk])
    assert admin_client.get(walk).context["form"].initial == {}
    stranger = Contact.objects.create(contact_list=ContactList.objects.create(name="别的"), phone="+8613900000000")
    page = admin_client.post(walk, {"voice": variant.voice_id, "script": variant.script_id,
                                    "contact_list": other.contact_list_id, "contact": stranger.pk})
    assert "Select a valid choice" in page.context["form"].errors["contact"][0] and page.context["walk"] is None
    page = admin_client.post(walk, {"voice": variant.voice_id, "script": variant.script_id,
                                    "contact_list": other.contact_list_id})
    walk_done = page.context["walk"]
    assert walk_done.contact == other.contact_list.contacts.order_by("pk").first() and walk_done.voice == variant.voice
    assert walk_done.problem == "" and all(c.url for c in walk_done.clips)


def test_a_calls_page_shows_the_flow_path_and_how_it_ended(admin_client, flow_campaign):
    from campaigns.launch import launch_campaign
    from campaigns.models import Call, CallAttempt

    launch_campaign(flow_campaign)
    call = flow_campaign.calls.first()
    CallAttempt.objects.create(call=call, number=1, provider="twilio", status="completed", path=["message", "2", "2.1"],
                               action="rescheduled", action_detail="12月8日上午", digits="21")  # fmt: skip
    Call.objects.filter(pk=call.pk).update(final_action="rescheduled")
    page = admin_client.get(reverse("admin:campaigns_call_change", args=[call.pk])).content.decode()
    assert "message › 2 › 2.1 → rescheduled (12月8日上午)" in page
    assert "rescheduled" in page.split("Final action")[1][:400]
