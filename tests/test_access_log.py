"""gunicorn's access log goes through the phone masker: no full number, no live sig= of a signed URL."""

from __future__ import annotations

import datetime
import io
import logging
from pathlib import Path
from types import SimpleNamespace

import yaml
from gunicorn.app.base import Application

from herald.logmask import MaskPhoneNumbers, mask_line

ROOT = Path(__file__).resolve().parents[1]
SIG = "0123456789abcdef0123456789abcdef"
AUDIO = f"/synthesis/audio/{'ab' * 32}.wav?expires=1893456000&sig={SIG}"


class _ConfigOnly(Application):
    """gunicorn's own loader for a -c argument, without starting anything."""

    def __init__(self, config: str) -> None:
        self.config_arg = config
        super().__init__()

    def init(self, parser, opts, args):
        return {}

    def load_config(self) -> None:
        self.load_default_config()
        self.load_config_from_module_name_or_filename(self.config_arg)

    def load(self):  # pragma: no cover - never served
        raise NotImplementedError


def access_line(logger, raw_uri: str, referer: str = "-") -> str:
    """What the logger writes for one request to raw_uri."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger.access_log.addHandler(handler)
    try:
        environ = {"REQUEST_METHOD": "GET", "RAW_URI": raw_uri, "SERVER_PROTOCOL": "HTTP/1.1",
                   "REMOTE_ADDR": "10.0.0.1", "HTTP_REFERER": referer}  # fmt: skip
        response = SimpleNamespace(status="200 OK", sent=123, headers=[])
        logger.access(response, SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=5))
    finally:
        logger.access_log.removeHandler(handler)
    return out.getvalue()


def test_mask_line_strips_signatures_and_masks_numbers():
    line = f'"GET {AUDIO} HTTP/1.1" "/admin/campaigns/call/?q=%2B8613800138000&sig=abc&x=1"'
    masked = mask_line(line)
    assert SIG not in masked and "sig=abc" not in masked and "sig=…" in masked
    assert "8613800138000" not in masked and "%2B86138****8000" in masked
    assert masked.endswith("&x=1\"")  # only the signature's value goes


def test_gunicorn_config_logs_access_lines_masked():
    app = _ConfigOnly("python:herald.gunicorn_conf")
    logger = app.cfg.logger_class(app.cfg)

    line = access_line(logger, AUDIO, referer="https://herald.example/x?phone=13800138000")

    assert "GET /synthesis/audio/" in line and "200" in line
    assert SIG not in line
    assert "13800138000" not in line and "138****8000" in line
    assert any(isinstance(f, MaskPhoneNumbers) for f in logger.error_log.filters)


def test_web_commands_use_the_masking_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["web"]["command"]
    assert command[:3] == ["gunicorn", "-c", "python:herald.gunicorn_conf"]
    (cmd,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD")]
    assert '"gunicorn", "-c", "python:herald.gunicorn_conf"' in cmd
