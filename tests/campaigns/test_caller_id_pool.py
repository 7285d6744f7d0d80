"""A campaign's caller ids: its caller id and a pool, each callee shown one of them, the same every time, a local
one where there is one; every number checked against the account on save and at launch."""

from __future__ import annotations

from collections import Counter

import pytest
from django.urls import reverse

from campaigns.launch import LaunchError, launch_campaign
from campaigns.models import Campaign
from tests.campaigns.test_preflight import change_form_data

pytestmark = pytest.mark.django_db
NUMBERS = ["+862161234567", "+862161234568", "+861062345678", "+14155550100"]


def campaign_with(pool: list[str]) -> Campaign:
    return Campaign(caller_id=NUMBERS[0], caller_id_pool=pool)


def test_without_a_pool_every_callee_sees_the_caller_id():
    assert {campaign_with([]).caller_id_for(f"+86138{i:08d}") for i in range(50)} == {NUMBERS[0]}


def test_a_callee_sees_a_number_of_their_own_area_when_the_campaign_has_one():
    campaign = campaign_with(NUMBERS[1:])
    assert campaign.caller_id_for("+14155559999") == "+14155550100"  # San Francisco, from San Francisco
    assert campaign.caller_id_for("+861088886666") == "+861062345678"  # Beijing, from Beijing
    assert campaign.caller_id_for("+862155550000") in NUMBERS[:2]  # Shanghai: either Shanghai number


def test_callees_without_a_local_number_are_spread_and_each_always_sees_the_same_one():
    campaign = campaign_with(["+862161234568", "+862161234569"])
    mobiles = [f"+86138{i:08d}" for i in range(600)]
    shown = [campaign.caller_id_for(phone) for phone in mobiles]
    spread = Counter(shown)
    assert set(spread) == {NUMBERS[0], "+862161234568", "+862161234569"}
    assert min(spread.values()) > 150  # about a third each
    assert shown == [campaign.caller_id_for(phone) for phone in mobiles]  # the same on every attempt


def test_the_form_stores_the_pool_in_e164_and_names_each_bad_line(admin_client, make_campaign):
    campaign = make_campaign(2)
    campaign.telephony_account.caller_ids = NUMBERS[:3]
    campaign.telephony_account.save()
    page = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    data = change_form_data(admin_client, campaign)
    response = admin_client.post(page, {**data, "caller_id_pool": "+86 21 6123 4568\nnot a number\n+14155550100"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["caller_id_pool"]
    assert len(errors) == 1 and errors[0].startswith("line 2: 'not a number' is not a number in E.164 form"), errors
    response = admin_client.post(page, {**data, "caller_id_pool": "+14155550100"})
    assert any("+14155550100 is not one of account" in e for e in response.context["adminform"].form.errors["caller_id_pool"])
    response = admin_client.post(page, {**data, "caller_id_pool": "+86 21 6123 4568\n+861062345678\n+862161234568"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert campaign.caller_id_pool == ["+862161234568", "+861062345678"]


def test_launch_refuses_a_pool_number_the_account_does_not_have(make_campaign):
    campaign = make_campaign(2)
    campaign.caller_id_pool = ["+14155550100"]
    campaign.save()
    with pytest.raises(LaunchError, match=r"\+14155550100 is not one of account"):
        launch_campaign(campaign)
