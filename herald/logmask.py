"""Phone numbers never reach the logs in full: +8613800138000 is logged as +86138****8000; nor do live
signatures of signed URLs (sig=…). gunicorn's access log goes through the same masking (gunicorn.conf.py)."""

from __future__ import annotations

import logging
import re

# ASCII boundaries, not \w: Chinese text often runs straight into a number (电话13800138000), while
# letters or digits on either side mean an identifier (CA0123…) that is not a phone number.
# A leading %2B is a URL-encoded "+". ISO dates (2010-04-01, Twilio's API version) are not numbers.
_PHONE = re.compile(r"(?<![0-9A-Za-z])(\+|%2[Bb])?(?!\d{4}-\d\d-\d\d(?!\d))(\d[\d\- ]{6,}\d)(?![0-9A-Za-z])")


def mask_phone(value: str) -> str:
    """Keep the last four digits and at most five leading ones, always hiding at least four in between."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return value
    plus = "+" if value.startswith("+") else ""
    keep = max(0, min(5, len(digits) - 8))
    return f"{plus}{digits[:keep]}{'*' * (len(digits) - keep - 4)}{digits[-4:]}"


# A signed URL's signature in a query string (?sig=… or &sig=…): whoever reads the log could replay the URL.
_SIGNATURE = re.compile(r"(?<=[?&;]sig=)[^&\s\"']+", re.IGNORECASE)


def mask_text(text: str) -> str:
    """The text with every phone number masked."""
    return _PHONE.sub(lambda m: (m.group(1) or "") + mask_phone(m.group(2)), text)


def mask_line(text: str) -> str:
    """A log line with phone numbers masked and the values of sig= query parameters removed."""
    return mask_text(_SIGNATURE.sub("…", text))


class MaskPhoneNumbers(logging.Filter):
    """Rewrites the formatted message, traceback and stack so no handler sees a full number."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_line(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: exception messages often quote the number dialled.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def gunicorn_logger_class() -> type:
    """gunicorn's Logger with MaskPhoneNumbers on its access and error logs (gunicorn.conf.py names it)."""
    from gunicorn.glogging import Logger  # gunicorn is a production dependency only: imported when it runs

    class MaskedGunicornLogger(Logger):
        """Access lines carry request paths: admin searches by number, signed audio URLs with their sig."""

        def setup(self, cfg: object) -> None:
            super().setup(cfg)
            for logger in (self.access_log, self.error_log):
                if not any(isinstance(f, MaskPhoneNumbers) for f in logger.filters):
                    logger.addFilter(MaskPhoneNumbers())

    return MaskedGunicornLogger
