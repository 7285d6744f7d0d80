"""Telephony queue: ids in, one action."""

from __future__ import annotations

from django.db import transaction

from herald.celery import app
from telephony import actions


@app.task(acks_late=True)
def place_call(call_id: int) -> str:
    return actions.place_call(call_id)


def enqueue_place_call(call_id: int, *, delay: float = 0.0) -> None:
    """Sent after the claim commits; `delay` spaces calls within one sweep to honour calls per second."""
    transaction.on_commit(lambda: place_call.apply_async((call_id,), countdown=delay or None))
