"""The Preflight page's test call: one call of the campaign's first variant to the staff member's own number,
through the campaign's Twilio account (the local sandbox), outside the campaign's calls, rate-limited per user."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.urls import reverse

from campaigns.models import Call, CallAttempt
from synthesis.actions import render
from synthesis.models import RenderedAudio
from telephony.models import ProviderEvent

pytestmark = pytest.mark.django_db

STAFF_PHONE = "+8613912345678"


@pytest.fixture(autouse=True)
def fresh_rate_limit():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def preflight_campaign(make_campaign, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return make_campaign(3)


def post_test_call(client, campaign, number: str):
    url = reverse("admin:campaigns_campaign_test_call", args=[campaign.pk])
    response = client.post(url, {"number": number}, follow=True)
    assert response.redirect_chain[-1][0].endswith(reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]))
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_a_test_call_rings_the_staff_number_with_the_first_variant_and_is_not_a_campaign_call(
    admin_client, preflight_campaign, make_sandbox, unreachable_public_url
):
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)
    campaign = preflight_campaign

    # The message is rendered first (the request does not wait for a GPU): the page says so and queues it.
    (message,) = post_test_call(admin_client, campaign, "139 1234 5678")  # national, in HERALD_DEFAULT_REGION
    assert message == ("error", "Test call not placed: the message audio is being rendered: press Test call again in a moment")
    (pending,) = RenderedAudio.objects.filter(state=RenderedAudio.State.PENDING)
    assert sandbox.calls() == []
    assert render([pending.render_key]).rendered == [pending.render_key]

    ((level, text),) = post_test_call(admin_client, campaign, "139 1234 5678")
    assert level == "success" and "Test call placed to +86139****5678 with variant A" in text
    assert "not counted in the campaign's reports" in text
    assert sandbox.wait_idle(10)  # the carrier answers and fetches the audio on its own clock, after the create
    (dialled,) = sandbox.calls()
    assert (dialled["to"], dialled["from"]) == (STAFF_PHONE, campaign.caller_id)
    assert dialled["audio"][0]["url"].startswith(f"{unreachable_public_url}/audio/{pending.render_key}.wav?expires=")
    first = campaign.variants.order_by("pk").first()
    assert pending.voice_id == first.voice_id  # the first variant, whichever the contact would be given
    assert not Call.objects.filter(campaign=campaign).exists() and not CallAttempt.objects.exists()

    # Rate-limited per staff member: a second right away is refused, another user may still call.
    ((level, text),) = post_test_call(admin_client, campaign, STAFF_PHONE)
    assert level == "error" and "one test call per 60 s" in text
    assert len(sandbox.calls()) == 1
    other = User.objects.create_superuser("other", "o@example.test", "pw")
    admin_client.force_login(other)
    ((level, _),) = post_test_call(admin_client, campaign, STAFF_PHONE)
    assert level == "success" and len(sandbox.calls()) == 2


def test_a_bad_number_is_refused_with_the_reason(admin_client, preflight_campaign, make_sandbox):
    sandbox = make_sandbox()
    ((level, text),) = post_test_call(admin_client, preflight_campaign, "12345")
    assert level == "error" and "Test call not placed: the phone number" in text and "+8613812345678" in text
    assert sandbox.calls() == [] and not RenderedAudio.objects.exists()


def test_the_status_webhooks_of_a_test_call_apply_to_nothing(
    admin_client, preflight_campaign, make_sandbox, live_server, settings
):
    settings.PUBLIC_URL = live_server.url
    sandbox = make_sandbox(answer=1.0, busy=0, no_answer=0, machine=0)
    post_test_call(admin_client, preflight_campaign, STAFF_PHONE)
    RenderedAudio.objects.update(state=RenderedAudio.State.PENDING)
    render(list(RenderedAudio.objects.values_list("render_key", flat=True)))
    ((level, _),) = post_test_call(admin_client, preflight_campaign, STAFF_PHONE)
    assert level == "success"
    assert sandbox.wait_idle(10)
    events = list(ProviderEvent.objects.all())
    assert events and {e.attempt_id for e in events} == {None} and {e.note for e in events} == {"unknown attempt"}
    assert not Call.objects.exists()


def test_a_test_call_needs_a_post_and_change_permission(client, admin_client, preflight_campaign):
    url = reverse("admin:campaigns_campaign_test_call", args=[preflight_campaign.pk])
    assert admin_client.get(url).status_code == 405
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.post(url, {"number": STAFF_PHONE}).status_code == 403
