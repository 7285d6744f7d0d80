"""Phone numbers never reach the logs in full."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest
from django.conf import settings

from herald.logmask import MaskPhoneNumbers, mask_phone, mask_text


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613800138000", "+86138****8000"),  # Chinese mobile, E.164
        ("13800138000", "138****8000"),  # the same number written locally
        ("+14155550123", "+141****0123"),
        ("4155550123", "41****0123"),
        ("+862161234567", "+8621****4567"),  # a Shanghai landline
        ("021-6123-4567", "021****4567"),
        ("12345678", "****5678"),
    ],
)
def test_mask_phone_keeps_the_last_four_digits_and_hides_at_least_four(number, masked):
    assert mask_phone(number) == masked
    assert digits(masked).endswith(digits(number)[-4:])
    assert masked.count("*") >= 4


def test_short_numbers_and_codes_are_left_alone():
    assert mask_phone("12345") == "12345"
    assert mask_text("attempt 3 of call 12, code 21211, took 1.5 s") == "attempt 3 of call 12, code 21211, took 1.5 s"


@pytest.mark.parametrize(
    "text",
    [
        "placed call to +8613800138000 as CA1234",
        "call to 13800138000 failed",
        "to=+8613800138000&from=+862161234567",
        "电话13800138000已拨打",  # Chinese text right against the number
        "客户+8613800138000按了9",
        "{'To': '+8613800138000'}",
        "+86 138 0013 8000 (spaced)",
        "+86-138-0013-8000",
        "To=%2B8613800138000&From=%2B862161234567",  # a URL-encoded form body
    ],
)
def test_mask_text_never_leaves_a_full_number(text):
    masked = re.sub(r"[\s\-]", "", mask_text(text))
    assert "13800138000" not in masked
    assert "2161234567" not in masked
    assert "8000" in masked  # the last four digits stay, so staff can still tell calls apart


def test_mask_text_leaves_dates_alone():
    text = "GET /2010-04-01/Accounts/AC1/Calls/CA2.json at 2026-11-24 20:28:00"
    assert mask_text(text) == text
    assert mask_text("due 2026-11-24, call +8613800138000") == "due 2026-11-24, call +86138****8000"


def test_mask_text_leaves_ids_and_hex_alone():
    text = "attempt 42 placed as CA0123456789abcdef0123456789abcdef, audio 3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c"
    assert mask_text(text) == text


def record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("telephony.actions", logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_masks_the_formatted_message():
    rec = record("call %s attempt %s placed as %s to %s", 7, 1, "CA" + "f" * 32, "+8613800138000")

    assert MaskPhoneNumbers().filter(rec) is True
    assert rec.getMessage() == f"call 7 attempt 1 placed as CA{'f' * 32} to +86138****8000"


def test_filter_leaves_messages_without_numbers_untouched():
    rec = record("campaign %s completed", 12)

    assert MaskPhoneNumbers().filter(rec)
    assert (rec.msg, rec.args) == ("campaign %s completed", (12,))


def test_filter_masks_exception_text():
    try:
        raise ValueError("Invalid 'To' Phone Number: +8613800138000")
    except ValueError:
        rec = record("place_call failed", exc_info=sys.exc_info())

    MaskPhoneNumbers().filter(rec)
    formatted = logging.Formatter("%(message)s").format(rec)
    assert "Invalid 'To' Phone Number: +86138****8000" in formatted
    assert "+8613800138000" not in formatted


def test_console_handler_of_settings_logging_has_the_filter():
    console = settings.LOGGING["handlers"]["console"]
    names = console["filters"]
    assert any(settings.LOGGING["filters"][name]["()"] == "herald.logmask.MaskPhoneNumbers" for name in names)
    assert "console" in settings.LOGGING["root"]["handlers"]


def test_configured_root_handler_never_prints_a_full_number():
    """Through the handler Django installed from settings.LOGGING, exceptions included."""
    handlers = [
        h for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and any(isinstance(f, MaskPhoneNumbers) for f in h.filters)
    ]
    assert handlers, "settings.LOGGING's console handler is not installed on the root logger"
    handler = handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        log = logging.getLogger("telephony.actions")
        log.warning("call %s attempt %s to %s failed: %s", 3, 1, "+8613800138000", "busy")
        try:
            raise RuntimeError("Twilio refused the call: Invalid 'To' Phone Number: 13800138000")
        except RuntimeError:
            log.exception("place_call crashed for %s", "+8613800138000")
    finally:
        handler.setStream(previous)

    output = stream.getvalue()
    assert "+86138****8000" in output and "138****8000" in output
    assert "13800138000" not in output
    assert "Traceback" in output
