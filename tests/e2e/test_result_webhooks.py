"""An order system's view of a whole campaign: a real Celery worker dials the sandbox carrier and posts results
to the README's receiver, which answers 500 to its first three deliveries and is unreachable for a while in
between. Every signature verifies, and the receiver handles exactly one call.finished per call.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import webhooks
from campaigns.demo import seed_demo
from campaigns.dialer import sweep
from campaigns.launch import launch_campaign
from campaigns.models import CALL_FINISHED, CAMPAIGN_FINISHED, Call, Campaign, WebhookDelivery, WebhookEvent
from campaigns.tasks import send_webhooks
from sandbox.twilio import TwilioSandbox
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_every_call_finished_reaches_the_order_system_once(celery_worker, receivers, twilio_account_credentials):
    sid, token = twilio_account_credentials
    sandbox = TwilioSandbox(
        {sid: token}, seed=7, answer=0.6, busy=0.15, no_answer=0.15, machine=0.05, failed=0.05,
        digits={"1": 0.5, "2": 0.2, "9": 0.1}, time_scale=0.002,
    ).start()  # fmt: skip
    receiver = receivers(fail_first=3)
    _, secret = webhooks.create_endpoint(
        name="order system", url=receiver.url, events=[CALL_FINISHED, CAMPAIGN_FINISHED]
    )
    receiver.use(secret)
    outage = {"from": None, "over": False}

    def retries_due_now() -> None:
        """Time moves on for deliveries waiting for their backoff (10 s, 20 s, …): due now, not slept through."""
        WebhookDelivery.objects.filter(state="pending", attempts__gt=0, leased_until=None).update(
            next_attempt_at=timezone.now()
        )

    try:
        demo = seed_demo(
            contacts=20, api_base_url=sandbox.url, account_sid=sid, auth_token=token,
            retry_delay=timedelta(seconds=1), calls_per_second=20, max_concurrent_calls=8,
        )  # fmt: skip
        campaign = demo.campaign
        assert launch_campaign(campaign) == 20

        def all_delivered() -> bool:
            sweep()  # what beat does every SWEEP_INTERVAL…
            send_webhooks()  # …and every WEBHOOK_SWEEP_INTERVAL
            assert celery_worker.poll() is None, celery_worker.log_path.read_text()[-3000:]
            answered = [p["answer"] for p in receiver.posts]
            if outage["from"] is None and answered.count(204) >= 3:
                receiver.stop()  # the order system goes down for a while, mid-campaign
                outage["from"] = timezone.now()
            elif outage["from"] and not outage["over"] and timezone.now() - outage["from"] > timedelta(seconds=3):
                receiver.start()
                outage["over"] = True
            retries_due_now()
            campaign.refresh_from_db()
            return (
                campaign.status == Campaign.Status.COMPLETED
                and outage["over"]
                and WebhookEvent.objects.filter(type=CAMPAIGN_FINISHED).exists()
                and not WebhookDelivery.objects.exclude(state="delivered").exists()
            )

        def progress() -> str:
            states = Counter(WebhookDelivery.objects.values_list("state", flat=True))
            return f"every delivery delivered: {states}, {campaign.status}\n{celery_worker.log_path.read_text()[-3000:]}"

        wait_until(all_delivered, progress, timeout=180, interval=0.3)
    finally:
        sandbox.stop()

    calls = Call.objects.filter(campaign=campaign)
    finished = WebhookEvent.objects.filter(type=CALL_FINISHED)
    assert sorted(e.payload["call_id"] for e in finished) == sorted(calls.values_list("pk", flat=True))
    answers = Counter(p["answer"] for p in receiver.posts)
    assert answers[500] == 3 and set(answers) == {500, 204}, answers  # no 400: every signature verified
    assert receiver.seen == {str(e.event_id) for e in WebhookEvent.objects.all()}
    # The outage cost tries, never a result: some deliveries were refused a connection, then delivered.
    assert WebhookDelivery.objects.filter(attempts__gt=1).exists()
    refused = [t for d in WebhookDelivery.objects.all() for t in d.tries if "Connection refused" in t["error"]]
    assert refused
    phones = {e.payload["contact"]["phone"] for e in finished}
    assert phones == set(calls.values_list("phone", flat=True))
