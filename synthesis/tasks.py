"""Synthesis queue: ids in, one action, JSON only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict

from celery.signals import worker_ready
from django.conf import settings
from django.db import transaction

from herald.celery import app
from synthesis import actions, streaming


@worker_ready.connect
def check_base_models(**_: object) -> dict[str, list[str]]:
    """At worker start: is every GPT-SoVITS base model present and matching its sha256? Logged per version."""
    return actions.check_base_models()


@app.task(
    bind=True,
    acks_late=True,
    autoretry_for=(actions.TransientRenderError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def render_batch(self, render_keys: list[str]) -> dict[str, int]:
    summary = actions.render(render_keys, claim_token=self.request.id or "")
    return {"rendered": len(summary.rendered), "failed": len(summary.failed), "skipped": len(summary.skipped)}


# A live listener's request: worth nothing once its web process has stopped waiting, so it is acknowledged on
# receipt (never redelivered after a worker died) and sent with an expiry (a worker that takes it late drops it).
@app.task(acks_late=False)
def speak(stream_id: str, voice_id: int, text: str, sample_rate: int) -> dict[str, object]:
    return asdict(streaming.speak(stream_id, voice_id, text, sample_rate))


def enqueue_renders(
    keys_with_voice: Iterable[tuple[str, int | None]], *, then: Callable[[], object] | None = None
) -> int:
    """One task per batch of keys of the same voice, sent after the surrounding transaction commits; `then`
    runs in the same after-commit hook, once they are sent."""
    by_voice: dict[int | None, list[str]] = defaultdict(list)
    for key, voice_id in keys_with_voice:
        by_voice[voice_id].append(key)
    size = settings.RENDER_BATCH_SIZE
    batches = [keys[i : i + size] for keys in by_voice.values() for i in range(0, len(keys), size)]

    def send() -> None:
        for batch in batches:
            render_batch.delay(batch)
        if then is not None:
            then()

    transaction.on_commit(send)
    return len(batches)


def recover_stale_renders() -> int:
    """Re-queue renders whose worker died mid-render (the broker redelivers too; this is the backstop)."""
    keys = actions.stale_renders()
    if keys:
        enqueue_renders(keys)
    return len(keys)
