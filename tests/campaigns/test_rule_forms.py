"""The campaign form for people (issue 21): weekday checkboxes, time pickers, a list of holidays, a retry form per
outcome and the caller id picked from the account's numbers, each stored exactly as the model keeps it, each
error naming the day, line or outcome; the list, account and caller id locked once launched."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.policy import RETRY_OUTCOMES
from tests.campaigns.test_preflight import change_form_data

pytestmark = pytest.mark.django_db
SATURDAY = 5


def _url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def _retry(data: dict, outcome: str, minutes: str = "", never: bool = False) -> None:
    i = RETRY_OUTCOMES.index(outcome)
    data[f"retry_policy_{2 * i}"] = minutes
    if never:
        data[f"retry_policy_{2 * i + 1}"] = "on"
    else:
        data.pop(f"retry_policy_{2 * i + 1}", None)


def _post(admin_client, campaign: Campaign, data: dict):
    return admin_client.post(_url(campaign), data)


def _errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def test_the_page_has_checkboxes_time_pickers_and_the_accounts_numbers(admin_client, make_campaign):
    campaign = make_campaign(2)
    html = admin_client.get(_url(campaign)).content.decode()
    assert html.count('type="checkbox" name="weekdays"') == 7 and "Saturday" in html
    assert 'type="time" name="window_start"' in html and 'type="time" name="weekday_hours_10"' in html
    # Not the admin's clock, which warns about the viewer's offset from the server: these are callee-local hours.
    window_inputs = re.findall(r'<input[^>]*name="window_(?:start|end)"[^>]*>', html)
    assert len(window_inputs) == 2 and not any("vTimeField" in tag for tag in window_inputs)
    assert '<option value="+862161234567">test</option>' in html  # account "test"'s number, to pick
    assert "Answering machine" in html and 'name="retry_policy_13"' in html
    assert '<textarea name="holidays"' in html


def test_what_people_set_is_stored_as_the_model_keeps_it(admin_client, make_campaign):
    campaign = make_campaign(2)
    data = change_form_data(admin_client, campaign)
    data["weekdays"] = ["5", "4", "0", "2"]
    data["window_start"], data["window_end"] = "09:30", "19:00"
    data[f"weekday_hours_{2 * SATURDAY}"], data[f"weekday_hours_{2 * SATURDAY + 1}"] = "10:00", "16:30"
    data["holidays"] = "2026-10-01\n2026-10-03, 2026-10-02\n\n2026-10-01"
    _retry(data, "busy", "10")
    _retry(data, "no_answer", "90.5")
    _retry(data, "machine", never=True)
    response = _post(admin_client, campaign, data)
    assert response.status_code == 302, _errors(response)
    campaign.refresh_from_db()
    assert campaign.weekdays == "0245"
    assert (f"{campaign.window_start:%H:%M}", f"{campaign.window_end:%H:%M}") == ("09:30", "19:00")
    assert campaign.weekday_hours == {"5": ["10:00", "16:30"]}
    assert campaign.holidays == ["2026-10-01", "2026-10-02", "2026-10-03"]
    assert campaign.retry_policy == {"busy": 10, "no_answer": 90.5, "machine": None}

    # Shown again as set, and posted back unchanged it stays the same.
    again = change_form_data(admin_client, campaign)
    assert again["weekdays"] == ["0", "2", "4", "5"] and again["holidays"] == "2026-10-01\n2026-10-02\n2026-10-03"
    assert again[f"weekday_hours_{2 * SATURDAY}"] == "10:00" and again["weekday_hours_0"] == ""
    assert _post(admin_client, campaign, again).status_code == 302
    before = (campaign.weekdays, campaign.weekday_hours, campaign.holidays, campaign.retry_policy)
    campaign.refresh_from_db()
    assert (campaign.weekdays, campaign.weekday_hours, campaign.holidays, campaign.retry_policy) == before


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"weekdays": []}, "weekdays", "Tick at least one day to call on."),
        ({f"weekday_hours_{2 * SATURDAY}": "10:00"}, "weekday_hours",
         "Saturday: give both times, or neither to use the campaign's hours"),
        ({"weekday_hours_2": "18:00", "weekday_hours_3": "09:00"}, "weekday_hours", "Tuesday: 09:00 is not after 18:00"),
        ({"weekday_hours_1": "25:99"}, "weekday_hours", "Monday to: enter a time like 09:30"),
        ({"holidays": "2026-10-01\n2026-13-01"}, "holidays", "line 2: '2026-13-01' is not a date like 2026-10-01"),
        ({"retry_policy_0": "10", "retry_policy_1": "on"}, "retry_policy",
         "Busy: give minutes or tick never retry, not both"),
        ({"retry_policy_2": "-5"}, "retry_policy", "No answer: minutes must be a number from 0 to 43,200"),
        ({"caller_id": "+862161239999"}, "caller_id",
         "+862161239999 is not one of account test's numbers: +862161234567"),
        ({"caller_id": "hello"}, "caller_id", "'hello' is not a caller id in E.164 form, e.g. +862161234567"),
    ],
)  # fmt: skip
def test_a_wrong_entry_is_named_and_nothing_is_saved(admin_client, make_campaign, change, field, message):
    campaign = make_campaign(2)
    data = {**change_form_data(admin_client, campaign), **change}
    errors = _errors(_post(admin_client, campaign, data))
    assert any(e.startswith(message) for e in errors.get(field, [])), errors
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.weekdays, stored.weekday_hours, stored.holidays, stored.retry_policy, stored.caller_id) == (
        campaign.weekdays, campaign.weekday_hours, campaign.holidays, campaign.retry_policy, campaign.caller_id,
    )  # fmt: skip


def test_a_caller_id_as_people_write_it_is_stored_in_e164(admin_client, make_campaign):
    campaign = make_campaign(2)
    data = {**change_form_data(admin_client, campaign), "caller_id": " +86 21 6123 4567 "}
    assert _post(admin_client, campaign, data).status_code == 302
    campaign.refresh_from_db()
    assert campaign.caller_id == "+862161234567"


def test_list_account_and_caller_id_are_locked_once_launched(admin_client, make_campaign):
    campaign = make_campaign(2)
    form = admin_client.get(_url(campaign)).context["adminform"].form
    assert {"contact_list", "telephony_account", "caller_id"} <= set(form.fields)
    for status in (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        Campaign.objects.filter(pk=campaign.pk).update(status=status)
        page = admin_client.get(_url(campaign))
        assert not {"contact_list", "telephony_account", "caller_id"} & set(page.context["adminform"].form.fields)
        assert "+862161234567" in page.content.decode()  # still shown, as text


def test_a_new_campaign_starts_from_the_models_defaults(admin_client):
    form = admin_client.get(reverse("admin:campaigns_campaign_add")).context["adminform"].form
    assert form["weekdays"].value() == list("0123456")
    assert form["holidays"].value() == "" and form["retry_policy"].value() == {} and form["weekday_hours"].value() == {}


def test_a_form_posted_back_as_shown_has_no_changed_rules(admin_client, make_campaign, rf, admin_user):
    from django.contrib import admin

    campaign = make_campaign(2, weekday_hours={"5": ["10:00", "18:00"]}, holidays=["2026-10-02", "2026-10-01"],
                             retry_policy={"busy": 10, "machine": None})  # fmt: skip
    data = change_form_data(admin_client, campaign)
    request = rf.get("/")
    request.user = admin_user
    form_class = admin.site._registry[Campaign].get_form(request, campaign)
    form = form_class(data=data, instance=campaign)
    rules = {"weekdays", "weekday_hours", "holidays", "retry_policy"}
    assert not rules & set(form.changed_data), form.changed_data
    data["weekday_hours_10"] = "09:00"
    data["holidays"] = "2026-10-01"
    assert {"weekday_hours", "holidays"} <= set(form_class(data=data, instance=campaign).changed_data)
