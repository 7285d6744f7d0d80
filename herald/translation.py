"""gettext for the pure modules (campaigns.callflow, campaigns.stats): the reader's language where Django's
settings are configured (pages, the admin), the English as written elsewhere (the bench, a script without
Django). The extractor finds the calls by the name `gettext`, so modules import it under that name."""

from __future__ import annotations


def gettext(message: str) -> str:
    """`message` in the active language where Django's settings are configured; else as written."""
    try:
        from django.core.exceptions import ImproperlyConfigured
        from django.utils.translation import gettext as translate
    except ImportError:
        return message
    try:
        return translate(message)
    except ImproperlyConfigured:
        return message
