from __future__ import annotations

import secrets
from datetime import time

import pytest
from django.utils import timezone

from campaigns.demo import daytime_zone
from campaigns.models import Campaign, Contact, ContactList, ScriptTemplate, Variant
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from voices.models import Voice


@pytest.fixture
def account(db) -> TelephonyAccount:
    acct = TelephonyAccount.objects.create(
        name="test", account_sid="AC" + secrets.token_hex(16), caller_ids=["+862161234567"],
        calls_per_second=100, max_concurrent_calls=100,
    )
    set_auth_token(acct, secrets.token_hex(16))
    return acct


@pytest.fixture
def voices(db) -> tuple[Voice, Voice]:
    return (
        Voice.objects.create(name="high", parameters={"voice": "cmn", "pitch": 60}),
        Voice.objects.create(name="low", parameters={"voice": "cmn", "pitch": 35}),
    )


@pytest.fixture
def make_campaign(db, account, voices):
    """A draft campaign over `n` contacts whose local time is daytime now."""

    def make(n: int = 10, *, text: str = "您好{name}，您的订单{order_id}明天送达。", weights=(1, 1), fields=None,
             **campaign_kwargs) -> Campaign:
        tz = daytime_zone(timezone.now())
        contact_list = ContactList.objects.create(name=f"list-{secrets.token_hex(4)}")
        Contact.objects.bulk_create(
            Contact(
                contact_list=contact_list, phone=f"+86138{i:08d}", name=f"张{i}号", timezone=tz,
                fields=fields(i) if fields else {"order_id": f"SF{i:010d}"},
            )
            for i in range(n)
        )
        script = ScriptTemplate.objects.create(name=f"s-{secrets.token_hex(4)}", text=text)
        defaults = dict(window_start=time(0, 0), window_end=time(23, 59), calls_per_second=100,
                        max_concurrent_calls=100)
        defaults.update(campaign_kwargs)
        campaign = Campaign.objects.create(
            name=f"c-{secrets.token_hex(4)}", contact_list=contact_list, telephony_account=account,
            caller_id="+862161234567", **defaults,
        )
        for voice, weight, name in zip(voices, weights, "AB", strict=False):
            Variant.objects.create(campaign=campaign, name=name, voice=voice, script=script, weight=weight)
        return campaign

    return make
