"""Voice verbs: saving a voice with its files, hearing a preview, and revoking a speaker's consent (which
stops every campaign that speaks with that voice)."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from campaigns import lifecycle
from campaigns.models import Campaign
from synthesis.actions import TransientRenderError, keyer_for, render, voice_problem
from synthesis.engines.recorded import recordings_digest
from synthesis.gptsovits.basemodels import BaseModelError, base_dir, manifest_digest
from synthesis.keys import normalise_text
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url
from voices.models import SpeakerConsent, Voice, VoiceRecording

log = logging.getLogger(__name__)


def revoke_consent(consent: SpeakerConsent) -> list[int]:
    """Revoke one consent record; campaigns whose voice is left without consent are paused. Returns their ids."""
    with transaction.atomic():
        updated = SpeakerConsent.objects.filter(pk=consent.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not updated:
            return []
        voice = Voice.objects.get(pk=consent.voice_id)
        if voice.is_usable():
            return []  # another valid consent still covers this voice
        active = Campaign.objects.filter(
            variants__voice=voice, status__in=[Campaign.Status.RUNNING, Campaign.Status.SCHEDULED]
        ).distinct()
        reason = f"paused automatically: the speaker's consent for voice '{voice.name}' was revoked"
        paused = [campaign.pk for campaign in active if lifecycle.pause(campaign, reason=reason)]
    if paused:
        log.warning("consent for voice %s revoked: paused campaigns %s", voice.pk, paused)
    return paused


# --- voice files and preview -------------------------------------------------------------------------------

_DIGESTED_FILES = ("gpt_weights", "sovits_weights", "reference_audio")


def voice_digest(voice: Voice) -> str:
    """sha256 over the weight files, the reference clip and its transcript: whatever changes the voice's sound.

    Empty for a voice with none of them (the embedded voice), so its render keys stay what they were.
    """
    if voice.is_recorded:
        return recordings_digest(list(voice.recordings.values_list("text", "sha256")))
    files = [getattr(voice, name) for name in _DIGESTED_FILES]
    if not any(files) and not voice.reference_text:
        return ""
    digest = hashlib.sha256(b"herald.voice-digest.v1\x00")
    if voice.is_instant:  # its weights are the base pair's: their manifest entries stand for them
        base = base_dir()
        try:
            base_part = manifest_digest(base, voice.base_version) if base else "unconfigured"
        except BaseModelError:
            base_part = "unreadable"
        digest.update(f"instant:{voice.base_version}:{base_part}\x00".encode())
        files = [None, None, files[2]]
    for name, stored in zip(_DIGESTED_FILES, files, strict=True):
        part = hashlib.sha256()
        if stored:
            with stored.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    part.update(chunk)
        digest.update(f"{name}:{part.hexdigest() if stored else '-'}\x00".encode())
    digest.update(b"reference_text:" + voice.reference_text.encode("utf-8"))
    return digest.hexdigest()


def save_voice(voice: Voice) -> str:
    """Save a (validated) voice with its uploaded files and record their digest, so every render key that
    depends on them changes when any of them does. Returns the digest."""
    with transaction.atomic():
        voice.save()  # stores the uploads first: the digest is taken over what is on disk
        voice.weights_digest = voice_digest(voice)
        Voice.objects.filter(pk=voice.pk).update(weights_digest=voice.weights_digest)
    return voice.weights_digest


def store_recordings(voice: Voice) -> str:
    """After a recorded voice's recordings were saved: each one's sha256 and length, from what is on disk, and
    the voice's digest over them (every render key of the voice changes with any recording). Returns it."""
    import soundfile as sf

    for recording in voice.recordings.all():
        with recording.audio.open("rb") as handle:
            data = handle.read()  # one read for both: uploads are bounded (MAX_REFERENCE_UPLOAD_BYTES)
        duration = sf.info(io.BytesIO(data)).duration
        VoiceRecording.objects.filter(pk=recording.pk).update(
            sha256=hashlib.sha256(data).hexdigest(), duration=round(duration, 2)
        )
    voice.weights_digest = voice_digest(voice)
    Voice.objects.filter(pk=voice.pk).update(weights_digest=voice.weights_digest)
    return voice.weights_digest


PREVIEW_TEXT = {
    Voice.Language.MANDARIN: "您好，您的包裹将于明天上午九点到十二点之间送达，请保持电话畅通。",
    Voice.Language.ENGLISH: "Hello, your parcel will be delivered tomorrow between nine and twelve in the morning.",
}


@dataclass(frozen=True)
class Preview:
    """A rendered sample: `url` (signed, expiring) when it worked, otherwise `problem` says why not."""

    text: str
    render_key: str = ""
    url: str = ""
    problem: str = ""


def preview_voice(voice: Voice, text: str) -> Preview:
    """Render `text` with the voice through the real engine, into the shared audio cache, now (not queued)."""
    text = normalise_text(text or "")
    if not text:
        return Preview(text, problem=gettext("Type a sentence to hear."))
    problem = voice_problem(voice)
    if problem:
        return Preview(text, problem=gettext("This voice cannot be previewed: %(problem)s.") % {"problem": problem})
    keyer = keyer_for(voice)
    key = keyer.key(text)
    RenderedAudio.objects.get_or_create(
        render_key=key,
        defaults=dict(
            engine=voice.engine, engine_version=keyer.engine_version, voice=voice, text=text,
            parameters=dict(voice.parameters or {}),
        ),
    )
    # Somebody asked to hear it again: a previous failure may have been fixed (a parameter, the engine).
    RenderedAudio.objects.filter(render_key=key, state=RenderedAudio.State.FAILED).update(
        state=RenderedAudio.State.PENDING, attempts=0, error=""
    )
    try:
        render([key])
    except TransientRenderError as exc:
        busy = gettext("The engine is busy or could not start (%(error)s); try again in a minute.") % {"error": exc}
        return Preview(text, key, problem=busy)
    row = RenderedAudio.objects.get(render_key=key)
    if row.state == RenderedAudio.State.READY:
        return Preview(text, key, url=signed_audio_url(key))
    if row.state == RenderedAudio.State.FAILED:
        return Preview(text, key, problem=gettext("The sample could not be rendered: %(error)s") % {"error": row.error})
    return Preview(
        text, key, problem=gettext("A synthesis worker is rendering this sample right now; reload in a moment.")
    )
