"""A test call from the Preflight page: the campaign's first variant, as its first callable contact would hear
it, to a number the staff member types, through the campaign's telephony account.

It is not one of the campaign's calls: no Call or CallAttempt row, so reports, statistics, retries and caps
never see it. The provider's status webhooks for it name attempt 0, which the webhook views record as an
event for an unknown attempt and apply to nothing. One test call per staff member per
HERALD_PREFLIGHT_TEST_CALL_INTERVAL seconds (through Django's cache: Redis when HERALD_CACHE_URL is set).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext

from campaigns import phones
from campaigns.models import Campaign
from campaigns.planning import dry_run, variant_order
from herald.logmask import mask_phone
from synthesis.actions import keyer_for
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url
from synthesis.tasks import enqueue_renders
from telephony.models import TelephonyAccount
from telephony.providers import get_provider
from telephony.providers.base import Dial, ProviderError

log = logging.getLogger(__name__)

TEST_ATTEMPT_ID = 0  # no attempt row: the provider's webhooks for a test call are recorded and applied to nothing
CONTACTS_LOOKED_AT = 50  # the first callable contact is looked for among these


class TestCallError(Exception):
    """The test call was not placed; the message says why in words staff understand."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class TestCall:
    __test__ = False

    to: str  # E.164
    provider_call_id: str
    text: str
    variant: str


def _rate_key(user_id: int) -> str:
    return f"herald:preflight:test-call:{user_id}"


def place_test_call(campaign: Campaign, number: str, *, user_id: int) -> TestCall:
    """Dial `number` (E.164, or national in HERALD_DEFAULT_REGION) with the campaign's first variant's message."""
    try:
        to = phones.to_e164(number, settings.DEFAULT_REGION)
    except ValueError as exc:
        raise TestCallError(gettext("%(why)s (type it with its country code, e.g. +8613812345678)") % {"why": exc}) from exc
    account = campaign.telephony_account
    if account.kind != TelephonyAccount.Kind.TWILIO:
        raise TestCallError(
            gettext("test calls go through Twilio accounts only; account %(account)s is a SIP trunk")
            % {"account": account.name}
        )
    variant = campaign.variants.select_related("voice", "script").order_by(*variant_order(campaign)).first()
    if variant is None:
        raise TestCallError(gettext("add a variant (voice + script) first"))
    contacts = list(campaign.contact_list.contacts.order_by("pk").values_list("pk", flat=True)[:CONTACTS_LOOKED_AT])
    row = next((r for r in dry_run(campaign, contacts, variant=variant) if r.render_key), None)
    if row is None:
        raise TestCallError(
            gettext(
                "none of the first %(n)d contacts of the list can hear variant %(variant)s: see the sample messages "
                "for why"
            ) % {"n": len(contacts), "variant": variant.name}
        )
    audio, _ = RenderedAudio.objects.get_or_create(
        render_key=row.render_key,
        defaults=dict(
            engine=variant.voice.engine, engine_version=keyer_for(variant.voice).engine_version,
            voice_id=variant.voice_id, text=row.spoken, parameters=dict(variant.voice.parameters or {}),
        ),
    )
    if audio.state == RenderedAudio.State.FAILED:
        raise TestCallError(gettext("the message audio could not be rendered: %(why)s") % {"why": audio.error})
    if audio.state != RenderedAudio.State.READY:
        if audio.state == RenderedAudio.State.PENDING:
            enqueue_renders([(audio.render_key, audio.voice_id)])
        raise TestCallError(gettext("the message audio is being rendered: press Test call again in a moment"))
    if not cache.add(_rate_key(user_id), 1, timeout=settings.PREFLIGHT_TEST_CALL_INTERVAL):
        raise TestCallError(
            gettext("one test call per %(seconds)s s: wait a little before the next")
            % {"seconds": f"{settings.PREFLIGHT_TEST_CALL_INTERVAL:g}"}
        )
    dial = Dial(
        attempt_id=TEST_ATTEMPT_ID, to=to, caller_id=campaign.caller_id_for(to), audio_url=signed_audio_url(audio.render_key)
    )
    try:
        sid = get_provider(account).place(dial)
    except ProviderError as exc:
        raise TestCallError(gettext("the call was not placed: %(why)s") % {"why": exc}) from exc
    log.info("test call for campaign %s to %s placed as %s (user %s)", campaign.pk, mask_phone(to), sid, user_id)
    return TestCall(to=to, provider_call_id=sid, text=row.text, variant=variant.name)
