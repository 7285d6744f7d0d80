"""Periodic work on beat: the dialer sweep and housekeeping."""

from __future__ import annotations

from campaigns import dialer, lifecycle
from herald.celery import app
from synthesis.tasks import recover_stale_renders
from telephony.actions import look_up_ambiguous_creates, settle_silent_attempts


@app.task(ignore_result=True, expires=30)
def sweep() -> int:
    look_up_ambiguous_creates()  # before dialling more: an ambiguous create may be a call already ringing
    return len(dialer.sweep().enqueued)


@app.task(ignore_result=True)
def housekeeping() -> dict[str, int]:
    return {
        "requeued": lifecycle.release_stale_claims(),
        "renders_recovered": recover_stale_renders(),
        "attempts_settled": settle_silent_attempts(),
    }
