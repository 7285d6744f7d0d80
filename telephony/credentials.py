"""Telephony secrets: taken from the environment by name, or stored Fernet-encrypted; never logged."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from telephony.models import TelephonyAccount


class CredentialsError(Exception):
    pass


def _fernet() -> Fernet:
    material = settings.CREDENTIALS_KEY or f"herald.credentials:{settings.SECRET_KEY}"
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(stored: str, *, what: str) -> str:
    """A secret `encrypt` stored; CredentialsError naming `what` when it cannot be read back."""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise CredentialsError(f"{what}: the stored secret cannot be decrypted (HERALD_CREDENTIALS_KEY changed?)") from None


def auth_token(account: TelephonyAccount) -> str:
    """The account's auth token; CredentialsError (naming where it was looked for) when absent."""
    if account.auth_token_env:
        token = os.environ.get(account.auth_token_env, "")
        if not token and os.environ.get(f"{account.auth_token_env}_FILE"):
            try:
                with open(os.environ[f"{account.auth_token_env}_FILE"], encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise CredentialsError(
                    f"account {account.name}: cannot read the token file: {exc.strerror}"
                ) from exc
        if not token:
            raise CredentialsError(
                f"account {account.name}: environment variable {account.auth_token_env} is not set"
            )
        return token
    if account.auth_token_encrypted:
        try:
            return _fernet().decrypt(account.auth_token_encrypted.encode()).decode()
        except InvalidToken:
            raise CredentialsError(
                f"account {account.name}: the stored token cannot be decrypted (HERALD_CREDENTIALS_KEY changed?)"
            ) from None
    raise CredentialsError(
        f"account {account.name} has no auth token: set one in the admin or name an env variable"
    )
