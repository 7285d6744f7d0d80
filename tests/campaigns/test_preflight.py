"""Launch preflight: scripts' variables checked against the contact list on save and at launch, launch refusing
a campaign nobody can be called in, the dropped contacts named, and the Preflight page's samples and summary."""

from __future__ import annotations

from html import escape

import pytest
from django.forms import MultiWidget
from django.urls import reverse

from campaigns import preflight
from campaigns.launch import LaunchError, launch_campaign
from campaigns.models import Call, Campaign, DoNotCall, ScriptTemplate, Variant
from synthesis.models import RenderedAudio
from voices.models import Voice

pytestmark = pytest.mark.django_db

CSV_HEADERS_SCRIPT = "您好{姓名}，您的订单{单号}明天送达。"  # the CSV's own headers, not the list's columns


def run_action(client, action: str, campaign: Campaign):
    return client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": action, "_selected_action": [campaign.pk]},
        follow=True,
    )


def change_form_data(client, campaign: Campaign) -> dict[str, str | list[str]]:
    """The campaign's change form as the browser would post it back unchanged (main form and inlines)."""
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    data: dict[str, str | list[str]] = {}

    def add(form) -> None:
        for bound in form:
            value = bound.value()
            widget = bound.field.widget
            if isinstance(widget, MultiWidget):
                for i, part in enumerate(widget.decompress(value)):
                    data[f"{bound.html_name}_{i}"] = "" if part is None else str(part)
            elif isinstance(value, list):  # checkboxes (the weekdays)
                data[bound.html_name] = [str(v) for v in value]
            elif isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = str(value)

    add(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data


# --- at launch ---------------------------------------------------------------------------------------------------


def test_a_script_with_variables_no_contact_has_is_refused_at_launch(make_campaign):
    # Before: launched, "0 calls planned", every call invalid, campaign Completed 0/0.
    campaign = make_campaign(11, text=CSV_HEADERS_SCRIPT)
    with pytest.raises(LaunchError) as caught:
        launch_campaign(campaign)
    message = str(caught.value)
    assert "{姓名}" in message and "{单号}" in message and "all 11 contacts lack it" in message
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and not campaign.calls.exists()


def test_a_campaign_with_no_callable_contact_is_refused_and_nothing_is_planned(make_campaign):
    campaign = make_campaign(4)
    DoNotCall.objects.bulk_create(DoNotCall(phone=c.phone) for c in campaign.contact_list.contacts.all())
    with pytest.raises(LaunchError, match=r"can be called: 4 contacts dropped \(4: number is on the do-not-call"):
        launch_campaign(campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT and campaign.launched_at is None
    assert not Call.objects.filter(campaign=campaign).exists()
    assert not RenderedAudio.objects.exists()


def test_the_admin_launch_names_the_contacts_dropped_and_why(admin_client, make_campaign):
    fields = lambda i: {"order_id": f"SF{i}"} if i % 4 else {}  # noqa: E731  (contacts 0, 4, 8 lack it)
    campaign = make_campaign(10, fields=fields)
    DoNotCall.objects.create(phone=campaign.contact_list.contacts.order_by("pk")[1].phone)
    response = run_action(admin_client, "launch", campaign)
    (message,) = list(response.context["messages"])
    assert message.level_tag == "warning"
    assert str(message) == (
        f"{campaign}: launched, 6 calls planned; 4 contacts dropped "
        "(3: missing variables: order_id; 1: number is on the do-not-call list)."
    )


def test_the_admin_launch_refuses_zero_callable_in_red(admin_client, make_campaign):
    campaign = make_campaign(3, text=CSV_HEADERS_SCRIPT)
    response = run_action(admin_client, "launch", campaign)
    (message,) = list(response.context["messages"])
    assert message.level_tag == "error" and "not launched" in str(message) and "{姓名}" in str(message)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


# --- on save ----------------------------------------------------------------------------------------------------


def test_saving_a_variant_whose_script_uses_unknown_variables_is_refused(admin_client, make_campaign):
    campaign = make_campaign(5)
    bad = ScriptTemplate.objects.create(name="csv headers", text=CSV_HEADERS_SCRIPT)
    data = change_form_data(admin_client, campaign)
    first = Variant.objects.filter(campaign=campaign).order_by("pk").first()
    index = next(k.split("-")[1] for k, v in data.items() if k.endswith("-id") and v == str(first.pk))
    data[f"variants-{index}-script"] = str(bad.pk)
    response = admin_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), data)
    assert response.status_code == 200  # the form again, with the problem
    errors = " ".join(str(e) for f in response.context["inline_admin_formsets"] for e in f.formset.non_form_errors())
    assert "{姓名} (used by 'csv headers') is not a column of the list: all 5 contacts lack it" in errors
    assert "{单号}" in errors
    first.refresh_from_db()
    assert first.script_id != bad.pk


def test_saving_an_unchanged_good_campaign_still_works(admin_client, make_campaign):
    campaign = make_campaign(3)
    data = change_form_data(admin_client, campaign)
    data["name"] = "renamed"
    response = admin_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), data)
    assert response.status_code == 302, response.context and [
        f.formset.non_form_errors() for f in response.context["inline_admin_formsets"]
    ]
    campaign.refresh_from_db()
    assert campaign.name == "renamed"


def test_variable_gaps_count_the_contacts_lacking_each(make_campaign):
    fields = lambda i: {"order_id": f"SF{i}" if i % 3 else "  "}  # noqa: E731  (blank counts as missing)
    campaign = make_campaign(9, fields=fields, text="{name}{order_id}{city}")
    gaps = preflight.variable_gaps(campaign.contact_list_id, preflight.campaign_scripts(campaign))
    assert [(g.variable, g.lacking, g.contacts, g.everyone) for g in gaps] == [
        ("order_id", 3, 9, False), ("city", 9, 9, True),
    ]  # fmt: skip
    assert preflight.variable_gaps(campaign.contact_list_id, preflight.campaign_scripts(campaign), stop_early=True)


# --- the Preflight page ---------------------------------------------------------------------------------------------


def test_the_preflight_page_shows_samples_and_the_plan(admin_client, make_campaign):
    fields = lambda i: {"order_id": f"SF{i:04d}"} if i != 4 else {}  # noqa: E731
    campaign = make_campaign(6, fields=fields, disclosure_text="这是一通智能语音通知。")
    DoNotCall.objects.create(phone=campaign.contact_list.contacts.order_by("pk")[5].phone)
    url = reverse("admin:campaigns_campaign_preflight", args=[campaign.pk])
    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert url in change

    page = admin_client.get(url)
    assert page.status_code == 200
    summary = page.context["summary"]
    assert (summary.contacts, summary.planned, summary.do_not_call, summary.no_consent) == (6, 4, 1, 0)
    assert page.context["invalid"] == [("missing variables: order_id", 1)]
    assert summary.renders_needed == 4 and summary.render_seconds == pytest.approx(4 / summary.renders_per_second)
    assert summary.dial_rate > 0
    samples = page.context["samples"]
    assert len(samples) == 3
    first = campaign.contact_list.contacts.order_by("pk").first()
    assert samples[0].contact == first and "SF0000" in samples[0].text and first.name in samples[0].text
    assert all(s.audio_url == "" for s in samples)
    html = page.content.decode()
    assert "missing variables: order_id" in html and "SF0000" in html and "not rendered yet" in html
    assert not Call.objects.filter(campaign=campaign).exists()  # a preview writes nothing

    # One chosen contact; its audio once rendered.
    chosen = campaign.contact_list.contacts.order_by("pk")[2]
    launch_campaign(campaign)
    call = Call.objects.get(campaign=campaign, contact=chosen)
    RenderedAudio.objects.filter(render_key=call.audio_id).update(state=RenderedAudio.State.READY)
    page = admin_client.get(url, {"contact": chosen.pk})
    (sample,) = page.context["samples"]
    assert sample.contact == chosen and sample.text == call.text
    assert sample.audio_url and f'<audio controls preload="none" src="{escape(sample.audio_url)}"' in page.content.decode()
    assert admin_client.get(url, {"contact": "x"}).context["samples"] == []


def test_the_preflight_page_warns_when_nobody_can_be_called(admin_client, make_campaign):
    campaign = make_campaign(2, text=CSV_HEADERS_SCRIPT)
    page = admin_client.get(reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]))
    html = page.content.decode()
    assert 'id="nothing-to-call"' in html and "not a column of the list" in html


def test_the_preflight_page_needs_a_staff_login(client, make_campaign):
    campaign = make_campaign(1)
    response = client.get(reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_samples_of_a_cloned_voice_say_the_disclosure_first(make_campaign):
    campaign = make_campaign(2, disclosure_text="这是一通智能语音通知。")
    Voice.objects.filter(variants__campaign=campaign).update(engine=Voice.Engine.GPT_SOVITS)
    for sample in preflight.samples(campaign):
        assert sample.text.startswith("这是一通智能语音通知。") and "您好" in sample.text, sample


def test_editing_a_script_of_a_draft_campaign_to_use_unknown_variables_is_refused(admin_client, make_campaign):
    campaign = make_campaign(4)
    script = campaign.variants.first().script
    url = reverse("admin:campaigns_scripttemplate_change", args=[script.pk])
    data = {"name": script.name, "language": script.language, "text": CSV_HEADERS_SCRIPT}
    response = admin_client.post(url, data)
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["text"]
    assert error.startswith(f"campaign '{campaign}': the scripts use variables") and "all 4 contacts lack it" in error
    # Once the campaign has launched its calls carry their text: the script is free again.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    assert admin_client.post(url, data).status_code == 302
    script.refresh_from_db()
    assert script.text == CSV_HEADERS_SCRIPT
