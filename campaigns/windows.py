"""Calling windows in the callee's local time, with a hard 08:00–21:00 cap no setting can widen."""

from __future__ import annotations

from datetime import datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HARD_EARLIEST = time(8, 0)
HARD_LATEST = time(21, 0)


def effective_window(start: time, end: time) -> tuple[time, time]:
    """The campaign's window narrowed to the hard cap."""
    return max(start, HARD_EARLIEST), min(end, HARD_LATEST)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def is_open(tz_name: str, now: datetime, start: time, end: time, weekdays: str) -> bool:
    """May this callee be called at `now` (aware)? Unknown time zones are never open."""
    tz = zone(tz_name)
    if tz is None:
        return False
    earliest, latest = effective_window(start, end)
    local = now.astimezone(tz)
    return str(local.weekday()) in weekdays and earliest <= local.time().replace(tzinfo=None) < latest
