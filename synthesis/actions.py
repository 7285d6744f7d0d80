"""Render pipeline: claim a pending render key, synthesise, post-process for the phone, cache, and report the
result to the campaign lifecycle (audio_ready / audio_failed).

Every function here is safe to run twice and concurrently: work is claimed with a conditional UPDATE, files
are written atomically under their content address, and a cache hit does no work.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from campaigns import lifecycle
from campaigns.models import Call, Campaign
from synthesis.audio import AudioError, to_telephony, write_mulaw_wav, write_wav
from synthesis.engines import engine_problem, engine_version, get_engine
from synthesis.engines.base import EngineError, VoiceSpec, failure_reason
from synthesis.engines.recorded import recordings_digest
from synthesis.gptsovits.basemodels import MANIFEST, VERSIONS, BaseModelError, base_dir, base_pair, problems
from synthesis.keys import RenderKeyer
from synthesis.models import RenderedAudio
from voices.models import Voice

log = logging.getLogger(__name__)

MAX_RENDER_ATTEMPTS = 5


class TransientRenderError(Exception):
    """The engine could not run now (out of memory, device busy); the keys were released for a retry."""


@dataclass
class RenderSummary:
    rendered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already ready, or claimed by another worker


def voice_spec(voice: Voice) -> VoiceSpec:
    """What an engine needs to know about a voice, with file paths resolved.

    An instant voice speaks with the verified base pair of its version (EngineError naming every missing or
    altered base file otherwise)."""
    if voice.is_recorded:
        fill = voice.fill_voice
        return VoiceSpec(
            voice_id=voice.pk,
            language=voice.language,
            parameters=dict(voice.parameters or {}),
            recordings=tuple((r.text, r.audio.path) for r in voice.recordings.all()),
            fill=voice_spec(fill) if fill is not None else None,
            fill_engine=fill.engine if fill is not None else "",
        )
    weights = {}
    if voice.is_instant:
        weights = _base_weights(voice.base_version)
    else:
        if voice.gpt_weights:
            weights["gpt"] = voice.gpt_weights.path
        if voice.sovits_weights:
            weights["sovits"] = voice.sovits_weights.path
    return VoiceSpec(
        voice_id=voice.pk,
        language=voice.language,
        parameters=dict(voice.parameters or {}),
        weights=weights,
        reference_audio=voice.reference_audio.path if voice.reference_audio else None,
        reference_text=voice.reference_text,
    )


def _base_weights(version: str) -> dict[str, str]:
    try:
        pair = base_pair(base_dir(), version)
    except BaseModelError as exc:
        raise EngineError(str(exc), permanent=True) from exc
    return {"gpt": str(pair.gpt), "sovits": str(pair.sovits)}


def check_base_models() -> dict[str, list[str]]:
    """Hash every base model against the manifest (HERALD_GPTSOVITS_BASE_DIR) and log, per version, that it is
    ready or each file that is missing or altered. Returns {version: problems}; {} when no base is set."""
    base = base_dir()
    if base is None:
        return {}
    found = {version: problems(base, version) for version in VERSIONS}
    for version, listed in found.items():
        if listed:
            log.warning("instant %s voices cannot render: %s", version, "; ".join(listed))
        else:
            log.info("instant %s voices ready: base models in %s match %s", version, base, MANIFEST)
    return found


def voice_problem(voice: Voice) -> str | None:
    """Why this voice cannot render campaign texts in this installation (its engine, or its fill voice's), or
    None when it can."""
    problem = engine_problem(voice.engine)
    if problem is None and voice.is_recorded:
        if voice.fill_voice is not None:
            problem = engine_problem(voice.fill_voice.engine)
        elif not voice.recordings.exists():
            problem = gettext("the recorded voice “%(voice)s” has no recordings and no fill voice") % {"voice": voice.name}
    return problem


def instant_voice_problem(voice: Voice) -> str | None:
    """Why an instant voice's base models cannot serve it (listed against the manifest, not hashed)."""
    if not voice.is_instant:
        return None
    base = base_dir()
    found = problems(base, voice.base_version, verify=False)
    if not found:
        return None
    values = {"version": voice.base_version, "dir": base, "problems": "; ".join(found)}
    if base:
        return gettext("its %(version)s base models in %(dir)s are incomplete: %(problems)s") % values
    return gettext("its %(version)s base models are incomplete: %(problems)s") % values


def keyer_for(voice: Voice) -> RenderKeyer:
    """The render-key hasher for one voice; computing it loads no model.

    A recorded voice's key covers its recordings as they are now and its fill voice's own key parts, so a new
    recording, or a retrained fill voice, makes new audio."""
    parameters = dict(voice.parameters or {})
    digest = voice.weights_digest
    if voice.is_recorded:
        digest = recordings_digest(list(voice.recordings.values_list("text", "sha256")))
        fill = voice.fill_voice
        if fill is not None:
            parameters["fill"] = [fill.pk, fill.engine, engine_version(fill.engine), fill.weights_digest, fill.parameters]
    return RenderKeyer(
        engine=voice.engine,
        engine_version=engine_version(voice.engine),
        voice_id=voice.pk,
        voice_digest=digest,
        parameters=parameters,
    )


def audio_paths(render_key: str) -> tuple[str, str]:
    """Relative paths (under MEDIA_ROOT) of the telephony file and the engine-rate original."""
    folder = f"audio/{render_key[:2]}/{render_key[2:4]}"
    return f"{folder}/{render_key}.wav", f"{folder}/{render_key}.orig.wav"


def _claim(render_keys: list[str], claim_token: str) -> dict[str, object]:
    """Claim pending keys, keys whose renderer died long ago, and keys this same task claimed before it was
    redelivered (its worker died mid-render); returns key → claim time."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RENDER_STALE_SECONDS)
    claimable = Q(state=RenderedAudio.State.PENDING) | Q(state=RenderedAudio.State.RENDERING, claimed_at__lt=stale)
    if claim_token:
        claimable |= Q(state=RenderedAudio.State.RENDERING, claimed_by=claim_token)
    claimed: dict[str, object] = {}
    for key in dict.fromkeys(render_keys):
        updated = (
            RenderedAudio.objects.filter(render_key=key)
            .filter(claimable)
            .update(
                state=RenderedAudio.State.RENDERING,
                claimed_at=now,
                claimed_by=claim_token,
                attempts=F("attempts") + 1,
            )
        )
        if updated == 1:
            claimed[key] = now
    return claimed


def _fail(row: RenderedAudio, message: str) -> None:
    with transaction.atomic():
        RenderedAudio.objects.filter(pk=row.pk, state=RenderedAudio.State.RENDERING).update(
            state=RenderedAudio.State.FAILED, error=message[:2000], claimed_at=None
        )
        lifecycle.audio_failed(row.render_key, f"audio could not be rendered: {message}")
    log.error("render %s failed: %s", row.render_key[:12], message)


def _release(keys: list[str]) -> None:
    RenderedAudio.objects.filter(render_key__in=keys, state=RenderedAudio.State.RENDERING).update(
        state=RenderedAudio.State.PENDING, claimed_at=None
    )


def provenance(row: RenderedAudio) -> dict[str, str]:
    """What the file says about itself: made by which engine, in whose voice, for which campaign.

    The campaign is the first one whose calls asked for this audio; later campaigns with the same text and
    voice reuse the file as it is.
    """
    voice = row.voice
    campaign = Campaign.objects.filter(
        pk__in=Call.objects.filter(audio_id=row.render_key).values("campaign_id")[:1]
    ).first() or Campaign.objects.filter(fallback_audio_id=row.render_key).first()
    parts = [
        f"engine={row.engine} {row.engine_version}".strip(),
        f"voice={voice.name} (#{voice.pk})" if voice is not None else "voice=-",
        f"campaign={campaign.name} (#{campaign.pk})" if campaign is not None else "campaign=-",
        f"render_key={row.render_key}",
    ]
    if voice is not None and voice.is_recorded:
        fill = voice.fill_voice
        synthetic = "recorded speech" if fill is None else (
            f"recorded speech with synthetic parts{' (cloned voice)' if fill.needs_consent else ''} by {fill.name}"
        )
    else:
        synthetic = "synthetic speech (cloned voice)" if voice is not None and voice.needs_consent else "synthetic speech"
    return {"ISFT": f"Herald {row.engine} {row.engine_version}".strip(), "ICMT": "; ".join(parts), "IGNR": synthetic}


def _store(row: RenderedAudio, claimed_at: object, wave) -> None:  # wave: synthesis.audio.Waveform
    telephony = to_telephony(wave)
    tel_rel, orig_rel = audio_paths(row.render_key)
    media = Path(settings.MEDIA_ROOT)
    (media / tel_rel).parent.mkdir(parents=True, exist_ok=True)
    info = provenance(row)
    write_wav(media / orig_rel, wave, info=info)
    write_mulaw_wav(media / tel_rel, telephony, info=info)
    data = (media / tel_rel).read_bytes()
    stored = RenderedAudio.objects.filter(
        pk=row.pk, state=RenderedAudio.State.RENDERING, claimed_at=claimed_at
    ).update(
        state=RenderedAudio.State.READY,
        telephony_file=tel_rel,
        original_file=orig_rel,
        sample_rate=telephony.sample_rate,
        original_sample_rate=wave.sample_rate,
        duration=round(telephony.duration, 3),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        error="",
        rendered_at=timezone.now(),
    )
    # Its calls are woken only once the READY row is committed (this statement is its own transaction in a
    # worker): a call whose last two clips finish in two workers at once is then seen ready by the later wake-up
    # at least. Checked inside the transaction, each would miss the other's uncommitted clip and the call would
    # wait forever. A worker that dies between the two: its batch, sent again, wakes them (_wake_if_ready), and
    # housekeeping (lifecycle.ready_if_rendered) would in any case.
    if stored:
        lifecycle.audio_ready(row.render_key)


def render(render_keys: list[str], *, claim_token: str = "") -> RenderSummary:
    """Render every claimable key, one engine batch per voice. `claim_token` (the task id) lets a redelivered
    task take over the claims its dead predecessor held, instead of waiting for them to go stale.

    Any exception while preparing or rendering one text fails only that text's render (and so only its
    calls, through lifecycle.audio_failed) with the exception's type and message; the rest of the batch
    renders. Only a transient EngineError releases the batch for a retry (TransientRenderError)."""
    summary = RenderSummary()
    claimed = _claim(render_keys, claim_token)
    summary.skipped = [k for k in dict.fromkeys(render_keys) if k not in claimed]
    _wake_if_ready(summary.skipped)
    if not claimed:
        return summary
    rows = list(RenderedAudio.objects.filter(render_key__in=list(claimed)).select_related("voice"))
    by_voice: dict[int | None, list[RenderedAudio]] = defaultdict(list)
    for row in rows:
        by_voice[row.voice_id].append(row)
    for group in by_voice.values():
        voice = group[0].voice
        if voice is None:
            for row in group:
                _fail(row, "the voice was deleted")
                summary.failed.append(row.render_key)
            continue
        if group[0].attempts > MAX_RENDER_ATTEMPTS:
            for row in group:
                _fail(row, f"gave up after {MAX_RENDER_ATTEMPTS} attempts")
                summary.failed.append(row.render_key)
            continue
        try:
            engine = get_engine(voice.engine)
            spec = voice_spec(voice)
            engine.describe_parameters(spec)  # the voice's own problems fail its texts at once, not one by one
            results = engine.synthesize_each(spec, [row.text for row in group])
        except EngineError as exc:
            if not exc.permanent:
                _release([row.render_key for row in group])
                raise TransientRenderError(str(exc)) from exc
            results = [exc] * len(group)
        except Exception as exc:  # a bug about the voice itself: every text of it fails with the reason
            log.exception("voice %s cannot render", voice.pk)
            results = [exc] * len(group)
        for row, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                _fail(row, failure_reason(result))
                summary.failed.append(row.render_key)
                continue
            try:
                _store(row, claimed[row.render_key], result)
            except Exception as exc:  # a wave the phone cannot take (AudioError) or a bug storing it: this text only
                if not isinstance(exc, AudioError):
                    log.exception("storing render %s failed", row.render_key[:12])
                _fail(row, failure_reason(exc))
                summary.failed.append(row.render_key)
            else:
                summary.rendered.append(row.render_key)
    return summary


def _wake_if_ready(keys: list[str]) -> None:
    """Keys a batch finds made already: their waiting calls are woken. Usually there are none waiting; but a
    worker killed between storing a clip and waking its calls leaves them, and its batch is sent again (worker
    recovery, or the broker's redelivery) to land here."""
    if keys:
        for key in RenderedAudio.objects.filter(render_key__in=keys, state=RenderedAudio.State.READY).values_list(
            "render_key", flat=True
        ):
            lifecycle.audio_ready(key)


def release_renders(task_ids: list[str]) -> list[str]:
    """Renders claimed by these tasks (of a worker that died) go back to pending; returns their keys, to be
    queued again. Keys a later task has claimed since, or that were finished, are not touched."""
    claimed = RenderedAudio.objects.filter(state=RenderedAudio.State.RENDERING, claimed_by__in=task_ids)
    keys = list(claimed.values_list("render_key", flat=True))
    claimed.filter(render_key__in=keys).update(state=RenderedAudio.State.PENDING, claimed_at=None)
    return keys


def stale_renders() -> list[tuple[str, int | None]]:
    """(render key, voice) of renders whose worker died mid-render, to queue again."""
    stale = timezone.now() - timedelta(seconds=settings.RENDER_STALE_SECONDS)
    return list(
        RenderedAudio.objects.filter(state=RenderedAudio.State.RENDERING, claimed_at__lt=stale).values_list(
            "render_key", "voice_id"
        )
    )
