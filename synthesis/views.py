"""Serves telephony audio to carriers through signed, expiring URLs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotFound
from django.views.decorators.http import require_safe

from synthesis.models import RenderedAudio
from synthesis.signing import check_signature

log = logging.getLogger(__name__)
_KEY = re.compile(r"^[0-9a-f]{64}$")


@require_safe
def audio(request: HttpRequest, render_key: str) -> HttpResponse:
    if not _KEY.match(render_key):
        return HttpResponseNotFound()
    problem = check_signature(render_key, request.GET.get("expires", ""), request.GET.get("sig", ""))
    if problem:
        log.warning("audio %s refused: %s", render_key[:12], problem)
        return HttpResponseForbidden()  # why stays in the log: a client probing signatures learns nothing
    row = RenderedAudio.objects.filter(render_key=render_key, state=RenderedAudio.State.READY).first()
    if row is None or not row.telephony_file:
        return HttpResponseNotFound()
    path = Path(settings.MEDIA_ROOT) / row.telephony_file
    if not path.is_file():
        log.error("audio %s is marked ready but %s is missing", render_key[:12], path)
        return HttpResponseNotFound()
    response = FileResponse(path.open("rb"), content_type="audio/wav")
    response["Cache-Control"] = "private, max-age=300"
    return response
