"""Voice studio verbs: recordings in, clips and transcripts, the speaker's spoken consent, training jobs.

    add_recording ─► clips (sliced, normalised, checked; a reference clip picked) ─► transcripts (ASR or typed)
    ─► new_consent / record_consent (statement + challenge; words and speaker checked) ─► approve_consent
    (a second staff member) ─► start_training ─► run_training on a training worker ─► a Voice + its consent

The consent is bound to the training audio by `training_digest`: changing a clip or a transcript after it
was recorded makes it stale, and no training starts on stale or unapproved consent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from synthesis.gptsovits import basemodels
from voices import asr, slicing
from voices.actions import save_voice
from voices.models import (
    SpeakerConsent,
    SpokenConsent,
    StudioRecording,
    TrainingClip,
    TrainingJob,
    Voice,
    VoiceDraft,
)

log = logging.getLogger(__name__)

MAX_RECORDING_BYTES = 100 * 1024 * 1024  # about 9 minutes of 48 kHz stereo 16-bit WAV
MIN_TRAINING_SECONDS = 20.0
MAX_TRAINING_ATTEMPTS = 3


class StudioError(ValueError):
    """A studio step cannot be done; the message says what to do instead."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- recordings and clips ----------------------------------------------------------------------------------


def _transcriber() -> asr.Transcriber | None:
    try:
        return asr.Transcriber.from_environment()
    except asr.ASRUnavailable as exc:
        log.warning("speech recognition unavailable: %s", exc)
        return None


def add_recording(draft: VoiceDraft, data: bytes, *, name: str = "", by: Any = None) -> StudioRecording:
    """Store one file of the speaker, slice it into clips and transcribe the usable ones when a model is here.

    A file that is not usable audio is kept with its problem and gives no clips; the draft's other files stay.
    """
    if len(data) > MAX_RECORDING_BYTES:
        raise StudioError(gettext(
            "%(name)s is %(size)s MB; the limit is %(limit)s MB (upload a shorter recording or several files)"
        ) % {
            "name": name or gettext("the file"),
            "size": f"{len(data) / 2**20:.0f}",
            "limit": MAX_RECORDING_BYTES // 2**20,
        })
    digest = _sha256(data)
    if draft.recordings.filter(sha256=digest).exists():
        raise StudioError(gettext("%(name)s was already added to this draft") % {"name": name or gettext("this file")})
    recording = StudioRecording(draft=draft, original_name=name[:200], sha256=digest, uploaded_by=by)
    try:
        wav, rate = slicing.load_speech(data)
    except slicing.AudioProblem as exc:
        recording.problem = str(exc)
        recording.audio.save(f"{digest}.bin", ContentFile(data), save=True)
        return recording
    recording.duration_s = len(wav) / rate
    try:
        prepared = slicing.prepare_clips(wav, rate)
    except slicing.AudioProblem as exc:  # nothing usable in the whole file (silence, say): it fails alone
        recording.problem = str(exc)
        recording.audio.save(f"{digest}.wav", ContentFile(data), save=True)
        return recording
    if not any(clip.problem is None for clip in prepared):
        found = "; ".join(sorted({clip.problem or "" for clip in prepared}))
        recording.problem = gettext("no usable speech: %(problems)s") % {
            "problems": found or gettext("nothing above the silence threshold"),
        }
    transcriber = _transcriber()
    with transaction.atomic():
        recording.audio.save(f"{digest}{Path(name).suffix[:8] or '.wav'}", ContentFile(data), save=True)
        position = (draft.clips.order_by("-position").values_list("position", flat=True).first() or 0)
        for clip in prepared:
            position += 1
            wav_bytes = slicing.write_wav(clip.audio, rate)
            text, source = "", ""
            if transcriber is not None and clip.problem is None:
                text, source = transcriber.transcribe(clip.audio), TrainingClip.TranscriptSource.ASR
            row = TrainingClip(
                draft=draft, recording=recording, position=position, sha256=_sha256(wav_bytes),
                start_s=clip.start_s, end_s=clip.end_s, duration_s=clip.duration_s, snr_db=clip.snr_db,
                problem=clip.problem or "", transcript=text, transcript_source=source,
            )
            row.audio.save(f"{row.sha256}.wav", ContentFile(wav_bytes), save=True)
        _pick_reference(draft)
        if draft.stage == VoiceDraft.Stage.CLIPS and draft.usable_clips().exists():
            VoiceDraft.objects.filter(pk=draft.pk).update(stage=VoiceDraft.Stage.TRANSCRIPTS)
            draft.stage = VoiceDraft.Stage.TRANSCRIPTS
    return recording


def _pick_reference(draft: VoiceDraft) -> None:
    if draft.reference_clip_id and draft.usable_clips().filter(pk=draft.reference_clip_id).exists():
        return
    clips = list(draft.usable_clips())
    candidates = [
        slicing.PreparedClip(start_s=c.start_s, end_s=c.end_s, audio=np.zeros(0, np.float32),
                             duration_s=c.duration_s, problem=None, snr_db=c.snr_db or 0.0, peak=0.0)
        for c in clips
    ]
    index = slicing.pick_reference(candidates) if candidates else None
    draft.reference_clip = clips[index] if index is not None else None
    VoiceDraft.objects.filter(pk=draft.pk).update(reference_clip=draft.reference_clip)


def set_transcripts(draft: VoiceDraft, transcripts: dict[int, str], *, excluded: set[int] = frozenset(),
                    reference: int | None = None) -> int:
    """Staff's corrections: {clip id: text}; clips in `excluded` are left out of training. Returns changes."""
    changed = 0
    with transaction.atomic():
        for clip in draft.clips.select_for_update():
            if clip.pk in excluded and not clip.problem:
                clip.problem = gettext("left out by staff")
                clip.save(update_fields=["problem"])
                changed += 1
                continue
            text = " ".join(transcripts.get(clip.pk, clip.transcript).split())
            if text != clip.transcript:
                clip.transcript, clip.transcript_source = text, TrainingClip.TranscriptSource.TYPED
                clip.save(update_fields=["transcript", "transcript_source"])
                changed += 1
        if reference is not None:
            clip = draft.usable_clips().filter(pk=reference).first()
            if clip is None:
                raise StudioError(gettext("the reference clip must be one of this draft's usable clips"))
            if not 3.0 <= clip.duration_s <= 10.0:
                raise StudioError(gettext("the reference clip must be 3-10 s long; clip %(position)s is %(seconds)s s")
                                  % {"position": clip.position, "seconds": f"{clip.duration_s:.1f}"})
            draft.reference_clip = clip
            VoiceDraft.objects.filter(pk=draft.pk).update(reference_clip=clip)
            changed += 1
        _pick_reference(draft)
    return changed


def transcript_problems(draft: VoiceDraft) -> list[str]:
    """What keeps the clips from training: missing transcripts, too little audio, no reference clip."""
    clips = list(draft.usable_clips())
    found = [gettext("clip %(position)s has no transcript") % {"position": c.position}
             for c in clips if not c.transcript.strip()]
    total = sum(c.duration_s for c in clips)
    if total < MIN_TRAINING_SECONDS:
        found.append(gettext("only %(seconds)s s of usable speech; at least %(minimum)s s are needed "
                             "(about a minute is best)")
                     % {"seconds": f"{total:.0f}", "minimum": f"{MIN_TRAINING_SECONDS:.0f}"})
    if draft.reference_clip_id is None:
        found.append(gettext("no usable clip is 3-10 s long to serve as the reference clip"))
    return found


def training_digest(draft: VoiceDraft) -> str:
    """sha256 over every usable clip's audio and transcript, in order, and the reference clip's choice."""
    digest = hashlib.sha256(b"herald.training-set.v1\x00")
    for clip in draft.usable_clips().order_by("position"):
        digest.update(f"{clip.sha256}:{clip.transcript}\x00".encode())
    reference = VoiceDraft.objects.filter(pk=draft.pk).values_list("reference_clip__sha256", flat=True).first()
    digest.update(f"reference:{reference or '-'}".encode())  # from the database: `draft` may be an old copy
    return digest.hexdigest()


# --- spoken consent ----------------------------------------------------------------------------------------

STATEMENTS = {
    Voice.Language.MANDARIN: "我是{speaker}。我同意{company}用我的声音录音制作合成语音，用于{purpose}。",
    Voice.Language.ENGLISH: "I am {speaker}. I agree that {company} may use recordings of my voice to create "
                            "a synthetic voice for {purpose}.",
}
CHALLENGE_WORDS = {
    Voice.Language.MANDARIN: ["苹果", "长江", "星期", "邮局", "蓝天", "高铁", "茶杯", "书包", "熊猫", "月亮",
                              "火车", "大海", "雨伞", "钢琴", "花园", "电脑", "桥梁", "松树", "灯笼", "围巾"],
    Voice.Language.ENGLISH: ["river", "orange", "window", "garden", "silver", "planet", "pencil", "harbor",
                             "yellow", "candle", "forest", "violin", "rocket", "meadow", "castle", "tunnel"],
}


def new_consent(draft: VoiceDraft) -> SpokenConsent:
    """A statement for the speaker to read and a fresh random challenge (shown when they record it)."""
    problems = transcript_problems(draft)
    if problems:
        raise StudioError(gettext("finish the clips first: %(problems)s") % {"problems": "; ".join(problems)})
    language = draft.language if draft.language in STATEMENTS else Voice.Language.ENGLISH
    statement = STATEMENTS[language].format(speaker=draft.speaker_name, company=draft.company, purpose=draft.purpose)
    words = [secrets.choice(CHALLENGE_WORDS[language]) for _ in range(3)]
    challenge = ("，".join(words) + "。") if language == Voice.Language.MANDARIN else (", ".join(words) + ".")
    consent = SpokenConsent.objects.create(draft=draft, statement=statement, challenge=challenge)
    VoiceDraft.objects.filter(pk=draft.pk).update(stage=VoiceDraft.Stage.CONSENT)
    return consent


SPEAKER_CHECK_CLIPS = 3  # the longest usable clips stand for the training speaker (each embedding costs ~1 s)


def _speaker_similarity(consent_wav: np.ndarray, clips: list[TrainingClip]) -> tuple[float, str]:
    """Cosine similarity of the consent's speaker embedding and the training clips' mean embedding."""
    # torch and the speaker model: consent checks and training only, loaded on first use
    import torch

    from synthesis.frontend.features import speaker_embedding

    base = basemodels.base_dir()
    model = base / basemodels.SV_MODEL if base else None
    if model is None or not model.is_file():
        raise StudioError(gettext(
            "the speaker check needs the speaker-verification model %(model)s in the base directory (%(setting)s)"
        ) % {"model": basemodels.SV_MODEL, "setting": basemodels.ENV_BASE})
    encoder = _sv_encoder(model)
    chosen = sorted(clips, key=lambda c: -c.duration_s)[:SPEAKER_CHECK_CLIPS]
    key = (str(model), *sorted(c.sha256 for c in chosen))
    training = _training_embeddings.get(key)
    if training is None:
        embeddings = []
        for clip in chosen:
            with clip.audio.open("rb") as handle:
                wav, _ = slicing.load_speech(handle.read())
            embeddings.append(speaker_embedding(wav, encoder)[0].float())
        training = torch.stack(embeddings).mean(0)
        if len(_training_embeddings) > 16:
            _training_embeddings.clear()
        _training_embeddings[key] = training
    consent = speaker_embedding(consent_wav, encoder)[0].float()
    similarity = float(torch.nn.functional.cosine_similarity(training, consent, dim=0))
    return similarity, gettext("%(count)s longest training clips") % {"count": len(chosen)}


_encoders: dict[str, Any] = {}
_training_embeddings: dict[tuple[str, ...], Any] = {}


def _sv_encoder(path: Path) -> Any:
    # torch, the models and the frontend load on first use, in workers: the web process never needs them
    from synthesis.gptsovits.speaker import SpeakerEncoder

    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in _encoders:
        _encoders.clear()
        _encoders[key] = SpeakerEncoder.load(path)
    return _encoders[key]


def record_consent(consent: SpokenConsent, data: bytes, *, by: Any = None) -> SpokenConsent:
    """Store the speaker reading the statement and challenge, and check the words and the speaker."""
    if consent.approved_at is not None or consent.audio:
        raise StudioError(gettext("this consent was already recorded; start a new one to record again"))
    if len(data) > MAX_RECORDING_BYTES:
        raise StudioError(gettext("the consent recording is too large"))
    try:
        wav, _ = slicing.load_speech(data, max_seconds=120)
    except slicing.AudioProblem as exc:
        raise StudioError(gettext("the consent recording cannot be used: %(problem)s") % {"problem": exc}) from exc
    draft = consent.draft
    clips = list(draft.usable_clips())
    transcriber = _transcriber()
    if transcriber is not None:
        consent.heard_text = transcriber.transcribe(wav)
        ok, score, detail = asr.words_match(f"{consent.statement}{consent.challenge}", consent.heard_text)
        consent.words_ok, consent.words_detail = ok, detail
    else:
        consent.words_ok = None
        consent.words_detail = gettext("not checked: no speech-recognition model here (HERALD_ASR_MODEL_DIR); the "
                                       "approver must listen to the recording")
    similarity, what = _speaker_similarity(wav, clips)
    threshold = settings.CONSENT_MIN_SIMILARITY
    consent.similarity = similarity
    consent.speaker_ok = similarity >= threshold
    if consent.speaker_ok:
        detail = gettext("similarity %(similarity)s to the %(what)s (at or above the required %(threshold)s)")
    else:
        detail = gettext("similarity %(similarity)s to the %(what)s (below the required %(threshold)s)")
    consent.speaker_detail = detail % {
        "similarity": f"{similarity:.2f}", "what": what, "threshold": f"{threshold:.2f}",
    }
    consent.training_digest = training_digest(draft)
    consent.recorded_by, consent.recorded_at = by, timezone.now()
    consent.audio_sha256 = _sha256(data)
    consent.audio.save(f"{consent.audio_sha256}.wav", ContentFile(slicing.write_wav(wav, 32000)), save=False)
    consent.save()
    if consent.checks_pass:
        VoiceDraft.objects.filter(pk=draft.pk).update(stage=VoiceDraft.Stage.APPROVAL)
    return consent


def approve_consent(consent: SpokenConsent, *, by: Any, listened: bool = False) -> None:
    """A second staff member approves; they must not be the one who recorded it."""
    if not consent.audio:
        raise StudioError(gettext("nothing to approve: the consent has not been recorded"))
    if consent.approved_at is not None:
        raise StudioError(gettext("this consent is already approved"))
    if by is None or consent.recorded_by_id == getattr(by, "pk", None):
        raise StudioError(gettext("a second staff member must approve: whoever recorded the consent cannot approve it"))
    if consent.speaker_ok is not True:
        raise StudioError(gettext("the speaker check failed (%(detail)s); record the consent again")
                          % {"detail": consent.speaker_detail})
    if consent.words_ok is False:
        raise StudioError(gettext("the words do not match the statement (%(detail)s); record it again")
                          % {"detail": consent.words_detail})
    if consent.words_ok is None and not listened:
        raise StudioError(gettext("no speech-recognition model checked the words: confirm that you listened to the "
                                  "recording and heard the statement and the challenge"))
    if consent.training_digest != training_digest(consent.draft):
        raise StudioError(gettext("the clips or transcripts changed after the consent was recorded; record it again"))
    updated = SpokenConsent.objects.filter(pk=consent.pk, approved_at__isnull=True).update(
        approved_by=by, approved_at=timezone.now())
    if updated:
        VoiceDraft.objects.filter(pk=consent.draft_id).update(stage=VoiceDraft.Stage.READY)


def approved_consent(draft: VoiceDraft) -> SpokenConsent | None:
    """The newest approved consent that still matches the draft's clips and transcripts, if any."""
    digest = training_digest(draft)
    return draft.spoken_consents.filter(approved_at__isnull=False, training_digest=digest).first()


# --- training jobs ----------------------------------------------------------------------------------------


def start_training(draft: VoiceDraft, *, by: Any = None, sovits_epochs: int = 8, gpt_epochs: int = 15,
                   batch_size: int = 4, time_limit_s: int = 3 * 3600) -> TrainingJob:
    """Queue a training job (the caller enqueues it after commit); refused without approved consent."""
    problems = transcript_problems(draft)
    if problems:
        raise StudioError("; ".join(problems))
    if approved_consent(draft) is None:
        raise StudioError(gettext("no training without the speaker's approved spoken consent for these exact clips"))
    if draft.voice_id is not None:
        raise StudioError(gettext("this draft already became the voice %(voice)s") % {"voice": draft.voice})
    if Voice.objects.filter(name=draft.name).exists():
        raise StudioError(gettext("a voice named %(name)s exists already; rename the draft")
                          % {"name": repr(draft.name)})
    limits = ((sovits_epochs, gettext("SoVITS epochs"), 1, 100), (gpt_epochs, gettext("GPT epochs"), 0, 100),
              (batch_size, gettext("batch size"), 1, 64), (time_limit_s, gettext("time limit"), 60, 7 * 86400))
    for value, what, low, high in limits:
        if not low <= value <= high:
            raise StudioError(gettext("%(what)s must be between %(low)s and %(high)s, not %(value)s")
                              % {"what": what, "low": low, "high": high, "value": value})
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                draft=draft, sovits_epochs=sovits_epochs, gpt_epochs=gpt_epochs, batch_size=batch_size,
                time_limit_s=time_limit_s, training_digest=training_digest(draft), requested_by=by,
            )
            VoiceDraft.objects.filter(pk=draft.pk).update(stage=VoiceDraft.Stage.TRAINING)
    except IntegrityError as exc:
        raise StudioError(gettext("a training job for this draft is already queued or running")) from exc
    return job


def cancel_training(job: TrainingJob) -> None:
    """Ask the job to stop; a queued job stops at once, a running one before its next step."""
    if TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.QUEUED).update(
        state=TrainingJob.State.CANCELLED, cancel_requested=True, finished_at=timezone.now(),
        message=gettext("cancelled before it started"),
    ):
        VoiceDraft.objects.filter(pk=job.draft_id).update(stage=VoiceDraft.Stage.READY)
        return
    TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.RUNNING).update(cancel_requested=True)


def stale_jobs() -> list[int]:
    """Running jobs whose worker stopped reporting (died): put back in the queue, or failed after 3 tries."""
    cutoff = timezone.now() - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    stale = TrainingJob.objects.filter(state=TrainingJob.State.RUNNING, heartbeat_at__lt=cutoff)
    requeued = []
    for job in stale:
        if job.attempts >= MAX_TRAINING_ATTEMPTS:
            _fail(job, gettext("the training worker stopped reporting %(count)s times (killed or out of memory?); "
                               "giving up") % {"count": job.attempts}, keep_work=False, only_if_stale=cutoff)
            continue
        if TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.RUNNING, heartbeat_at__lt=cutoff).update(
            state=TrainingJob.State.QUEUED,
            message=gettext("the worker %(worker)s stopped reporting; waiting to resume") % {"worker": job.worker},
        ):
            requeued.append(job.pk)
    return requeued


def work_dir(job: TrainingJob) -> Path:
    """Where a job's dataset, per-epoch state and exports live: by draft and training digest, so a new job on
    the same approved clips resumes what an earlier one finished."""
    return Path(settings.TRAINING_DIR) / f"draft-{job.draft_id}-{job.training_digest[:16]}"


def _fail(job: TrainingJob, reason: str, *, keep_work: bool, only_if_stale: Any = None) -> None:
    query = TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.RUNNING)
    if only_if_stale is not None:
        query = query.filter(heartbeat_at__lt=only_if_stale)
    if query.update(state=TrainingJob.State.FAILED, error=reason, finished_at=timezone.now()):
        VoiceDraft.objects.filter(pk=job.draft_id).update(stage=VoiceDraft.Stage.READY)
        log.warning("training job %s failed: %s", job.pk, reason)
        if not keep_work:
            shutil.rmtree(work_dir(job), ignore_errors=True)


@dataclass
class _JobControl:
    """finetune.Control over the job row: progress and heartbeat out, cancel and time limit in."""

    job: TrainingJob
    deadline: Any

    def report(self, stage: str, epoch: int, epochs: int, step: int, losses: dict[str, float],
               fraction: float) -> None:
        # Only while this worker holds the job: a worker the watchdog gave up on must not write over its successor.
        TrainingJob.objects.filter(pk=self.job.pk, worker=self.job.worker).update(
            stage=stage, epoch=epoch, step=F("step") + 1, progress=round(fraction, 4),
            losses={k: round(float(v), 5) for k, v in losses.items()}, heartbeat_at=timezone.now(),
            message=gettext("%(stage)s epoch %(epoch)s/%(epochs)s, batch %(step)s")
            % {"stage": stage, "epoch": epoch, "epochs": epochs, "step": step},
        )

    def stop_reason(self) -> str | None:
        row = TrainingJob.objects.filter(pk=self.job.pk).values("cancel_requested", "state", "worker").first()
        if row is None or row["cancel_requested"]:
            return "cancelled"
        if row["state"] != TrainingJob.State.RUNNING or row["worker"] != self.job.worker:
            return "taken over by another worker"
        if timezone.now() >= self.deadline:
            return gettext("the time limit of %(minutes)s min was reached") % {"minutes": self.job.time_limit_s // 60}
        return None


def claim(job_id: int) -> TrainingJob | None:
    """Take a queued job (or resume one whose worker died); None when another worker has it."""
    cutoff = timezone.now() - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claimed = TrainingJob.objects.filter(pk=job_id).filter(
        Q(state=TrainingJob.State.QUEUED) | Q(state=TrainingJob.State.RUNNING, heartbeat_at__lt=cutoff)
    ).filter(cancel_requested=False).update(
        state=TrainingJob.State.RUNNING, attempts=F("attempts") + 1, worker=worker, heartbeat_at=timezone.now(),
        started_at=Coalesce(F("started_at"), Value(timezone.now())),
    )
    if claimed != 1:
        return None
    job = TrainingJob.objects.select_related("draft").get(pk=job_id)
    if job.attempts > MAX_TRAINING_ATTEMPTS:
        _fail(job, gettext("started %(count)s times without finishing; giving up") % {"count": job.attempts - 1},
              keep_work=False)
        return None
    return job


def _base_weights() -> Any:
    """The v2 base pair (and discriminator, when the base directory has it) that fine-tuning starts from."""
    # torch and the model code load in training workers only, never in the web process
    from synthesis.gptsovits.checkpoint import read_checkpoint, read_discriminator
    from synthesis.gptsovits.finetune import BaseWeights

    base = basemodels.base_dir()
    pair = basemodels.base_pair(base, "v2")  # BaseModelError names every missing or altered file
    sovits = read_checkpoint(pair.sovits, kind="sovits")
    gpt = read_checkpoint(pair.gpt, kind="gpt")
    discriminator = None
    d_path = basemodels.training_discriminator(base, "v2")
    if d_path is not None:
        discriminator = read_discriminator(d_path)
    return BaseWeights(
        sovits_state=sovits.weights, sovits_config=sovits.config, discriminator_state=discriminator,
        gpt_state=gpt.weights, gpt_config=gpt.config, gpt_path=pair.gpt,
    ), d_path is not None


def _training_device() -> tuple[str, bool]:
    import torch  # training workers only

    device = settings.TRAINING_DEVICE or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, device.startswith("cuda")


def run_training(job_id: int) -> str:
    """Run (or resume) one job on this worker, to a finished Voice or a stated reason. Returns the final state."""
    # torch, the models and the frontend load on first use, in workers: the web process never needs them
    from synthesis.gptsovits import finetune

    job = claim(job_id)
    if job is None:
        return "not claimed"
    draft = job.draft
    if training_digest(draft) != job.training_digest or approved_consent(draft) is None:
        _fail(job, gettext("the clips, transcripts or consent changed after the job was queued; start a new job"),
              keep_work=False)
        return TrainingJob.State.FAILED
    workdir = work_dir(job)
    deadline = job.started_at + timedelta(seconds=job.time_limit_s)
    control = _JobControl(job, deadline)
    try:
        base, has_discriminator = _base_weights()
        device, fp16 = _training_device()
        items = _dataset(job, draft, workdir, base, device)
        plan = finetune.Plan(sovits_epochs=job.sovits_epochs, gpt_epochs=job.gpt_epochs, batch_size=job.batch_size,
                             device=device, fp16=fp16, name=f"herald-{draft.pk}")
        if not has_discriminator:
            TrainingJob.objects.filter(pk=job.pk).update(
                message=gettext("no pretrained discriminator in the base directory: it starts from random weights"))
        result = finetune.train(items, base, plan, workdir, control)
        TrainingJob.objects.filter(pk=job.pk).update(stage=TrainingJob.Stage.EXPORT, progress=0.97,
                                                     history=result.history, heartbeat_at=timezone.now())
        voice = _publish(job, draft, result)
    except finetune.Stopped as exc:
        if exc.reason == "cancelled":
            if TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.RUNNING).update(
                state=TrainingJob.State.CANCELLED, finished_at=timezone.now(), message=gettext("cancelled by staff")
            ):
                VoiceDraft.objects.filter(pk=draft.pk).update(stage=VoiceDraft.Stage.READY)
                shutil.rmtree(workdir, ignore_errors=True)
            return TrainingJob.State.CANCELLED
        if exc.reason.startswith("taken over"):
            return "taken over"
        _fail(job, gettext("stopped: %(reason)s (the finished epochs are kept; a new job resumes from them)")
              % {"reason": exc.reason}, keep_work=True)
        return TrainingJob.State.FAILED
    except (basemodels.BaseModelError, finetune.DatasetError, StudioError) as exc:
        _fail(job, str(exc), keep_work=False)
        return TrainingJob.State.FAILED
    except Exception as exc:  # noqa: BLE001 - any other failure is recorded on the job, with its type
        log.exception("training job %s crashed", job.pk)
        _fail(job, gettext("training crashed: %(type)s: %(error)s") % {"type": type(exc).__name__, "error": exc},
              keep_work=True)
        return TrainingJob.State.FAILED
    log.info("training job %s finished: voice %s", job.pk, voice.pk)
    return TrainingJob.State.SUCCEEDED


def _clip_utterances(draft: VoiceDraft) -> list[Any]:
    # torch, the models and the frontend load on first use, in workers: the web process never needs them
    from synthesis.gptsovits.finetune import Utterance

    utterances = []
    for clip in draft.usable_clips().order_by("position"):
        with clip.audio.open("rb") as handle:
            wav, _ = slicing.load_speech(handle.read())
        utterances.append(Utterance(name=f"clip-{clip.position}", wav32k=wav, text=clip.transcript,
                                    language=draft.language))
    return utterances


def _dataset(job: TrainingJob, draft: VoiceDraft, workdir: Path, base: Any, device: str) -> list[Any]:
    """The prepared dataset: read back when an earlier attempt made it, otherwise built (and kept)."""
    # torch, the models and the frontend load on first use, in workers: the web process never needs them
    from synthesis.frontend.features import BertFeatures, HubertFeatures, text_bert
    from synthesis.frontend.pipeline import process
    from synthesis.gptsovits import finetune
    from synthesis.gptsovits.checkpoint import load_strict
    from synthesis.gptsovits.sovits import SoVITSConfig, SynthesizerTrn

    path = workdir / "dataset.pt"
    if path.is_file():
        return finetune.load_dataset(path)
    TrainingJob.objects.filter(pk=job.pk).update(stage=TrainingJob.Stage.PREPARE, heartbeat_at=timezone.now())
    folder = basemodels.base_dir()
    bert = BertFeatures(folder / basemodels.BERT_DIR, device=device)
    hubert = HubertFeatures(folder / basemodels.HUBERT_DIR, device=device)
    quantiser = SynthesizerTrn(SoVITSConfig.from_checkpoint(base.sovits_config, version="v2"))
    load_strict(quantiser, {k: v for k, v in base.sovits_state.items() if not k.startswith("enc_q.")},
                path="base SoVITS")
    quantiser = quantiser.to(device).eval()
    utterances = _clip_utterances(draft)

    def on_item(done: int, total: int) -> None:
        TrainingJob.objects.filter(pk=job.pk).update(
            progress=round(0.05 * done / total, 4), heartbeat_at=timezone.now(),
            message=gettext("preparing clip %(done)s of %(total)s") % {"done": done, "total": total})

    def text_features(text: str, language: str) -> tuple[list[int], Any]:
        result = process(text, language="en" if language.startswith("en") else "zh")
        return result.phone_ids, (text_bert(result.segments, bert) if language == "zh" else None)

    items, dropped = finetune.prepare(utterances, text_features=text_features, hubert=hubert, quantiser=quantiser,
                                      on_item=on_item)
    if not items:
        raise finetune.DatasetError(gettext("no clip could be prepared: %(problems)s")
                                    % {"problems": "; ".join(f"{n}: {why}" for n, why in dropped)})
    if dropped:
        TrainingJob.objects.filter(pk=job.pk).update(
            message=gettext("left out: %(problems)s") % {"problems": "; ".join(f"{n}: {why}" for n, why in dropped)})
    finetune.save_dataset(items, path)
    return items


def _publish(job: TrainingJob, draft: VoiceDraft, result: Any) -> Voice:
    """Check the exported files with the strict loaders, then create the Voice, its consent and the instant
    twin in one transaction: until this commits no voice exists, so no half-written voice can be used."""
    # torch, the models and the frontend load on first use, in workers: the web process never needs them
    from synthesis.gptsovits.finetune import sha256_file
    from synthesis.gptsovits.loading import load_gpt, load_sovits

    load_sovits(result.sovits_path)  # CheckpointError if the export is not what the official loader reads
    load_gpt(result.gpt_path)
    artefacts = {"sovits": sha256_file(result.sovits_path), "gpt": sha256_file(result.gpt_path)}
    consent = approved_consent(draft)
    if consent is None:
        raise StudioError(gettext("the speaker's approved consent no longer matches the clips"))
    reference = draft.reference_clip
    with transaction.atomic():
        voice = Voice(name=draft.name, language=draft.language, engine=Voice.Engine.GPT_SOVITS,
                      source=Voice.Source.TRAINED, base_version=Voice.BaseVersion.V2,
                      reference_text=reference.transcript)
        with result.sovits_path.open("rb") as sovits, result.gpt_path.open("rb") as gpt, \
                reference.audio.open("rb") as clip:
            voice.sovits_weights.save(f"{artefacts['sovits']}.pth", File(sovits), save=False)
            voice.gpt_weights.save(f"{artefacts['gpt']}.ckpt", File(gpt), save=False)
            voice.reference_audio.save(f"{reference.sha256}.wav", File(clip), save=False)
        save_voice(voice)
        _consent_record(voice, draft, consent)
        instant = None
        if not Voice.objects.filter(name=f"{draft.name} (instant)").exists():
            instant = Voice(name=f"{draft.name} (instant)", language=draft.language, engine=Voice.Engine.GPT_SOVITS,
                            source=Voice.Source.INSTANT, base_version=Voice.BaseVersion.V2,
                            reference_text=reference.transcript)
            with reference.audio.open("rb") as clip:
                instant.reference_audio.save(f"{reference.sha256}.wav", File(clip), save=False)
            save_voice(instant)
            _consent_record(instant, draft, consent)
        VoiceDraft.objects.filter(pk=draft.pk).update(voice=voice, instant_voice=instant,
                                                      stage=VoiceDraft.Stage.DONE)
        finished = TrainingJob.objects.filter(pk=job.pk, state=TrainingJob.State.RUNNING, worker=job.worker).update(
            state=TrainingJob.State.SUCCEEDED, stage=TrainingJob.Stage.DONE, progress=1.0, artefacts=artefacts,
            finished_at=timezone.now(), heartbeat_at=timezone.now(),
            message=gettext("voice %(name)s is ready") % {"name": voice.name},
        )
        if finished != 1:
            raise StudioError(gettext("the job was cancelled or taken over while exporting"))
    shutil.rmtree(work_dir(job), ignore_errors=True)
    return voice


def _consent_record(voice: Voice, draft: VoiceDraft, consent: SpokenConsent) -> None:
    record = SpeakerConsent(voice=voice, speaker_name=draft.speaker_name, signed_on=consent.approved_at.date(),
                            scope=f"{consent.statement} {consent.challenge} (spoken; approved by "
                                  f"{consent.approved_by}; training audio {consent.training_digest[:12]})",
                            recorded_by=consent.recorded_by)
    with consent.audio.open("rb") as audio:
        record.document.save(f"spoken-{consent.audio_sha256}.wav", ContentFile(audio.read()), save=False)
    record.save()
