"""The outbox of result webhooks: events written in the transaction of the change that causes them.

The lifecycle calls these verbs where a call finishes, where a flow's final action is recorded and where a
campaign finishes. An event is written, with one pending delivery per matching active endpoint, only when some
endpoint wants it: a shop without webhooks pays one indexed query per finished call. Delivery (signing,
posting, retries) is campaigns.webhooks', swept from the deliveries table, so nothing written here is lost when
a worker or a broker message is.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from campaigns import callflow
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

# The flow's final actions an order system acts on, each sent as a `call.action` the moment it is chosen.
ACTIONS = (callflow.CONFIRMED, callflow.RESCHEDULED, callflow.OPTED_OUT, callflow.TRANSFERRED)
CHUNK = 500  # call ids per IN (…) query: well inside every database's parameter limit


def _endpoints(event_type: str, campaign_id: int) -> list[WebhookEndpoint]:
    wanted = WebhookEndpoint.objects.filter(Q(campaign=None) | Q(campaign_id=campaign_id), active=True)
    # A handful of rows: filtered here because SQLite has no JSON containment lookup.
    return [endpoint for endpoint in wanted.only("pk", "events") if event_type in endpoint.events]


def _record(
    event_type: str, campaign_id: int, endpoints: list[WebhookEndpoint], payload: dict[str, Any]
) -> WebhookEvent:
    now = timezone.now()
    event = WebhookEvent.objects.create(type=event_type, campaign_id=campaign_id, payload=payload, created_at=now)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=now, created_at=now) for endpoint in endpoints
    )
    return event


def call_payload(call_id: int) -> dict[str, Any]:
    """What a result says about a call: who (the contact's external_id, number and variables), where it stands,
    and what the callee did (keys, the flow's path, the final action and its detail: the slot as said)."""
    call = Call.objects.select_related("campaign", "variant", "contact").get(pk=call_id)
    latest = CallAttempt.objects.filter(call_id=call_id).order_by("-number").first()
    acted = CallAttempt.objects.filter(call_id=call_id).exclude(action="").order_by("-number").first()
    contact = call.contact
    return {
        "call_id": call.pk,
        "campaign": {"id": call.campaign_id, "name": call.campaign.name},
        "variant": call.variant.name,
        "contact": {
            "external_id": contact.external_id,
            "phone": call.phone,
            "name": contact.name,
            "variables": contact.fields,
        },
        "state": call.state,
        "outcome": call.outcome,
        "attempts": call.attempts_made,
        "keys": call.final_digits,
        "flow_path": list((acted or latest).path) if latest else [],
        "final_action": acted.action if acted else "",
        "final_action_detail": acted.action_detail if acted else "",
    }


def call_finished(call_id: int, campaign_id: int) -> None:
    """The call reached its final state (done or failed): no more attempts will be made."""
    endpoints = _endpoints(CALL_FINISHED, campaign_id)
    if endpoints:
        _record(CALL_FINISHED, campaign_id, endpoints, call_payload(call_id))


def calls_finished(calls: list[tuple[int, int]]) -> None:
    """Calls already dialled whose retry was cancelled (their campaign ended, their number went on the
    do-not-call list): finished too. `calls`: (call id, campaign id) pairs."""
    by_campaign: dict[int, list[int]] = {}
    for call_id, campaign_id in calls:
        by_campaign.setdefault(campaign_id, []).append(call_id)
    for campaign_id, call_ids in by_campaign.items():
        endpoints = _endpoints(CALL_FINISHED, campaign_id)
        if not endpoints:
            continue
        # Only those the caller's UPDATE cancelled: one the dialer claimed meanwhile is still going.
        for start in range(0, len(call_ids), CHUNK):
            chunk = call_ids[start : start + CHUNK]
            for call_id in Call.objects.filter(pk__in=chunk, state=Call.State.CANCELLED).values_list("pk", flat=True):
                _record(CALL_FINISHED, campaign_id, endpoints, call_payload(call_id))


def call_action(attempt: CallAttempt, campaign_id: int, *, action: str = "") -> None:
    """The callee chose a final action in the flow (attempt.action): confirmed, rescheduled (the slot is the
    detail), opted out or transferred; or, without a flow, pressed the opt-out key (`action` says so). Sent at
    once, before the call's end."""
    action = action or attempt.action
    if action not in ACTIONS:
        return
    endpoints = _endpoints(CALL_ACTION, campaign_id)
    if not endpoints:
        return
    payload = call_payload(attempt.call_id)
    payload.update(
        action=action, action_detail=attempt.action_detail, keys=attempt.digits, flow_path=list(attempt.path)
    )
    _record(CALL_ACTION, campaign_id, endpoints, payload)


def campaign_finished(campaign_id: int) -> None:
    """The campaign completed or was cancelled: its calls counted by state and by outcome."""
    endpoints = _endpoints(CAMPAIGN_FINISHED, campaign_id)
    if not endpoints:
        return
    campaign = Campaign.objects.get(pk=campaign_id)
    calls = Call.objects.filter(campaign_id=campaign_id).order_by()
    by_state = dict(calls.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
    by_outcome = dict(
        calls.exclude(outcome="").values_list("outcome").annotate(n=Count("pk")).values_list("outcome", "n")
    )
    _record(
        CAMPAIGN_FINISHED,
        campaign_id,
        endpoints,
        {
            "campaign": {"id": campaign.pk, "name": campaign.name},
            "status": campaign.status,
            "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
            "calls": sum(by_state.values()),
            "calls_by_state": by_state,
            "calls_by_outcome": by_outcome,
        },
    )
