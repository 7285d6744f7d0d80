"""API token verbs: create (the token is shown once), check a request's Authorization header, revoke.

Only the SHA-256 digest of a token is stored. A token is 32 random bytes, so a plain hash is enough: there is
nothing to guess that a slow hash would protect, and the lookup stays one indexed query per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from campaigns.models import ApiToken

TOKEN_PREFIX = "hrld_"
PREFIX_LENGTH = 12  # what ApiToken.prefix keeps: "hrld_" and 7 random characters, to tell tokens apart
# token_urlsafe(32) is always 43 characters of the URL-safe alphabet.
TOKEN_PATTERN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")
# last_used_at is for people deciding which tokens to revoke: to the minute is enough, and it spares a write
# on every request of a BI tool that pages through the API.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRefused(Exception):
    """Why a request's credentials were refused, in words safe to send back (never the token itself)."""


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


@sensitive_variables("plain")
def create_token(
    *, name: str, user: AbstractBaseUser, scopes: Iterable[str] = (ApiToken.Scope.READ,)
) -> tuple[ApiToken, str]:
    """Create a token for `user` with `scopes` (read, write); return the row and the plain token, which is not
    kept anywhere."""
    chosen = set(scopes)
    unknown = chosen - set(ApiToken.Scope.values)
    if unknown or not chosen:
        raise ValueError(f"scopes must be some of {', '.join(ApiToken.Scope.values)}, not {sorted(unknown)}")
    ordered = " ".join(s for s in ApiToken.Scope.values if s in chosen)
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name, user=user, prefix=plain[:PREFIX_LENGTH], digest=_digest(plain), scopes=ordered
    )
    return token, plain


@sensitive_variables("header_value", "plain")
def check(header_value: str) -> ApiToken:
    """The live token an `Authorization: Bearer <token>` header carries; TokenRefused says what is wrong."""
    if not header_value.strip():
        raise TokenRefused("Missing Authorization header: send 'Authorization: Bearer <token>'.")
    scheme, _, plain = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenRefused("Malformed Authorization header: use the Bearer scheme, 'Bearer <token>'.")
    plain = plain.strip()
    if not TOKEN_PATTERN.fullmatch(plain):
        raise TokenRefused("Malformed Authorization header: a Herald token is 'hrld_' and 43 characters.")
    digest = _digest(plain)
    token = ApiToken.objects.select_related("user").filter(digest=digest).first()
    if token is None:
        raise TokenRefused("Unknown token.")
    if token.revoked_at is not None:
        raise TokenRefused("This token has been revoked.")
    if not token.user.is_active:
        raise TokenRefused("This token's user is inactive.")
    _touch(token)
    return token


def _touch(token: ApiToken) -> None:
    """Record the use, at most once a minute: concurrent requests race on a conditional UPDATE, one writes."""
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return
    fresh = Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
    if ApiToken.objects.filter(fresh, pk=token.pk).update(last_used_at=now):
        token.last_used_at = now


def revoke(token: ApiToken) -> bool:
    """Revoke the token from now on; False when it was already revoked."""
    now = timezone.now()
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
    if revoked:
        token.revoked_at = now
    return revoked
