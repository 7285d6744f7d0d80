"""Telephony queue: ids in, one action."""

from __future__ import annotations

from django.db import transaction

from herald.celery import app
from telephony import actions, trunks


@app.task(acks_late=True)
def place_call(call_id: int) -> str:
    return actions.place_call(call_id)


@app.task(ignore_result=True)
def check_trunks() -> int:
    """Beat, every HERALD_SIP_HEALTH_SECONDS: OPTIONS to every server of every SIP trunk (telephony.trunks)."""
    return trunks.check_trunks()


def enqueue_place_call(call_id: int, *, delay: float = 0.0) -> None:
    """Sent after the claim commits; `delay` spaces calls within one sweep to honour calls per second."""
    transaction.on_commit(lambda: place_call.apply_async((call_id,), countdown=delay or None))
