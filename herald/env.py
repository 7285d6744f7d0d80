"""Typed environment helpers that fail loudly: every knob Herald reads comes through here."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """A string setting; `NAME_FILE` (a path) is read instead when set, for secrets."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc.strerror}") from exc
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"environment variable {name} is required")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_port_range(name: str) -> tuple[int, int] | None:
    """A port range `FIRST-LAST` (both 1024-65535, at least one even/odd pair wide), or None when unset/blank."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    first, sep, last = raw.partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit()):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a port range like 10000-20000")
    low, high = int(first), int(last)
    if not 1024 <= low < high <= 65535:
        raise ImproperlyConfigured(f"{name}={raw!r}: ports must run upwards within 1024-65535, at least two ports")
    return low, high


def env_ip(name: str) -> str:
    """An IP address setting ('' when unset)."""
    raw = os.environ.get(name, "").strip()
    if raw:
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={raw!r} is not an IP address") from None
    return raw
