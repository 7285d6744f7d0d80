"""Periodic work on beat: the dialer sweep and housekeeping."""

from __future__ import annotations

from campaigns import dialer, lifecycle, workers
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


@app.task(ignore_result=True)
def recover_workers() -> dict[str, int]:
    """Beat runs this every heartbeat: what a dead or stopped worker held goes to others."""
    recovery = workers.recover_dead_workers()
    return {"workers": len(recovery.workers), "calls_released": recovery.calls_released,
            "renders_requeued": recovery.renders_requeued}
