"""Periodic work on beat: the dialer sweep and housekeeping."""

from __future__ import annotations

from herald.celery import app


@app.task(ignore_result=True, expires=30)
def sweep() -> int:
    from campaigns import actions
    from telephony.actions import look_up_ambiguous_creates

    look_up_ambiguous_creates()  # before dialling more: an ambiguous create may be a call already ringing
    return len(actions.sweep().enqueued)


@app.task(ignore_result=True)
def housekeeping() -> dict[str, int]:
    from campaigns.actions import requeue_stale_dialing
    from synthesis.actions import recover_stale_renders
    from telephony.actions import settle_silent_attempts

    return {
        "requeued": requeue_stale_dialing(),
        "renders_recovered": recover_stale_renders(),
        "attempts_settled": settle_silent_attempts(),
    }
