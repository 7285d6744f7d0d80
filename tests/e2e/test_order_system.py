"""An order system runs an evening's delivery reminders through the API, over real HTTP, and learns every result
from signed webhooks (issue "Herald in the e-commerce loop").

It upserts 1,000 contacts (twice, with one Idempotency-Key: no duplicates), creates tomorrow's campaign from a
template and launches it. A real Celery worker dials the sandbox carrier; the README's receiver verifies every
signature and deduplicates on the event id. It answers 500 to its first three deliveries and is unreachable
for a minute in between (its port closed), yet gets exactly one call.finished per call.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from campaigns import tokens, webhooks
from campaigns.demo import daytime_zone, seed_demo
from campaigns.dialer import sweep
from campaigns.models import (
    CALL_ACTION,
    CALL_FINISHED,
    CAMPAIGN_FINISHED,
    Call,
    Campaign,
    Contact,
    WebhookDelivery,
    WebhookEvent,
)
from campaigns.tasks import send_webhooks
from sandbox.twilio import TwilioSandbox
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CONTACTS = int(os.environ.get("HERALD_ORDER_SYSTEM_CONTACTS", "1000"))
OUTAGE = timedelta(seconds=float(os.environ.get("HERALD_ORDER_SYSTEM_OUTAGE", "60")))


def _tonights_orders(n: int, tz: str) -> list[dict]:
    rng = random.Random(20261208)
    return [
        {
            "external_id": f"JD{1_000_000_000 + i}",
            "phone": f"139{i:08d}",  # as the shop stores them: no +86, read in the list's region
            "name": rng.choice("张王李赵刘陈") + rng.choice(("先生", "女士")),
            "timezone": tz,
            "variables": {"订单号": f"JD{1_000_000_000 + i}", "日期": "明天", "时间": rng.choice(("上午10点", "下午3点"))},
            "consent_basis": "contract",
        }
        for i in range(n)
    ]


def test_an_evening_of_reminders_through_the_api(celery_worker, live_server, receivers, twilio_account_credentials):
    sid, token = twilio_account_credentials
    sandbox = TwilioSandbox(
        {sid: token}, seed=11, answer=0.7, busy=0.1, no_answer=0.1, machine=0.05, failed=0.05,
        digits={"1": 0.5, "2": 0.2, "9": 0.05}, time_scale=0.002,
    ).start()  # fmt: skip
    receiver = receivers(fail_first=3)
    _, secret = webhooks.create_endpoint(
        name="order system", url=receiver.url, events=[CALL_FINISHED, CALL_ACTION, CAMPAIGN_FINISHED]
    )
    receiver.use(secret)
    shop = User.objects.create_user("order-system")
    shop.user_permissions.add(*Permission.objects.filter(codename__in=[
        "add_contactlist", "view_contactlist", "add_contact", "change_contact", "add_campaign", "change_campaign",
        "view_campaign",
    ]))  # fmt: skip
    api = requests.Session()
    api.headers["Authorization"] = "Bearer " + tokens.create_token(name="orders", user=shop, scopes=["read", "write"])[1]
    base = f"{live_server.url}/api/v1"
    try:
        template = seed_demo(
            contacts=1, api_base_url=sandbox.url, account_sid=sid, auth_token=token, call_flow=True,
            retry_delay=timedelta(seconds=1), calls_per_second=100, max_concurrent_calls=50,
        ).campaign  # fmt: skip

        # The two calls an order system makes each evening (README "API"): upsert the contacts, launch.
        listed = api.post(f"{base}/contact-lists", json={"name": "Deliveries 2026-12-08", "default_region": "CN"})
        assert listed.status_code == 201, listed.text
        list_id = listed.json()["id"]
        orders = _tonights_orders(CONTACTS, daytime_zone(timezone.now()))
        started = time.perf_counter()
        first = api.post(f"{base}/contact-lists/{list_id}/contacts", json={"contacts": orders},
                         headers={"Idempotency-Key": "deliveries-2026-12-08"})  # fmt: skip
        upsert_seconds = time.perf_counter() - started
        assert first.status_code == 200, first.text[:2000]
        assert (first.json()["created"], first.json()["rejected"]) == (CONTACTS, [])
        again = api.post(f"{base}/contact-lists/{list_id}/contacts", json={"contacts": orders},
                         headers={"Idempotency-Key": "deliveries-2026-12-08"})  # fmt: skip
        assert again.json() == first.json()
        assert Contact.objects.filter(contact_list_id=list_id).count() == CONTACTS  # no duplicates

        created = api.post(f"{base}/campaigns", json={
            "template": template.pk, "name": "送达提醒 2026-12-08", "contact_list": list_id,
        })  # fmt: skip
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        launched = api.post(f"{base}/campaigns/{campaign_id}/launch", headers={"Idempotency-Key": "launch-12-08"})
        assert (launched.status_code, launched.json()["planned"]) == (200, CONTACTS), launched.text
        campaign = Campaign.objects.get(pk=campaign_id)

        outage: dict[str, object] = {"from": None, "over": False}

        def all_delivered() -> bool:
            sweep()  # what beat does every SWEEP_INTERVAL…
            send_webhooks()  # …and every WEBHOOK_SWEEP_INTERVAL
            assert celery_worker.poll() is None, celery_worker.log_path.read_text()[-3000:]
            answered = [p["answer"] for p in receiver.posts]
            if outage["from"] is None and answered.count(204) >= 20:
                receiver.stop()  # the order system goes down for a minute, mid-campaign
                outage["from"] = timezone.now()
            elif outage["from"] and not outage["over"] and timezone.now() - outage["from"] > OUTAGE:
                receiver.start()  # back on the same port; what failed meanwhile comes on its backoff
                outage["over"] = True
            campaign.refresh_from_db()
            return (
                campaign.status == Campaign.Status.COMPLETED
                and outage["over"]
                and WebhookEvent.objects.filter(type=CAMPAIGN_FINISHED, campaign=campaign).exists()
                and not WebhookDelivery.objects.exclude(state="delivered").exists()
            )

        def progress() -> str:
            states = Counter(WebhookDelivery.objects.values_list("state", flat=True))
            calls = Counter(Call.objects.filter(campaign_id=campaign_id).values_list("state", flat=True))
            return f"every delivery delivered: {states}, calls {calls}, {campaign.status}"

        run_started = time.perf_counter()
        wait_until(all_delivered, progress, timeout=900, interval=0.5)
        run_seconds = time.perf_counter() - run_started
    finally:
        sandbox.stop()

    calls = Call.objects.filter(campaign_id=campaign_id)
    assert calls.count() == CONTACTS
    answers = Counter(p["answer"] for p in receiver.posts)
    assert answers[500] == 3 and set(answers) == {500, 204}, answers  # no 400: every signature verified
    # Exactly one call.finished per call, as the receiver keeps them (by event id), whatever was tried twice.
    events = {str(e.event_id): e for e in WebhookEvent.objects.filter(campaign_id=campaign_id)}
    assert receiver.seen == set(events) | {str(e.event_id) for e in WebhookEvent.objects.exclude(campaign_id=campaign_id)}
    finished = [e for e in events.values() if e.type == CALL_FINISHED]
    assert sorted(e.payload["call_id"] for e in finished) == sorted(calls.values_list("pk", flat=True))
    assert {e.payload["contact"]["external_id"] for e in finished} == {o["external_id"] for o in orders}
    # The order system learns what each callee chose, with its order number.
    actions = Counter(e.payload["final_action"] for e in events.values() if e.type == CALL_ACTION)
    assert actions["confirmed"] > 0 and actions["rescheduled"] > 0, actions
    # The outage cost tries, never a result.
    refused = [t for d in WebhookDelivery.objects.all() for t in d.tries if "Connection refused" in t["error"]]
    assert refused and WebhookDelivery.objects.filter(attempts__gt=1).exists()
    print(f"\n{CONTACTS} contacts upserted in {upsert_seconds:.2f} s through the API; campaign and every webhook "
          f"delivered {run_seconds:.0f} s after launch ({OUTAGE.total_seconds():.0f} s receiver outage)")
