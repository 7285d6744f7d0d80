"""Signed audio URLs: any malformed sig or expiry is a bare 403 (the reason only in the log), never a 500."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from django.urls import reverse

from synthesis.signing import check_signature, signed_audio_url

KEY = "ab" * 32


@pytest.mark.parametrize(
    ("expires", "sig"),
    [
        ("9999999999", "é" * 32),
        ("9999999999", "ü" * 31 + "a"),
        ("９９９９９９９９９９", "0" * 32),  # fullwidth digits: int() reads them, we do not
        ("1" * 400, "0" * 32),
        ("9999999999", "0" * 5000),
        ("", ""),
        ("-1", "0" * 32),
    ],
)
def test_malformed_sig_or_expiry_is_a_bare_403(client, expires, sig, caplog):
    path = reverse("synthesis:audio", args=[KEY]) + f"?expires={quote(expires)}&sig={quote(sig)}"
    with caplog.at_level(logging.WARNING, logger="synthesis.views"):
        response = client.get(path)

    assert response.status_code == 403
    assert response.content == b""
    assert "refused" in caplog.text


def test_check_signature_never_raises_on_malformed_input():
    assert check_signature(KEY, "9999999999", "é" * 32) == "malformed signature"
    assert check_signature(KEY, "²", "0" * 32) == "missing or malformed expiry"


def test_a_valid_url_still_checks(settings):
    url = signed_audio_url(KEY, ttl=60)
    expires, sig = (part.split("=", 1)[1] for part in url.split("?", 1)[1].split("&"))
    assert check_signature(KEY, expires, sig) is None
    assert check_signature(KEY, expires, sig[:-1] + ("0" if sig[-1] != "0" else "1")) == "bad signature"
