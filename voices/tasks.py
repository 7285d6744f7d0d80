"""Training-queue work: fine-tune one voice, and give jobs whose worker died back to the queue."""

from __future__ import annotations

from django.db import transaction

from herald.celery import app
from voices import studio
from voices.models import TrainingJob


# One job per message; acks_late with reject-on-worker-lost hands a killed worker's job to the next worker,
# and the job itself resumes from its last finished epoch. No Celery time limit: the job checks its own.
@app.task(ignore_result=True, acks_late=True)
def train_voice(job_id: int) -> str:
    return studio.run_training(job_id)


@app.task(ignore_result=True)
def resume_stale_training() -> list[int]:
    requeued = studio.stale_jobs()
    for job_id in requeued:
        train_voice.delay(job_id)
    return requeued


def enqueue(job: TrainingJob) -> None:
    """Send the job to a training worker once the transaction that created it commits."""
    transaction.on_commit(lambda: train_voice.delay(job.pk))
