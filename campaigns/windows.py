"""Calling windows in the callee's local time, with a hard 08:00–21:00 cap no setting can widen.

A window is a campaign's hours (window_start–window_end, or other hours on some weekdays), its weekdays and
its holidays, all read on the callee's wall clock. An instant is open when its local date is a calling day
that is not a holiday and its local time lies in [start, end) of that day's hours, narrowed to the hard cap.
The cap is 08:00–21:00; settings (HARD_EARLIEST / HARD_LATEST) can only narrow it, and this module clamps
them again, so neither a campaign nor a setting can ever open a minute outside 08:00–21:00.

`is_open` is the rule the dialer applies; `next_open` says when it next holds. Because the rule is stated
on the wall clock, a DST change needs no special case in `is_open`: a local time skipped by a spring-forward
is never seen, and one repeated by a fall-back is open both times. `next_open` walks the UTC timeline in
pieces of constant UTC offset, so the instant it returns is the first one `is_open` accepts, also when the
window's start falls in a skipped hour (it opens at the moment the clocks jump past it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from django.utils.dates import WEEKDAYS as DAY_NAMES
from django.utils.dates import WEEKDAYS_ABBR as SHORT_DAY_NAMES
from django.utils.translation import gettext, ngettext

log = logging.getLogger(__name__)

HARD_EARLIEST = time(8, 0)
HARD_LATEST = time(21, 0)
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# How far next_open looks ahead. Long enough for any sane holiday list; a window that stays shut longer
# is reported as never opening.
SEARCH_DAYS = 400
# Offsets are assumed constant within one probe step: no zone changes its offset twice within 6 hours.
_PROBE = 6 * 3600


class WindowError(ValueError):
    """The campaign's calling rules cannot be read; the message says which value and why."""


def hard_cap() -> tuple[time, time]:
    """The hard limits in force: settings may narrow 08:00–21:00, never widen it."""
    earliest = getattr(settings, "HARD_EARLIEST", HARD_EARLIEST)
    latest = getattr(settings, "HARD_LATEST", HARD_LATEST)
    return max(earliest, HARD_EARLIEST), min(latest, HARD_LATEST)


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """IANA zone names a callee can be in. Not 'localtime': that is the server's zone, never the callee's."""
    return frozenset(available_timezones() - {"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone of that name, or None when there is none (such callees are never open)."""
    if name not in known_zones():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_clock(value: Any, where: str) -> time:
    """'09:30' → time(9, 30); anything else is a WindowError naming `where`."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        parts = value.strip().split(":")
        widths_ok = len(parts) in (2, 3) and 1 <= len(parts[0]) <= 2 and all(len(p) == 2 for p in parts[1:])
        if widths_ok and all(p.isascii() and p.isdigit() for p in parts):
            try:
                return time(*(int(p) for p in parts))
            except ValueError:
                pass
    raise WindowError(f"{where}: {value!r} is not a time (use HH:MM, e.g. 09:30)")


def parse_weekday_hours(value: Any) -> dict[int, tuple[time, time]]:
    """{"5": ["10:00", "18:00"]} → {5: (10:00, 18:00)}, or a WindowError saying what is wrong."""
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise WindowError('weekday_hours must be an object like {"5": ["10:00", "18:00"]}')
    hours: dict[int, tuple[time, time]] = {}
    for key, span in value.items():
        day = str(key).strip()
        if len(day) != 1 or day not in "0123456":
            raise WindowError(f"weekday_hours[{key!r}]: the day must be 0 (Monday) to 6 (Sunday)")
        if not isinstance(span, list | tuple) or len(span) != 2:
            raise WindowError(f"weekday_hours[{key!r}]: give a start and an end, e.g. [\"10:00\", \"18:00\"]")
        start = parse_clock(span[0], f"weekday_hours[{key!r}]")
        end = parse_clock(span[1], f"weekday_hours[{key!r}]")
        if start >= end:
            raise WindowError(f"weekday_hours[{key!r}]: {start:%H:%M} is not before {end:%H:%M}")
        hours[int(day)] = (start, end)
    return hours


def parse_holidays(value: Any) -> frozenset[date]:
    """["2026-10-01", …] → dates, or a WindowError naming the entry that is not a YYYY-MM-DD date."""
    if value in (None, ""):
        return frozenset()
    if not isinstance(value, list | tuple):
        raise WindowError('holidays must be a list of dates like ["2026-10-01", "2026-10-02"]')
    days = set()
    for i, item in enumerate(value):
        if isinstance(item, date) and not isinstance(item, datetime):
            days.add(item)
            continue
        try:
            if not isinstance(item, str) or len(item.strip()) != 10:
                raise ValueError
            days.add(date.fromisoformat(item.strip()))
        except ValueError:
            raise WindowError(f"holidays[{i}]: {item!r} is not a date (use YYYY-MM-DD, e.g. 2026-10-01)") from None
    return frozenset(days)


def parse_weekdays(value: str) -> frozenset[int]:
    if not value or set(value) - set("0123456"):
        raise WindowError("weekdays must be digits 0 (Monday) to 6 (Sunday), e.g. 01234")
    return frozenset(int(d) for d in value)


@dataclass(frozen=True)
class CallingWindow:
    """When callees may be called, on their own wall clock; see the module docstring for the rule."""

    start: time
    end: time
    weekdays: frozenset[int] = frozenset(range(7))
    weekday_hours: Mapping[int, tuple[time, time]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    cap: tuple[time, time] = field(default_factory=hard_cap)
    problem: str = ""  # set when the campaign's rules could not be read: such a window is never open

    def __post_init__(self) -> None:
        # Whatever cap is passed in, it is narrowed to the hard limits here, where every window is made.
        earliest, latest = self.cap
        object.__setattr__(self, "cap", (max(earliest, HARD_EARLIEST), min(latest, HARD_LATEST)))

    @classmethod
    def for_campaign(cls, campaign: Any) -> CallingWindow:
        """The campaign's window; rules that cannot be read give a window that never opens (and say why)."""
        try:
            return cls.from_campaign_rules(campaign)
        except WindowError as exc:
            log.warning("campaign %s: calling rules unreadable, no calls until fixed: %s", campaign.pk, exc)
            return cls(time(0), time(0), frozenset(), problem=str(exc))

    @classmethod
    def from_campaign_rules(cls, campaign: Any) -> CallingWindow:
        """The campaign's window; WindowError when one of its values cannot be read."""
        return cls.from_rules(
            campaign.window_start, campaign.window_end, campaign.weekdays, campaign.weekday_hours, campaign.holidays
        )

    @classmethod
    def from_rules(
        cls, start: Any, end: Any, weekdays: str, weekday_hours: Any = None, holidays: Any = None
    ) -> CallingWindow:
        """Build from the campaign's raw values; WindowError when one of them cannot be read."""
        return cls(
            parse_clock(start, "window_start"),
            parse_clock(end, "window_end"),
            parse_weekdays(weekdays),
            parse_weekday_hours(weekday_hours),
            parse_holidays(holidays),
        )

    # -- the rule --

    def hours_on(self, day: date) -> tuple[time, time] | None:
        """Callee-local hours [start, end) on that local date, capped; None when there are none."""
        if self.problem or day.weekday() not in self.weekdays or day in self.holidays:
            return None
        return self.hours_for_weekday(day.weekday())

    def is_open(self, tz_name: str, now: datetime) -> bool:
        """May a callee in `tz_name` be called at `now` (aware)? Unknown time zones are never open."""
        tz = zone(tz_name)
        if tz is None:
            return False
        local = _aware(now).astimezone(tz)
        hours = self.hours_on(local.date())
        return hours is not None and hours[0] <= local.time() < hours[1]

    def open_zones(self, now: datetime) -> list[str]:
        """Every known zone whose callees may be called at `now` (a few hundred names at most)."""
        if not self.ever_opens():
            return []
        return sorted(name for name in known_zones() if self.is_open(name, now))

    def is_holiday(self, tz_name: str, now: datetime) -> bool:
        """Is the callee's local date at `now` one of the campaign's holidays?"""
        tz = zone(tz_name)
        return tz is not None and _aware(now).astimezone(tz).date() in self.holidays

    def ever_opens(self) -> bool:
        """Does any weekday have hours left inside the cap (holidays aside)?"""
        return not self.problem and any(self.hours_for_weekday(d) is not None for d in self.weekdays)

    def hours_for_weekday(self, weekday: int) -> tuple[time, time] | None:
        """Capped hours of that weekday (holidays and calling days aside); None when none are left."""
        start, end = self.weekday_hours.get(weekday, (self.start, self.end))
        start, end = max(start, self.cap[0]), min(end, self.cap[1])
        return (start, end) if start < end else None

    def next_open(self, tz_name: str, now: datetime) -> datetime | None:
        """The first instant at or after `now` when `is_open` holds, or None if not within SEARCH_DAYS (or
        never: an unknown zone, no hours inside the cap).

        In UTC: arithmetic on a datetime in the callee's zone is wall-clock arithmetic, wrong across a DST
        change; use .astimezone(zone) only to show it."""
        tz = zone(tz_name)
        if tz is None or not self.ever_opens():
            return None
        t = _aware(now).astimezone(UTC)
        limit = t + timedelta(days=SEARCH_DAYS)
        while t < limit:
            offset = t.astimezone(tz).utcoffset() or timedelta(0)
            end = min(_utc(math.floor(t.timestamp()) + _PROBE), limit)
            if end.astimezone(tz).utcoffset() != offset:
                end = _transition(tz, t, end, offset)
            hit = self._first_open_between(t, end, offset)
            if hit is not None:
                return hit
            t = end
        return None

    def _first_open_between(self, a: datetime, b: datetime, offset: timedelta) -> datetime | None:
        """First open instant in [a, b) (UTC), given the zone's offset is `offset` throughout."""
        wall_a = (a + offset).replace(tzinfo=None)
        wall_b = (b + offset).replace(tzinfo=None)
        day = wall_a.date()
        while day <= wall_b.date():
            hours = self.hours_on(day)
            if hours is not None:
                lo = max(wall_a, datetime.combine(day, hours[0]))
                hi = min(wall_b, datetime.combine(day, hours[1]))
                if lo < hi:
                    return (lo - offset).replace(tzinfo=UTC)
            day += timedelta(days=1)
        return None

    def describe(self) -> str:
        """The rules in words, for pages and messages."""
        if self.problem:
            return gettext("calling rules cannot be read: %(why)s") % {"why": self.problem}
        days = gettext(", ").join(str(SHORT_DAY_NAMES[d]) for d in sorted(self.weekdays))
        text = gettext("%(start)s–%(end)s on %(days)s") % {"start": f"{self.start:%H:%M}", "end": f"{self.end:%H:%M}", "days": days}
        for d, (s, e) in sorted(self.weekday_hours.items()):
            text += f"; {DAY_NAMES[d]} {s:%H:%M}–{e:%H:%M}"
        if self.holidays:
            text += "; " + ngettext("%(n)d holiday", "%(n)d holidays", len(self.holidays)) % {"n": len(self.holidays)}
        cap = {"start": f"{self.cap[0]:%H:%M}", "end": f"{self.cap[1]:%H:%M}"}
        return text + " " + gettext("(callee-local, never outside %(start)s–%(end)s)") % cap


def calling_window(campaign: Any) -> CallingWindow:
    """The campaign's calling window (never raises: unreadable rules give a window that stays shut)."""
    return CallingWindow.for_campaign(campaign)


def check_rules(campaign: Any) -> None:
    """Raise WindowError with the first reason the campaign's calling rules cannot work."""
    window = CallingWindow.from_campaign_rules(campaign)
    earliest, latest = window.cap
    for day in sorted(window.weekday_hours):
        if day not in window.weekdays:
            raise WindowError(
                f"weekday_hours['{day}'] gives hours for {WEEKDAY_NAMES[day]}, which is not a calling day "
                f"(weekdays {campaign.weekdays}); add {day} to weekdays or remove these hours"
            )
    for day in sorted(window.weekdays):
        if window.hours_for_weekday(day) is not None:
            continue
        if day in window.weekday_hours:
            start, end = window.weekday_hours[day]
            where = f"weekday_hours['{day}']: {start:%H:%M}–{end:%H:%M}"
        else:
            where = f"the calling window {window.start:%H:%M}–{window.end:%H:%M}"
        raise WindowError(
            f"{where} has no time inside the permitted {earliest:%H:%M}–{latest:%H:%M} local hours"
        )


def is_open(tz_name: str, now: datetime, start: time, end: time, weekdays: str) -> bool:
    """Window hours and weekdays only (no per-weekday hours, no holidays): kept for simple callers."""
    try:
        window = CallingWindow(start, end, parse_weekdays(weekdays))
    except WindowError:
        return False
    return window.is_open(tz_name, now)


def _aware(now: datetime) -> datetime:
    # A naive time would be read in the server's zone: the very mistake that calls people at 3 am.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("calling windows need an aware datetime (e.g. django.utils.timezone.now())")
    return now


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _transition(tz: ZoneInfo, a: datetime, b: datetime, offset: timedelta) -> datetime:
    """The first whole second in (a, b] at which the zone's offset stops being `offset`.

    Zone transitions fall on whole seconds (TZif stores them so), so bisecting seconds finds one exactly.
    """
    lo, hi = math.floor(a.timestamp()), math.ceil(b.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _utc(mid).astimezone(tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return _utc(hi)
