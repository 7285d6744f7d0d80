"""Result webhooks out: the outbox the lifecycle writes, and signed deliveries to the README's own receiver,
served on 127.0.0.1 in a thread (it answers 500, goes down, redirects when a test says so).

Time is moved in the database (next_attempt_at, the event's created_at), never slept through.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import lifecycle, webhooks
from campaigns.models import (
    CALL_ACTION,
    CALL_FINISHED,
    CAMPAIGN_FINISHED,
    Call,
    CallAttempt,
    Campaign,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from campaigns.tasks import send_webhooks
from telephony import outcomes
from tests.telephony.conftest import delivery_flow
from tests.wait import wait_until
from tests.webhook_receiver import readme_receiver

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
PHONE = "+8613800000000"  # make_campaign's first contact


@pytest.fixture
def campaign(make_campaign) -> Campaign:
    """Running, one contact, one variant (A); retries half an hour apart."""
    return make_campaign(1, weights=(1,), status=Campaign.Status.RUNNING, retry_jitter=0)


@pytest.fixture
def attempt(campaign) -> CallAttempt:
    """The campaign's call, its first attempt placed with the carrier."""
    contact = campaign.contact_list.contacts.get()
    call = Call.objects.create(
        campaign=campaign, contact=contact, variant=campaign.variants.get(), phone=contact.phone,
        timezone=contact.timezone, text="您好", state=Call.State.IN_PROGRESS, attempts_made=1,
        next_attempt_at=timezone.now(),
    )  # fmt: skip
    return CallAttempt.objects.create(
        call=call, number=1, provider="twilio", status=S.QUEUED, provider_call_id="CA" + secrets.token_hex(16)
    )


def endpoint_for(url: str, *, campaign: Campaign | None = None, events=(CALL_FINISHED,)) -> tuple[WebhookEndpoint, str]:
    return webhooks.create_endpoint(name="order system", url=url, events=list(events), campaign=campaign)


def ended(attempt: CallAttempt) -> None:
    """The carrier says the attempt was answered by a person and finished: the call is done."""
    outcomes.apply_status(attempt.pk, S.COMPLETED, answered_by="human", duration=12)


def make_due(delivery: WebhookDelivery) -> None:
    """Move time: the delivery's next try is due now."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


# --- signing ---------------------------------------------------------------------------------------


def test_signatures_verify_with_the_readme_receiver(monkeypatch):
    _, secret = endpoint_for("https://shop.example.com/herald")
    verified = readme_receiver(secret, monkeypatch)["verified"]
    body = '{"id":"e1","data":{"name":"张伟"}}'.encode()
    now = int(time.time())

    assert verified(webhooks.signature(secret, now, body), body)
    assert not verified(webhooks.signature(secret, now, body), body + b" ")  # the body was changed
    assert not verified(webhooks.signature(secret + "x", now, body), body)  # another secret
    assert not verified(webhooks.signature(secret, now - 600, body), body)  # replayed ten minutes later
    assert verified(webhooks.signature(secret, now - 200, body), body)  # within the tolerance
    assert not verified("", body) and not verified("t=abc,v1=00", body)


def test_an_endpoint_refuses_plain_http_and_unknown_events(settings):
    settings.WEBHOOK_LOCAL_HTTP = False
    for url, words in (
        ("http://shop.example.com/hook", "Only https"),
        ("http://127.0.0.1:8080/hook", "Only https"),
        ("https://user:pw@shop.example.com/hook", "user:password"),
    ):
        with pytest.raises(ValidationError, match=words):
            endpoint_for(url)
    with pytest.raises(ValidationError, match="Unknown event 'call.started'"):
        endpoint_for("https://shop.example.com/hook", events=["call.started"])
    with pytest.raises(ValidationError, match="at least one event"):
        endpoint_for("https://shop.example.com/hook", events=[])
    settings.WEBHOOK_LOCAL_HTTP = True
    endpoint, secret = endpoint_for("http://127.0.0.1:8080/hook")
    assert secret.startswith("whsec_") and secret not in endpoint.secret_encrypted
    assert webhooks.endpoint_secret(endpoint) == secret


# --- the outbox ------------------------------------------------------------------------------------


def test_call_finished_reaches_a_local_receiver_when_the_call_ends(attempt, receivers):
    call = attempt.call
    call.contact.external_id, call.contact.fields = "JD1000000001", {"order_id": "JD1000000001", "slot": "上午"}
    call.contact.save()
    receiver = receivers()  # the secret is known once the endpoint exists
    endpoint, secret = endpoint_for(receiver.url, campaign=call.campaign)
    receiver.use(secret)

    assert webhooks.send_due() == {}  # nothing happened yet
    ended(attempt)
    assert webhooks.send_due() == {"delivered": 1}

    (post,) = receiver.posts
    event = WebhookEvent.objects.get()
    assert post["headers"]["Herald-Event-Id"] == str(event.event_id) and receiver.seen == {str(event.event_id)}
    assert post["headers"]["Herald-Event-Type"] == CALL_FINISHED
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)
    assert delivery.last_latency_ms is not None and delivery.delivered_at is not None
    data = event.payload
    assert data["contact"] == {"external_id": "JD1000000001", "phone": PHONE, "name": "张0号",
                               "variables": {"order_id": "JD1000000001", "slot": "上午"}}  # fmt: skip
    assert data["campaign"] == {"id": call.campaign_id, "name": call.campaign.name}
    assert (data["call_id"], data["variant"], data["state"], data["outcome"], data["attempts"]) == (
        call.pk, "A", "done", "answered", 1,
    )  # fmt: skip
    assert webhooks.send_due() == {}  # delivered once


def test_no_event_is_written_without_an_endpoint_that_wants_it(attempt):
    WebhookEndpoint.objects.create(name="off", url="https://x.example/h", events=[CALL_FINISHED], active=False)
    WebhookEndpoint.objects.create(name="actions", url="https://x.example/h", events=[CALL_ACTION])
    ended(attempt)
    assert not WebhookEvent.objects.exists()


def test_a_retried_call_finishes_only_after_its_last_attempt(attempt):
    endpoint_for("https://shop.example.com/h")
    outcomes.apply_status(attempt.pk, S.NO_ANSWER)  # retried in half an hour: not finished
    assert not WebhookEvent.objects.exists()
    call = Call.objects.get(pk=attempt.call_id)
    assert call.state == Call.State.READY

    second = CallAttempt.objects.create(call=call, number=2, provider="twilio", status=S.QUEUED)
    Call.objects.filter(pk=call.pk).update(state=Call.State.IN_PROGRESS, attempts_made=2)
    ended(second)
    (event,) = WebhookEvent.objects.all()
    assert (event.payload["state"], event.payload["outcome"], event.payload["attempts"]) == ("done", "answered", 2)


@pytest.mark.parametrize("how", ["campaign ends", "campaign cancelled", "do-not-call"])
def test_a_call_waiting_for_its_retry_finishes_when_the_retry_is_cancelled(attempt, campaign, how):
    endpoint_for("https://shop.example.com/h")
    outcomes.apply_status(attempt.pk, S.NO_ANSWER)
    if how == "campaign ends":
        lifecycle.finish(campaign, timezone.now(), cancel_remaining=True)
    elif how == "campaign cancelled":
        lifecycle.cancel(campaign)
    else:
        lifecycle.add_to_do_not_call(PHONE, reason="asked by email", source="admin")

    (event,) = WebhookEvent.objects.all()
    outcome = "do_not_call" if how == "do-not-call" else "no_answer"
    assert (event.payload["state"], event.payload["outcome"], event.payload["attempts"]) == ("cancelled", outcome, 1)


def test_flow_actions_are_sent_as_they_are_chosen(attempt, campaign):
    endpoint_for("https://shop.example.com/h", events=[CALL_ACTION, CALL_FINISHED])
    flow = delivery_flow()
    campaign.flow = flow
    campaign.save(update_fields=["flow"])
    built = flow.build()
    outcomes.apply_flow_key(attempt.pk, built, "", 1, "2")  # the slot menu: nothing final yet
    assert not WebhookEvent.objects.exists()
    outcomes.apply_flow_key(attempt.pk, built, "2", 1, "1", said={"2.1": "12月8日上午"})

    (action,) = WebhookEvent.objects.all()
    assert action.type == CALL_ACTION
    assert (action.payload["action"], action.payload["action_detail"]) == ("rescheduled", "12月8日上午")
    assert action.payload["flow_path"] == ["message", "2", "2.1"] and action.payload["keys"] == "21"
    ended(attempt)
    finished = WebhookEvent.objects.get(type=CALL_FINISHED)
    assert (finished.payload["final_action"], finished.payload["final_action_detail"]) == ("rescheduled", "12月8日上午")
    assert finished.payload["state"] == "done"


def test_the_opt_out_key_without_a_flow_is_an_action(attempt):
    endpoint_for("https://shop.example.com/h", events=[CALL_ACTION])
    outcomes.apply_gather(attempt.pk, "9")
    (event,) = WebhookEvent.objects.all()
    assert (event.payload["action"], event.payload["outcome"], event.payload["keys"]) == ("opted_out", "opted_out", "9")


def test_an_endpoint_for_one_campaign_gets_only_its_events(campaign, make_campaign):
    other = make_campaign(1, status=Campaign.Status.RUNNING)
    mine, _ = endpoint_for("https://x.example/mine", campaign=campaign, events=[CAMPAIGN_FINISHED])
    everyone, _ = endpoint_for("https://x.example/all", events=[CAMPAIGN_FINISHED])

    lifecycle.finish(other, timezone.now(), cancel_remaining=True)
    lifecycle.finish(campaign, timezone.now(), cancel_remaining=True)
    lifecycle.finish(campaign, timezone.now(), cancel_remaining=True)  # already finished: no second event

    got = sorted(WebhookDelivery.objects.values_list("endpoint__name", "endpoint_id", "event__campaign_id"))
    assert sorted((e, c) for _, e, c in got) == sorted(
        [(everyone.pk, other.pk), (everyone.pk, campaign.pk), (mine.pk, campaign.pk)]
    )
    event = WebhookEvent.objects.get(campaign=campaign)
    assert event.payload["status"] == "completed" and event.payload["calls"] == 0  # none planned
    lifecycle.cancel(other)  # already completed: nothing more
    assert WebhookEvent.objects.count() == 2


# --- delivery --------------------------------------------------------------------------------------


def test_retried_through_500s_and_an_outage_then_delivered_once(attempt, receivers, monkeypatch):
    receiver = receivers(fail_first=3)
    endpoint, secret = endpoint_for(receiver.url)
    receiver.use(secret)
    ended(attempt)
    delivery = WebhookDelivery.objects.get()

    waits = []
    for expected in ({"retry": 1}, {"retry": 1}, {"retry": 1}):
        before = timezone.now()
        assert webhooks.send_due() == expected
        delivery.refresh_from_db()
        waits.append(round((delivery.next_attempt_at - before).total_seconds()))
        assert webhooks.send_due() == {}  # not due yet
        make_due(delivery)
    assert [p["answer"] for p in receiver.posts] == [500, 500, 500]
    assert delivery.last_status_code == 500 and delivery.last_error.startswith("HTTP 500")

    receiver.stop()  # down: its port is closed
    before = timezone.now()
    assert webhooks.send_due() == {"retry": 1}
    delivery.refresh_from_db()
    waits.append(round((delivery.next_attempt_at - before).total_seconds()))
    assert delivery.last_status_code is None and delivery.last_error == "connection failed: Connection refused"
    assert waits == [10, 20, 40, 80]

    receiver.start()  # up again, on the same port
    make_due(delivery)
    assert webhooks.send_due() == {"delivered": 1}
    make_due(delivery)
    assert webhooks.send_due() == {}

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 5)
    assert [t["status"] for t in delivery.tries] == [500, 500, 500, None, 204]
    event_ids = {p["headers"]["Herald-Event-Id"] for p in receiver.posts}
    assert event_ids == {str(delivery.event.event_id)} == receiver.seen  # the same id on every try


def test_failed_for_good_after_24_hours_then_redelivered(attempt, receivers, monkeypatch):
    receiver = receivers()
    endpoint, secret = endpoint_for(receiver.url)
    receiver.use(secret)
    receiver.stop()
    ended(attempt)
    delivery = WebhookDelivery.objects.get()
    assert webhooks.send_due() == {"retry": 1}

    WebhookEvent.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59, seconds=50))
    make_due(delivery)
    assert webhooks.send_due() == {"retry": 1}
    delivery.refresh_from_db()
    deadline = WebhookEvent.objects.get().created_at + timedelta(hours=24)
    assert delivery.next_attempt_at == deadline  # the last try is at the 24th hour, not after it

    WebhookEvent.objects.update(created_at=timezone.now() - timedelta(hours=25))
    make_due(delivery)
    assert webhooks.send_due() == {"failed": 1}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    make_due(delivery)
    assert webhooks.send_due() == {}  # failed for good: no more tries

    receiver.start()
    assert webhooks.redeliver([delivery.pk]) == 1
    assert webhooks.send_due() == {"delivered": 1}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 4) and len(receiver.seen) == 1


def test_redirects_are_not_followed(attempt, receivers):
    target = receivers()
    redirecting = receivers(redirect_to=target.url)
    endpoint_for(redirecting.url)
    ended(attempt)
    assert webhooks.send_due() == {"retry": 1}
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code == 302 and "redirects are not followed" in delivery.last_error
    assert target.posts == [] and len(redirecting.posts) == 1


def test_one_claim_at_a_time(attempt):
    endpoint_for("https://shop.example.com/h")
    ended(attempt)
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    claimed, lease = webhooks.claim_due(now)
    assert claimed == [delivery.pk]
    assert webhooks.claim_due(now)[0] == []  # a second sweep: held
    assert webhooks.claim_due(now + timedelta(seconds=60))[0] == []  # still held
    assert webhooks.deliver(delivery.pk, lease.isoformat(), now=now + timedelta(seconds=70)) == "lease too short"
    later, new_lease = webhooks.claim_due(lease + timedelta(seconds=1))  # the first worker died: taken again
    assert later == [delivery.pk]
    assert webhooks.deliver(delivery.pk, lease.isoformat(), now=now) == "not claimed"  # the first task, late
    # The same task twice (a broker message delivered again): one copy takes the claim, the other stands back.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(leased_until=None, next_attempt_at=now)
    claimed, lease = webhooks.claim_due(now)
    WebhookEndpoint.objects.update(url="http://127.0.0.1:1/closed")  # the try fails fast, either way
    assert webhooks.deliver(delivery.pk, lease.isoformat(), now=now) == "retry"
    assert webhooks.deliver(delivery.pk, lease.isoformat(), now=now) == "not claimed"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.leased_until is None


def test_a_backlog_waits_in_the_table_not_in_the_broker(attempt, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_IN_FLIGHT", 2)
    for n in range(3):
        endpoint_for(f"https://shop.example.com/h{n}")
    ended(attempt)  # one event, three deliveries
    now = timezone.now()
    claimed, _ = webhooks.claim_due(now)
    assert len(claimed) == 2
    assert webhooks.claim_due(now)[0] == []  # two in flight: no more until one settles
    WebhookDelivery.objects.filter(pk=claimed[0]).update(leased_until=None, state=WebhookDelivery.State.DELIVERED)
    assert len(webhooks.claim_due(now)[0]) == 1


# --- secrets ---------------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_never_logged(client, campaign, attempt, receivers, caplog):
    caplog.set_level(logging.DEBUG)
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin)
    receiver = receivers()
    response = client.post(
        "/admin/campaigns/webhookendpoint/add/",
        {"name": "Shop", "url": receiver.url, "campaign": campaign.pk, "events": [CALL_FINISHED], "active": "on"},
        follow=True,
    )
    shown = re.search(r"<code>(whsec_[A-Za-z0-9_-]+)</code>", response.content.decode())
    assert shown, response.content.decode()[-3000:]
    secret = shown.group(1)
    endpoint = WebhookEndpoint.objects.get()
    assert webhooks.endpoint_secret(endpoint) == secret and endpoint.campaign == campaign
    receiver.use(secret)

    ended(attempt)
    assert webhooks.send_due() == {"delivered": 1}
    delivery = WebhookDelivery.objects.get()
    pages = [
        "/admin/campaigns/webhookendpoint/",
        f"/admin/campaigns/webhookendpoint/{endpoint.pk}/change/",
        "/admin/campaigns/webhookdelivery/",
        "/admin/campaigns/webhookdelivery/?state__exact=delivered&event__type=call.finished",
        f"/admin/campaigns/webhookdelivery/{delivery.pk}/change/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert secret not in response.content.decode(), page
    assert secret not in caplog.text and "webhook call.finished" in caplog.text
    assert secret not in json.dumps(delivery.tries) + delivery.last_error


def test_redeliver_from_the_admin(client, attempt):
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin)
    endpoint_for("https://shop.example.com/h")
    ended(attempt)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.update(state=WebhookDelivery.State.FAILED, next_attempt_at=timezone.now() + timedelta(days=1))
    response = client.post(
        "/admin/campaigns/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "1 delivery will be tried again" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.state == "pending" and delivery.next_attempt_at <= timezone.now()


# --- a real worker ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_delivers_what_the_sweep_claims(celery_worker, attempt, receivers, monkeypatch):
    receiver = receivers(fail_first=1)
    endpoint, secret = endpoint_for(receiver.url)
    receiver.use(secret)
    ended(attempt)
    delivery = WebhookDelivery.objects.get()

    def delivered() -> bool:
        send_webhooks()  # what beat runs every HERALD_WEBHOOK_SWEEP_INTERVAL
        delivery.refresh_from_db()
        if delivery.state == WebhookDelivery.State.PENDING and delivery.attempts and delivery.leased_until is None:
            make_due(delivery)  # the 10 s retry, without waiting for it
        return delivery.state == WebhookDelivery.State.DELIVERED

    wait_until(delivered, lambda: f"the worker to deliver: {celery_worker.log_path.read_text()[-3000:]}",
               timeout=60, interval=0.3)  # fmt: skip
    assert delivery.attempts == 2 and [p["answer"] for p in receiver.posts] == [500, 204]
    assert receiver.seen == {str(delivery.event.event_id)}

