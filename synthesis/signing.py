"""Signed, expiring audio URLs: a carrier may fetch a clip for a few hours, nobody may enumerate them."""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from django.urls import reverse


def _signature(render_key: str, expires: int) -> str:
    secret = hashlib.sha256(b"herald.audio-url:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(secret, f"{render_key}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_audio_url(render_key: str, *, ttl: int | None = None, now: float | None = None) -> str:
    """Absolute URL a provider can fetch until it expires (HERALD_AUDIO_URL_TTL seconds by default)."""
    expires = int((now if now is not None else time.time()) + (ttl if ttl is not None else settings.AUDIO_URL_TTL))
    path = reverse("synthesis:audio", args=[render_key])
    return f"{settings.PUBLIC_URL}{path}?expires={expires}&sig={_signature(render_key, expires)}"


def check_signature(render_key: str, expires: str, sig: str, *, now: float | None = None) -> str | None:
    """None when valid, otherwise why not (for the log; the client only sees a bare 403).

    Any malformed input (non-ASCII, over-long, not a number) is a bad signature, never an exception; the
    comparison is constant-time over bytes."""
    expires = expires or ""
    sig = sig or ""
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return "missing or malformed expiry"
    if not (sig.isascii() and len(sig) == 32):
        return "malformed signature"
    expires_at = int(expires)
    if not hmac.compare_digest(_signature(render_key, expires_at).encode("ascii"), sig.encode("ascii")):
        return "bad signature"
    if expires_at < (now if now is not None else time.time()):
        return "expired"
    return None
