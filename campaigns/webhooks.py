"""Result webhooks out: endpoints and their signing secrets, and delivery of the outbox (campaigns.outbox).

Each delivery is a signed JSON POST, in the style of Stripe's signature header:
`Herald-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with `Herald-Event-Id` (what
receivers deduplicate on: the same on every try) and `Herald-Event-Type`. Any 2xx is delivered; anything else
(a redirect too: none is followed) is tried again after 10 s, 20 s, 40 s … at most an hour apart, until 24 h
after the event, then the delivery has failed for good (staff may *redeliver* it from the admin).

At least once: a sweep (beat, every HERALD_WEBHOOK_SWEEP_INTERVAL) claims due deliveries with a conditional
UPDATE that sets a lease, so one worker posts a delivery at a time; a try whose worker died or whose broker
message was lost is taken up again by a later sweep once its lease has run out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from campaigns.models import (
    Campaign,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    webhook_url_problem,
)
from telephony import credentials

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
PREFIX_LENGTH = 10  # what WebhookEndpoint.secret_prefix keeps: "whsec_" and 4 random characters
RETRY_FOR = timedelta(hours=24)  # after the event: then a delivery has failed for good
FIRST_RETRY_SECONDS = 10
MAX_RETRY_SECONDS = 3600
TIMEOUT = (3.0, 10.0)  # connect, read (between bytes) in seconds
# A claimed delivery is its worker's for LEASE; a task that starts with less than MIN_POST_WINDOW of it left
# (it waited in the broker) leaves the delivery to a later sweep, so a try never outlives its lease.
LEASE = timedelta(seconds=120)
MIN_POST_WINDOW = timedelta(seconds=60)
EXCERPT_BYTES = 200  # of a response body, kept on the delivery to show what the receiver said
KEEP_TRIES = 50  # the log of tries on a delivery (24 h of hourly retries is about 32)
# Claimed deliveries not yet settled, at most: a sweep claims no more while workers have this many queued or
# posting, so a backlog (a receiver back after an outage) waits in the table, not in the broker.
MAX_IN_FLIGHT = 500


# --- endpoints -------------------------------------------------------------------------------------


@sensitive_variables("secret")
def create_endpoint(
    *, name: str, url: str, events: list[str], campaign: Campaign | None = None, active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint with a new signing secret; return it and the secret, which is shown once.
    ValidationError (from the model's checks) for a URL or events it refuses."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        name=name,
        url=url,
        campaign=campaign,
        events=list(events),
        active=active,
        secret_encrypted=credentials.encrypt(secret),
        secret_prefix=secret[:PREFIX_LENGTH],
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint, secret


@sensitive_variables("secret")
def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return credentials.decrypt(endpoint.secret_encrypted, what=f"webhook endpoint {endpoint.name}")


# --- signing ---------------------------------------------------------------------------------------


@sensitive_variables("secret")
def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Herald-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(event: WebhookEvent) -> bytes:
    """The JSON posted for an event: the same bytes on every try."""
    document = {
        "id": str(event.event_id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


# --- delivery --------------------------------------------------------------------------------------


def retry_delay(tries: int) -> timedelta:
    """The wait after the `tries`-th failed try: 10 s, 20 s, 40 s … at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** min(tries - 1, 20), MAX_RETRY_SECONDS))


def claim_due(now: datetime | None = None, *, limit: int = MAX_IN_FLIGHT) -> tuple[list[int], datetime]:
    """Claim up to `limit` due deliveries of active endpoints for one try each (fewer while others are in
    flight); return their ids and the lease (the token a worker's try must still hold). Each claim is a
    conditional UPDATE: two sweeps never both win."""
    now = now or timezone.now()
    pending = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING)
    limit = min(limit, MAX_IN_FLIGHT - pending.filter(leased_until__gte=now).count())
    lease = now + LEASE
    if limit <= 0:
        return [], lease
    free = Q(leased_until=None) | Q(leased_until__lt=now)
    due = WebhookDelivery.objects.filter(
        free, state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now, endpoint__active=True
    )
    claimed = []
    for pk in due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        took = (
            WebhookDelivery.objects.filter(free, pk=pk, state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now)
            .update(leased_until=lease)
        )
        if took == 1:
            claimed.append(pk)
    return claimed, lease


@dataclass
class Try:
    status: int | None = None
    latency_ms: int | None = None
    error: str = ""
    excerpt: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _reason(exc: BaseException) -> str:
    """What went wrong, from the innermost OS error (e.g. Connection refused), never the URL: its query may
    carry the receiver's own token."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return exc.__class__.__name__


def post(delivery: WebhookDelivery) -> Try:
    """One signed POST of the delivery's event: no redirect followed, bounded time and response size."""
    endpoint, event = delivery.endpoint, delivery.event
    problem = webhook_url_problem(endpoint.url)
    if problem:
        return Try(error=f"not sent: {problem}"[:500])
    try:
        secret = endpoint_secret(endpoint)
    except credentials.CredentialsError as exc:
        return Try(error=str(exc)[:500])
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Herald-Webhooks/1",
        "Herald-Event-Id": str(event.event_id),
        "Herald-Event-Type": event.type,
        "Herald-Signature": signature(secret, int(time.time()), body),
    }
    started = time.monotonic()
    try:
        with requests.post(
            endpoint.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
        ) as response:
            excerpt = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
            result = Try(status=response.status_code, excerpt=excerpt.decode("utf-8", "replace"))
    except requests.Timeout:
        result = Try(error=f"timed out (connect {TIMEOUT[0]:g} s, read {TIMEOUT[1]:g} s)")
    except requests.RequestException as exc:
        result = Try(error=f"connection failed: {_reason(exc)}"[:500])
    result.latency_ms = round((time.monotonic() - started) * 1000)
    if result.status is not None and not result.delivered:
        if 300 <= result.status < 400:
            result.error = f"HTTP {result.status}: redirects are not followed; give the endpoint its final URL"
        else:
            result.error = f"HTTP {result.status}: {result.excerpt}"[:500]
    return result


def deliver(delivery_id: int, lease: str, *, now: datetime | None = None) -> str:
    """One try of a claimed delivery, if the claim (`lease`, from claim_due) is still this task's; says what
    became of it: delivered, retry, failed, or why nothing was sent."""
    held = datetime.fromisoformat(lease)
    if held - (now or timezone.now()) < MIN_POST_WINDOW:
        return "lease too short"  # it waited in the broker: a later sweep claims it afresh
    # The task itself may run twice (a redelivered broker message, a worker presumed dead and its tasks sent
    # again): the copy that moves the lease on by a microsecond is the one that posts.
    mine = held + timedelta(microseconds=1)
    pending = WebhookDelivery.objects.filter(pk=delivery_id, state=WebhookDelivery.State.PENDING)
    if pending.filter(leased_until=held).update(leased_until=mine) != 1:
        return "not claimed"  # delivered, failed, claimed again by a later sweep, or taken by a copy of this task
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    result = post(delivery)
    return _settle(delivery, mine, result, timezone.now())


def _settle(delivery: WebhookDelivery, lease: datetime, result: Try, at: datetime) -> str:
    tries = delivery.attempts + 1
    entry = {"at": at.isoformat(), "status": result.status, "latency_ms": result.latency_ms, "error": result.error}
    change = dict(
        attempts=F("attempts") + 1,
        last_status_code=result.status,
        last_error=result.error[:500],
        last_latency_ms=result.latency_ms,
        tries=[*delivery.tries, entry][-KEEP_TRIES:],
        leased_until=None,
    )
    deadline = delivery.event.created_at + RETRY_FOR
    if result.delivered:
        change.update(state=WebhookDelivery.State.DELIVERED, delivered_at=at)
        verdict = "delivered"
    elif at >= deadline:
        change.update(state=WebhookDelivery.State.FAILED)
        verdict = "failed"
    else:
        change.update(next_attempt_at=min(at + retry_delay(tries), deadline))
        verdict = "retry"
    WebhookDelivery.objects.filter(pk=delivery.pk, leased_until=lease).update(**change)
    log_at = logging.WARNING if verdict == "failed" else logging.INFO
    # The endpoint by id and name only: its URL may carry a token, the body carries phone numbers.
    log.log(log_at, "webhook %s %s to endpoint %s (%s): %s, try %d, %s ms%s", delivery.event.type,
            delivery.event.event_id, delivery.endpoint_id, delivery.endpoint.name, verdict, tries,
            result.latency_ms, f", {result.error}" if result.error else "")  # fmt: skip
    return verdict


def send_due(now: datetime | None = None, *, limit: int = MAX_IN_FLIGHT) -> dict[str, int]:
    """Claim and post due deliveries in this process, one after another (tests, the bench, a shell); workers
    share them through campaigns.tasks.send_webhooks instead. Counts what became of them."""
    claimed, lease = claim_due(now, limit=limit)
    verdicts: dict[str, int] = {}
    for pk in claimed:
        verdict = deliver(pk, lease.isoformat(), now=now)
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return verdicts


def redeliver(deliveries: list[int], now: datetime | None = None) -> int:
    """A new try as soon as a sweep runs, whatever their state (a failed-for-good delivery gets one more try;
    another failure fails it again). A try in flight keeps its lease. Returns how many."""
    now = now or timezone.now()
    return WebhookDelivery.objects.filter(pk__in=deliveries).update(
        state=WebhookDelivery.State.PENDING, next_attempt_at=now
    )

