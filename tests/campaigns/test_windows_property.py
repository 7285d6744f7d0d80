"""Calling windows, tested as properties over many zones, DST changes and random rules (seeded `random`).

The oracle below restates the rule independently of campaigns.windows: an instant is open when its local
date (zoneinfo's wall clock) is a calling day and not a holiday, and its local time lies in that day's hours,
in the cap and in 08:00–21:00. `next_open` is checked against it exactly: the instant it returns is open, and
no instant before it is. "No instant before it" is proved, not sampled: `is_open` is a step function of the
instant that can only switch on where the wall clock reaches a day's opening time or where the zone's offset
changes, so the test finds every such point in [now, next_open) and checks each one is closed.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from campaigns import windows
from campaigns.demo import zone_where_hour_is
from campaigns.dialer import sweep
from campaigns.launch import LaunchError, check_launchable, launch_campaign
from campaigns.models import Call, Campaign
from campaigns.windows import CallingWindow, calling_window, known_zones

# Half-hour and 45-minute offsets, southern-hemisphere DST, 30-minute DST (Lord Howe), negative DST (Dublin,
# Casablanca), changes at midnight (Havana, Santiago), zones that changed their offsets (Asuncion, Nuuk,
# Cairo, Almaty, Pyongyang, Caracas, Apia, which skipped 30 December 2011), +14 and -11.
ZONES = [
    "America/New_York", "America/Los_Angeles", "America/St_Johns", "America/Havana", "America/Santiago",
    "America/Asuncion", "America/Nuuk", "America/Caracas", "America/Sao_Paulo", "America/Mexico_City",
    "Europe/London", "Europe/Berlin", "Europe/Dublin", "Europe/Moscow", "Africa/Cairo", "Africa/Casablanca",
    "Asia/Tehran", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Almaty", "Asia/Pyongyang",
    "Asia/Gaza", "Australia/Sydney", "Australia/Adelaide", "Australia/Lord_Howe", "Australia/Eucla",
    "Pacific/Chatham", "Pacific/Auckland", "Pacific/Apia", "Pacific/Kiritimati", "Pacific/Pago_Pago",
    "Antarctica/Troll", "Etc/GMT-14", "Etc/GMT+12", "UTC",
]
YEARS = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
# Offset changes outside 2025–2027 worth their own cases: (zone, year).
HISTORIC = [
    ("Pacific/Apia", 2011), ("Europe/Moscow", 2014), ("Asia/Pyongyang", 2015), ("Asia/Pyongyang", 2018),
    ("America/Caracas", 2016), ("Africa/Cairo", 2023), ("America/Nuuk", 2023), ("Asia/Almaty", 2024),
    ("America/Asuncion", 2024),
]
ABSOLUTE = (time(8), time(21))


# --- the oracle and its helpers (independent of campaigns.windows) ---------------------------------


def _offset(tz: ZoneInfo, seconds: int) -> timedelta | None:
    return datetime.fromtimestamp(seconds, tz).utcoffset()


def transitions(tz_name: str, start: datetime, end: datetime, step: int = 3600) -> list[datetime]:
    """Every instant in [start, end] at which the zone's UTC offset changes (hourly scan, then bisection)."""
    tz = ZoneInfo(tz_name)
    found = []
    a = int(start.timestamp())
    stop = int(end.timestamp()) + 1
    while a < stop:
        b = min(a + step, stop)
        if _offset(tz, a) != _offset(tz, b):
            lo, hi = a, b
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(tz, mid) == _offset(tz, a):
                    lo = mid
                else:
                    hi = mid
            found.append(datetime.fromtimestamp(hi, UTC))
        a = b
    return found


@cache
def transitions_2025_2027(tz_name: str) -> tuple[datetime, ...]:
    return tuple(transitions(tz_name, *YEARS, step=3 * 3600))


@cache
def transitions_in_year(tz_name: str, year: int) -> tuple[datetime, ...]:
    return tuple(transitions(tz_name, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)))


@dataclass
class Rules:
    start: time
    end: time
    weekdays: set[int]
    weekday_hours: dict[int, tuple[time, time]] = field(default_factory=dict)
    holidays: set[date] = field(default_factory=set)
    cap: tuple[time, time] = ABSOLUTE

    def window(self) -> CallingWindow:
        """Built the way a campaign builds it: from the raw JSON-ish values."""
        built = CallingWindow.from_rules(
            _clock_text(self.start),
            _clock_text(self.end),
            "".join(str(d) for d in sorted(self.weekdays)),
            {str(d): [_clock_text(s), _clock_text(e)] for d, (s, e) in self.weekday_hours.items()},
            [d.isoformat() for d in sorted(self.holidays)],
        )
        return dataclasses.replace(built, cap=self.cap)

    def start_on(self, day: date, absolute: tuple[time, time]) -> time | None:
        """The effective opening time on a local date (None: closed that day)."""
        if day.weekday() not in self.weekdays or day in self.holidays:
            return None
        start, end = self.weekday_hours.get(day.weekday(), (self.start, self.end))
        start, end = max(start, self.cap[0], absolute[0]), min(end, self.cap[1], absolute[1])
        return start if start < end else None


def _clock_text(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def oracle(rules: Rules, tz_name: str, instant: datetime, absolute: tuple[time, time] = ABSOLUTE) -> bool:
    local = instant.astimezone(ZoneInfo(tz_name))
    day, clock = local.date(), local.time()
    if day.weekday() not in rules.weekdays or day in rules.holidays:
        return False
    start, end = rules.weekday_hours.get(day.weekday(), (rules.start, rules.end))
    return start <= clock < end and rules.cap[0] <= clock < rules.cap[1] and absolute[0] <= clock < absolute[1]


def rising_edges(rules: Rules, tz_name: str, a: datetime, b: datetime, absolute: tuple[time, time]) -> list[datetime]:
    """Every instant in [a, b) where is_open could switch on: a itself, offset changes, and the instants
    whose wall time is a day's opening time (each of them, when a fall-back repeats it)."""
    tz = ZoneInfo(tz_name)
    edges = [a, *transitions(tz_name, a - timedelta(hours=1), b)]
    day = a.astimezone(tz).date() - timedelta(days=2)
    last = b.astimezone(tz).date() + timedelta(days=2)
    while day <= last:
        start = rules.start_on(day, absolute)
        if start is not None:
            wall = datetime.combine(day, start)
            for fold in (0, 1):
                instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
                if instant.astimezone(tz).replace(tzinfo=None) == wall:  # a real instant, not a skipped time
                    edges.append(instant)
        day += timedelta(days=1)
    return sorted(e for e in edges if a <= e < b)


# --- random cases ---------------------------------------------------------------------------------


def random_clock(rng: random.Random, near: list[time]) -> time:
    pick = rng.random()
    if pick < 0.25:
        return rng.choice([time(0), time(7, 59), time(8), time(9), time(12), time(20), time(20, 59, 59), time(21),
                           time(23, 59)])
    if pick < 0.45 and near:
        base = rng.choice(near)
        minutes = base.hour * 60 + base.minute + rng.choice([-60, -30, -1, 0, 1, 15, 30, 45, 60])
        return time((minutes // 60) % 24, minutes % 60)
    if pick < 0.55:
        return time(rng.randrange(24), rng.randrange(60), rng.randrange(60))
    return time(rng.randrange(24), rng.choice([0, 15, 30, 45, rng.randrange(60)]))


def random_span(rng: random.Random, near: list[time]) -> tuple[time, time]:
    while True:
        a, b = sorted((random_clock(rng, near), random_clock(rng, near)))
        if a < b:
            return a, b


def random_rules(rng: random.Random, around: date, near: list[time], *, narrow_cap: bool = True) -> Rules:
    start, end = random_span(rng, near)
    weekdays = set(rng.sample(range(7), rng.randint(1, 7)))
    hours = {d: random_span(rng, near) for d in rng.sample(sorted(weekdays), rng.randint(0, len(weekdays)))}
    holidays = {around + timedelta(days=rng.randint(-3, 12)) for _ in range(rng.randint(0, 6))}
    cap = ABSOLUTE
    if narrow_cap and rng.random() < 0.2:
        cap = random_span(rng, [time(9), time(20)])
    return Rules(start, end, weekdays, hours, holidays, cap)


def random_instant(rng: random.Random, tz_name: str) -> datetime:
    pool = list(transitions_2025_2027(tz_name))
    pick = rng.random()
    if pool and pick < 0.6:
        anchor = rng.choice(pool)
        delta = rng.choice([
            timedelta(0), timedelta(microseconds=-1), timedelta(seconds=1), timedelta(seconds=-1),
            timedelta(minutes=rng.uniform(-90, 90)), timedelta(hours=rng.uniform(-36, 36)),
        ])
        return anchor + delta
    if pick < 0.7:
        zone_name, year = rng.choice(HISTORIC)
        found = transitions_in_year(zone_name, year)
        if found:
            return rng.choice(found) + timedelta(hours=rng.uniform(-30, 30))
    span = (YEARS[1] - YEARS[0]).total_seconds()
    return YEARS[0] + timedelta(seconds=rng.uniform(0, span))


def wall_times_near(tz_name: str, instant: datetime) -> list[time]:
    """Local wall times at the zone's offset changes near `instant`: windows starting there hit the gaps
    and repeats (only reachable with the cap lifted; the real cap keeps windows in daytime)."""
    tz = ZoneInfo(tz_name)
    found = transitions(tz_name, instant - timedelta(days=2), instant + timedelta(days=2), step=3 * 3600)
    return [t.astimezone(tz).time().replace(tzinfo=None, microsecond=0) for t in found]


def check_case(
    rng: random.Random, rules: Rules, tz_name: str, now: datetime, absolute: tuple[time, time], note: str
) -> None:
    window = rules.window()
    # is_open equals the oracle at now and at a spread of instants after it.
    for instant in [now, *(now + timedelta(hours=rng.uniform(0, 72)) for _ in range(8))]:
        expected = oracle(rules, tz_name, instant, absolute)
        assert window.is_open(tz_name, instant) == expected, f"{note}: is_open at {instant}"
        if expected:
            local = instant.astimezone(ZoneInfo(tz_name)).time()
            assert absolute[0] <= local < absolute[1], f"{note}: open at {local} outside the hard cap"
    opens = window.next_open(tz_name, now)
    if opens is None:
        # A window with any hours inside the cap opens within a few weeks whatever the (few) holidays.
        assert not window.ever_opens(), f"{note}: next_open is None for a window that opens"
        return
    assert opens >= now, f"{note}: next_open {opens} is before now {now}"
    assert window.is_open(tz_name, opens) and oracle(rules, tz_name, opens, absolute), f"{note}: {opens} shut"
    for edge in rising_edges(rules, tz_name, now, opens, absolute):
        assert not oracle(rules, tz_name, edge, absolute), f"{note}: {edge} is open, before next_open {opens}"
        assert not window.is_open(tz_name, edge), f"{note}: is_open({edge}) before next_open {opens}"
    if opens > now:
        assert not window.is_open(tz_name, opens - timedelta(microseconds=1)), f"{note}: open just before"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_is_open_and_next_open_agree_with_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    zones = ZONES + rng.sample(sorted(known_zones()), 40)
    for case in range(800):
        tz_name = rng.choice(zones)
        now = random_instant(rng, tz_name)
        rules = random_rules(rng, now.astimezone(ZoneInfo(tz_name)).date(), [])
        check_case(rng, rules, tz_name, now, ABSOLUTE, f"seed {seed} case {case} {tz_name} {now} {rules}")


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_next_open_handles_skipped_and_repeated_local_times(seed: int, monkeypatch, settings) -> None:
    """With the cap lifted, windows start and end inside the hours DST skips or repeats."""
    monkeypatch.setattr(windows, "HARD_EARLIEST", time(0))
    monkeypatch.setattr(windows, "HARD_LATEST", time.max)
    settings.HARD_EARLIEST, settings.HARD_LATEST = time(0), time.max
    lifted = (time(0), time.max)
    rng = random.Random(seed)
    dst_zones = [z for z in ZONES if transitions_2025_2027(z)]
    for case in range(800):
        tz_name = rng.choice(dst_zones)
        now = rng.choice(transitions_2025_2027(tz_name)) + timedelta(hours=rng.uniform(-30, 6))
        rules = random_rules(rng, now.date(), wall_times_near(tz_name, now), narrow_cap=False)
        rules.cap = lifted
        check_case(rng, rules, tz_name, now, lifted, f"seed {seed} case {case} {tz_name} {now} {rules}")


# --- worked examples ------------------------------------------------------------------------------


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_window_opens_at_nine_local_on_dst_change_days() -> None:
    window = CallingWindow(time(9), time(20))
    # New York springs forward on 2026-03-08: 09:00 EDT is 13:00 UTC (14:00 UTC the day before).
    assert window.next_open("America/New_York", _utc(2026, 3, 8, 5)) == _utc(2026, 3, 8, 13)
    assert window.next_open("America/New_York", _utc(2026, 3, 7, 5)) == _utc(2026, 3, 7, 14)
    # Sydney falls back on 2026-04-05: 09:00 AEST is 23:00 UTC the day before (22:00 during AEDT).
    assert window.next_open("Australia/Sydney", _utc(2026, 4, 4, 12)) == _utc(2026, 4, 4, 23)
    assert window.next_open("Australia/Sydney", _utc(2026, 4, 3, 12)) == _utc(2026, 4, 3, 22)
    # Lord Howe moves by 30 minutes; Chatham is +13:45 in its summer.
    assert window.next_open("Australia/Lord_Howe", _utc(2026, 4, 4, 12)) == _utc(2026, 4, 4, 22, 30)
    assert window.next_open("Pacific/Chatham", _utc(2026, 1, 9, 12)) == _utc(2026, 1, 9, 19, 15)
    assert window.next_open("Asia/Kathmandu", _utc(2026, 1, 10, 0)) == _utc(2026, 1, 10, 3, 15)


def test_next_open_in_a_skipped_hour_is_the_jump_and_a_repeated_hour_opens_twice(monkeypatch, settings) -> None:
    monkeypatch.setattr(windows, "HARD_EARLIEST", time(0))
    settings.HARD_EARLIEST = time(0)
    ny = "America/New_York"
    gap = CallingWindow(time(2, 30), time(4))
    # 02:30 does not exist on 2026-03-08: the window opens when the clocks jump to 03:00 EDT (07:00 UTC).
    assert gap.next_open(ny, _utc(2026, 3, 8, 6)) == _utc(2026, 3, 8, 7)
    assert not gap.is_open(ny, _utc(2026, 3, 8, 6, 59, 59))
    repeated = CallingWindow(time(1), time(1, 30))
    # 01:00–01:30 happens twice on 2026-11-01: in EDT (05:00 UTC) and again in EST (06:00 UTC).
    assert repeated.next_open(ny, _utc(2026, 11, 1, 4)) == _utc(2026, 11, 1, 5)
    assert repeated.next_open(ny, _utc(2026, 11, 1, 5, 45)) == _utc(2026, 11, 1, 6)
    assert repeated.is_open(ny, _utc(2026, 11, 1, 6, 10))


def test_a_skipped_calendar_day_is_skipped() -> None:
    # Samoa skipped Friday 30 December 2011. A Friday-only window opens the next Friday, 6 January 2012.
    window = CallingWindow(time(9), time(17), frozenset({4}))
    opens = window.next_open("Pacific/Apia", _utc(2011, 12, 29, 12))
    assert opens == datetime(2012, 1, 6, 9, tzinfo=ZoneInfo("Pacific/Apia"))


def test_holidays_and_weekday_hours_are_callee_local() -> None:
    window = CallingWindow.from_rules("09:00", "20:00", "0123456", {"5": ["10:00", "18:00"]}, ["2026-10-01"])
    # 2026-09-30 23:30 UTC is 07:30 on 1 October in Shanghai (a holiday), 19:30 on 30 September in New York.
    instant = _utc(2026, 9, 30, 23, 30)
    assert window.is_holiday("Asia/Shanghai", instant) and not window.is_holiday("America/New_York", instant)
    assert window.is_open("America/New_York", instant)
    assert window.next_open("Asia/Shanghai", instant) == datetime(2026, 10, 2, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    # Saturday 2026-10-03 has its own hours: 10:00–18:00.
    saturday = datetime(2026, 10, 3, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert not window.is_open("Asia/Shanghai", saturday)
    assert window.next_open("Asia/Shanghai", saturday) == saturday.replace(hour=10, minute=0)


def test_unknown_zones_and_the_server_zone_are_never_open() -> None:
    window = CallingWindow(time(0), time(23, 59))
    noon = _utc(2026, 6, 1, 12)
    for name in ("Not/AZone", "localtime", "", "Factory"):
        assert not window.is_open(name, noon) and window.next_open(name, noon) is None
    with pytest.raises(ValueError, match="aware"):
        window.is_open("UTC", datetime(2026, 6, 1, 12))


def test_the_hard_cap_narrows_from_settings_and_never_widens(settings) -> None:
    window = CallingWindow(time(0), time(23, 59))
    assert window.cap == (time(8), time(21))
    settings.HARD_EARLIEST, settings.HARD_LATEST = time(9, 30), time(20)
    narrowed = calling_window(Campaign(window_start=time(0), window_end=time(23, 59), weekdays="0123456"))
    assert narrowed.cap == (time(9, 30), time(20))
    assert narrowed.next_open("UTC", _utc(2026, 6, 1, 6)) == _utc(2026, 6, 1, 9, 30)
    # A setting that slipped past validation still cannot open earlier than 08:00 or later than 21:00.
    settings.HARD_EARLIEST, settings.HARD_LATEST = time(6), time(23)
    assert CallingWindow(time(0), time(23, 59), cap=(time(0), time(23, 59))).cap == (time(8), time(21))
    assert calling_window(Campaign(window_start=time(0), window_end=time(23, 59))).cap == (time(8), time(21))


@pytest.mark.parametrize(
    ("value", "message"),
    [("07:30", "outside 08:00–21:00"), ("21:30", "outside 08:00–21:00"), ("nine", "not a time"),
     ("25:00", "not a time")],
)
def test_settings_reject_a_wider_or_unreadable_cap(value: str, message: str, monkeypatch) -> None:
    from herald import settings as herald_settings

    monkeypatch.setenv("HERALD_HARD_EARLIEST", value)
    with pytest.raises(ImproperlyConfigured, match=message):
        herald_settings._hard_cap_time("HERALD_HARD_EARLIEST", "08:00")
    monkeypatch.setenv("HERALD_HARD_EARLIEST", "09:15")
    assert herald_settings._hard_cap_time("HERALD_HARD_EARLIEST", "08:00") == time(9, 15)


# --- launch checks and the real sweep -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weekday_hours": {"5": ["10:00", "25:00"]}}, "weekday_hours['5']: '25:00' is not a time"),
        ({"weekday_hours": {"8": ["10:00", "18:00"]}}, "weekday_hours['8']: the day must be 0 (Monday) to 6"),
        ({"weekday_hours": {"5": ["18:00", "10:00"]}}, "weekday_hours['5']: 18:00 is not before 10:00"),
        ({"weekday_hours": {"5": "10-18"}}, "weekday_hours['5']: give a start and an end"),
        ({"weekday_hours": ["10:00"]}, "weekday_hours must be an object"),
        ({"weekday_hours": {"6": ["10:00", "18:00"]}, "weekdays": "012345"}, "Sunday, which is not a calling day"),
        ({"weekday_hours": {"5": ["21:00", "23:00"]}}, "weekday_hours['5']: 21:00–23:00 has no time inside"),
        ({"holidays": ["2026-10-01", "2026-13-01"]}, "holidays[1]: '2026-13-01' is not a date (use YYYY-MM-DD"),
        ({"holidays": "2026-10-01"}, "holidays must be a list"),
        ({"window_start": time(21, 30), "window_end": time(23)}, "the calling window 21:30–23:00 has no time"),
        ({"weekdays": "7"}, "weekdays must be digits 0 (Monday) to 6"),
    ],
)
def test_launch_names_the_bad_calling_rule(make_campaign, changes: dict, message: str) -> None:
    campaign = make_campaign(2)
    for name, value in changes.items():
        setattr(campaign, name, value)
    with pytest.raises(LaunchError) as caught:
        check_launchable(campaign)
    assert message in str(caught.value)


@pytest.mark.django_db
def test_launch_accepts_valid_weekday_hours_and_holidays(make_campaign) -> None:
    campaign = make_campaign(2, weekday_hours={"5": ["10:00", "18:00"]}, holidays=["2026-10-01"])
    check_launchable(campaign)


@pytest.mark.django_db
def test_the_sweep_never_claims_a_callee_outside_the_window(make_campaign, settings) -> None:
    """A real sweep over ready calls in many zones, at instants around DST changes: every claimed callee is
    inside the window at that instant, and every callee inside it is claimed."""
    settings.SWEEP_INTERVAL = 10.0  # a budget larger than the calls, so only the window decides
    rng = random.Random(7)
    zones = ZONES + ["Invalid/Zone"]
    campaign = make_campaign(len(zones) * 3, max_concurrent_calls=1000, calls_per_second=1000)
    launch_campaign(campaign)
    calls = list(campaign.calls.order_by("pk").values_list("pk", flat=True))
    for i, pk in enumerate(calls):
        Call.objects.filter(pk=pk).update(timezone=zones[i % len(zones)])
    account = campaign.telephony_account
    account.calls_per_second, account.max_concurrent_calls = 1000, 1000
    account.save()
    dst = ["America/New_York", "Europe/London", "Australia/Sydney", "America/Santiago", "Pacific/Chatham"]
    instants = [rng.choice(transitions_2025_2027(rng.choice(dst))) + timedelta(hours=rng.uniform(-14, 14))
                for _ in range(25)]
    instants += [_utc(2026, 3, 8, 13), _utc(2026, 10, 1, 1), _utc(2026, 11, 1, 13, 59, 59)]
    claimed_any = 0
    for n, now in enumerate(instants):
        rules = random_rules(rng, now.date(), [], narrow_cap=False)
        Campaign.objects.filter(pk=campaign.pk).update(
            window_start=rules.start, window_end=rules.end, weekdays="".join(map(str, sorted(rules.weekdays))),
            weekday_hours={str(d): [s.strftime("%H:%M:%S"), e.strftime("%H:%M:%S")]
                           for d, (s, e) in rules.weekday_hours.items()},
            holidays=[d.isoformat() for d in rules.holidays], status=Campaign.Status.RUNNING,
        )
        campaign.calls.update(state=Call.State.READY, next_attempt_at=now - timedelta(minutes=1), claimed_at=None)
        claimed = set(sweep(now=now).enqueued)
        claimed_any += len(claimed)
        for pk, tz_name in campaign.calls.values_list("pk", "timezone"):
            should = tz_name != "Invalid/Zone" and oracle(rules, tz_name, now)
            assert (pk in claimed) == should, f"instant {n} {now}: call {pk} in {tz_name}, rules {rules}"
    assert claimed_any > 0  # the instants are not all closed everywhere


@pytest.mark.django_db
def test_place_call_rechecks_the_window(make_campaign) -> None:
    """A call claimed while open but placed after its callee's window shut goes back to ready, undialled."""
    from telephony import actions as telephony_actions

    campaign = make_campaign(1)
    launch_campaign(campaign)
    call = campaign.calls.get()
    night = zone_where_hour_is(timezone.now(), 3)
    Call.objects.filter(pk=call.pk).update(state=Call.State.DIALING, timezone=night)
    assert telephony_actions.place_call(call.pk) == "window closed"
    call.refresh_from_db()
    assert call.state == Call.State.READY and call.attempts.count() == 0
