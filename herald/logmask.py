"""Phone numbers never reach the logs in full: +8613800138000 is logged as +86138****8000."""

from __future__ import annotations

import logging
import re

_PHONE = re.compile(r"(?<![\w])(\+?\d[\d\- ]{6,}\d)(?![\w])")


def mask_phone(value: str) -> str:
    """Keep the country/carrier prefix and the last four digits."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return value
    plus = "+" if value.startswith("+") else ""
    return f"{plus}{digits[:5]}{'*' * (len(digits) - 9)}{digits[-4:]}" if len(digits) > 9 else f"{plus}{'*' * (len(digits) - 4)}{digits[-4:]}"


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), text)


class MaskPhoneNumbers(logging.Filter):
    """Rewrites the formatted message so no handler sees a full number."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
