"""Periodic work on beat: the dialer sweep, housekeeping, and result webhooks out."""

from __future__ import annotations

from campaigns import dialer, lifecycle, webhooks, workers
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
        "calls_woken": lifecycle.ready_if_rendered(),
        "attempts_settled": settle_silent_attempts(),
    }


@app.task(ignore_result=True)
def recover_workers() -> dict[str, int]:
    """Beat runs this every heartbeat: what a dead or stopped worker held goes to others."""
    recovery = workers.recover_dead_workers()
    return {"workers": len(recovery.workers), "calls_released": recovery.calls_released,
            "renders_requeued": recovery.renders_requeued}


@app.task(ignore_result=True)
def send_webhooks() -> int:
    """Beat runs this every HERALD_WEBHOOK_SWEEP_INTERVAL: due deliveries are claimed, one task each."""
    claimed, lease = webhooks.claim_due()
    for pk in claimed:
        deliver_webhook.delay(pk, lease.isoformat())
    return len(claimed)


@app.task(ignore_result=True)
def deliver_webhook(delivery_id: int, lease: str) -> str:
    return webhooks.deliver(delivery_id, lease)
