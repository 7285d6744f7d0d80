"""The carrier announcements SIP calls listen for: clips operators upload in the admin (CarrierAnnouncement) and
the optional directory HERALD_ANNOUNCEMENT_DIR, one library (telephony.sip.announce).

Each upload is checked as the matcher will use it (a mono WAV of 0.8-30 s with enough sound above its pauses),
and must not push the library past what each packet can be compared with. A worker builds the library once and
builds it again only when the enabled clips change (one small query per call tells it); a clip that cannot be
read any more is left out and logged, never the whole library.
"""

from __future__ import annotations

import logging
import os
from functools import partial

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from telephony.models import AnnouncementKeyword, CarrierAnnouncement
from telephony.sip import announce
from telephony.sip import keywords as phrases
from voices import asr

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
_cache: tuple[tuple, tuple] | None = None  # (version, references)


def check_clip(name: str, outcome: str, data: bytes) -> tuple[announce.Reference, float]:
    """The reference a clip makes and its seconds; LibraryError saying what is wrong with it."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise announce.LibraryError(f"{len(data)} bytes; a recording is at most {MAX_UPLOAD_BYTES // 2**20} MB")
    samples, rate = announce.parse_wav(data, name="the recording")
    if rate != announce.RATE:
        import soxr

        samples = soxr.resample(samples, rate, announce.RATE, quality="HQ")
    reference = announce.reference_from_samples(name or "the recording", outcome, np.asarray(samples))
    return reference, reference.seconds


def library_seconds(exclude_pk: int | None = None) -> float:
    """Seconds of every enabled uploaded clip (less one being replaced)."""
    clips = CarrierAnnouncement.objects.filter(enabled=True)
    if exclude_pk is not None:
        clips = clips.exclude(pk=exclude_pk)
    return sum(clips.values_list("seconds", flat=True))


def _version() -> tuple:
    found = CarrierAnnouncement.objects.filter(enabled=True).aggregate(count=Count("pk"), latest=Max("updated_at"))
    return (settings.ANNOUNCEMENT_DIR, found["count"], found["latest"])


def library() -> tuple[announce.Reference, ...]:
    """The references calls listen for; () when there are none (calls then listen for SIT tones only)."""
    global _cache
    version = _version()
    if _cache is not None and _cache[0] == version:
        return _cache[1]
    references: list[announce.Reference] = []
    if settings.ANNOUNCEMENT_DIR:
        try:
            references += announce.load_library_dir(settings.ANNOUNCEMENT_DIR)
        except announce.LibraryError as exc:
            log.error("carrier announcements of %s not listened for: %s", settings.ANNOUNCEMENT_DIR, exc)
    names = {reference.name for reference in references}
    for clip in CarrierAnnouncement.objects.filter(enabled=True).order_by("pk"):
        try:
            with clip.audio.open("rb") as handle:
                reference, _ = check_clip(clip.name, clip.outcome, handle.read())
        except (announce.LibraryError, OSError, ValueError) as exc:
            log.error("carrier announcement %s left out: %s", clip.name, exc)
            continue
        if reference.name in names:
            log.error("carrier announcement %s left out: the directory library has one of that name", clip.name)
            continue
        if sum(r.seconds for r in references) + reference.seconds > announce.MAX_LIBRARY_S:
            log.error("carrier announcement %s left out: the library would last more than %g s", clip.name,
                      announce.MAX_LIBRARY_S)  # fmt: skip
            continue
        names.add(reference.name)
        references.append(reference)
    _cache = (version, tuple(references))
    return _cache[1]


_transcriber: tuple[str, asr.Transcriber | None] | None = None  # (model directory, loaded recogniser)


def transcriber() -> asr.Transcriber | None:
    """The speech recogniser in $HERALD_ASR_MODEL_DIR, loaded once per process; None when none is configured or
    it cannot be loaded (logged once, and calls listen without it)."""
    global _transcriber
    directory = os.environ.get(asr.ENV_VARIABLE, "").strip()
    if _transcriber is None or _transcriber[0] != directory:
        loaded = None
        if directory:
            try:
                loaded = asr.Transcriber.load(directory)
            except asr.ASRUnavailable as exc:
                log.error("carrier announcements are not recognised by their words: %s", exc)
        _transcriber = (directory, loaded)
    return _transcriber[1]


def keywords() -> tuple[tuple[str, str], ...]:
    """The phrases calls listen for: the built-in ones, then the operators' (AnnouncementKeyword)."""
    added = AnnouncementKeyword.objects.filter(enabled=True).values_list("outcome", "phrase")
    return (*phrases.DEFAULT_KEYWORDS, *((outcome, phrase) for outcome, phrase in added))


def listening() -> dict:
    """The CallSpec fields for recognising announcements by their words: none without a recogniser."""
    recogniser = transcriber()
    if recogniser is None:
        return {}
    return {"transcribe": partial(recogniser.transcribe, sr=announce.RATE), "keywords": keywords()}
