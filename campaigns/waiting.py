"""Why each contact of a campaign not yet called is waiting, in words staff understand.

Every such call gets exactly one reason, the first that applies in REASONS order (dialling now beats the
do-not-call list, which beats a closed window, …). The reason is one SQL CASE expression, so counting calls
per reason is one GROUP BY and a page of calls with a given reason is one indexed query: nothing here walks
a campaign's calls in Python. The parts that need the callee's clock (window closed, holiday, waiting for a
slot) are decided per time zone, not per call: the due calls' distinct zones are classified first, and the
CASE asks which list a call's zone is in.

Reads only: this module changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, CharField, Count, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import dateformat, timezone
from django.utils.translation import gettext, gettext_lazy

from campaigns import lifecycle, workers
from campaigns.models import Call, Campaign, DoNotCall, Worker
from campaigns.windows import CallingWindow, calling_window, zone
from herald.logmask import mask_phone

PAGE_SIZE = 100
# Ends reached without a single attempt: these contacts were never called either, and the page says why.
NOT_CALLED_ENDS = (Call.State.DONE, Call.State.FAILED, Call.State.INVALID, Call.State.CANCELLED)


@dataclass(frozen=True)
class Reason:
    code: str
    label: str
    explanation: str
    states: tuple[str, ...]  # the call states it can apply to: lets a page query use the (campaign, state) index


_R = Call.State
REASONS = [
    Reason("stalled_worker", gettext_lazy("worker stalled"), gettext_lazy("the worker that held it stopped answering; it is handed to "
           "another worker shortly"), (_R.DIALING, _R.RENDERING)),
    Reason("dialling", gettext_lazy("dialling now"), gettext_lazy("claimed by the dialer, or on the line"), (_R.DIALING, _R.IN_PROGRESS)),
    Reason("script_error", gettext_lazy("script error"), gettext_lazy("the script could not be filled in for this contact"), (_R.INVALID,)),
    Reason("render_failed", gettext_lazy("render failed"), gettext_lazy("its audio could not be made and there is no generic clip"),
           (_R.FAILED,)),
    Reason("do_not_call", gettext_lazy("on the do-not-call list"), gettext_lazy("will not be called"),
           (_R.DONE, _R.CANCELLED, _R.RENDERING, _R.READY)),
    Reason("no_consent", gettext_lazy("no consent record"), gettext_lazy("the campaign requires one; will not be called"), (_R.DONE,)),
    Reason("rendering", gettext_lazy("rendering"), gettext_lazy("waiting for its audio"), (_R.RENDERING,)),
    Reason("paused", gettext_lazy("campaign paused"), gettext_lazy("nothing is dialled until the campaign is resumed"), (_R.READY,)),
    Reason("not_started", gettext_lazy("campaign not started"), gettext_lazy("dialling starts at the campaign's start time"), (_R.READY,)),
    Reason("campaign_over", gettext_lazy("campaign over"), gettext_lazy("the campaign ended or was cancelled before this call"),
           (_R.CANCELLED, _R.READY)),
    Reason("daily_cap", gettext_lazy("per-number daily cap"), gettext_lazy("this number has had its calls for 24 hours"), (_R.READY,)),
    Reason("retry", gettext_lazy("retry later"), gettext_lazy("an earlier attempt did not get through; the next one is scheduled"),
           (_R.READY,)),
    Reason("scheduled", gettext_lazy("not due yet"), gettext_lazy("its first attempt is scheduled later"), (_R.READY,)),
    Reason("rules_invalid", gettext_lazy("calling rules unreadable"), gettext_lazy("fix the campaign's hours, weekdays or holidays"),
           (_R.READY,)),
    Reason("unknown_zone", gettext_lazy("unknown time zone"), gettext_lazy("never called: its time zone is not a known IANA zone"),
           (_R.READY,)),
    Reason("holiday", gettext_lazy("holiday"), gettext_lazy("a holiday in the callee's local calendar"), (_R.READY,)),
    Reason("window_closed", gettext_lazy("window closed"), gettext_lazy("outside the calling window in the callee's local time"),
           (_R.READY,)),
    Reason("pacing", gettext_lazy("waiting for a slot"), gettext_lazy("ready, due and inside the window: waiting for pacing or a free "
           "channel (calls per second, concurrent calls)"), (_R.READY,)),
    Reason("other", gettext_lazy("other"), gettext_lazy("a state this page does not explain; see the call"), tuple(Call.State.values)),
]
REASONS_BY_CODE = {r.code: r for r in REASONS}
ZONE_REASONS = ("unknown_zone", "holiday", "window_closed", "pacing")


@dataclass
class ZoneCount:
    timezone: str
    calls: int
    local_now: str  # 'Wed 20:30' on the callee's clock (formatted here: templates would show the admin's zone)
    opening: str = ""  # when the window opens there, for the reasons that wait for it


@dataclass
class ReasonCount:
    reason: Reason
    calls: int
    zones: list[ZoneCount] = field(default_factory=list)  # for the reasons that depend on the callee's zone


@dataclass
class WaitingCall:
    pk: int
    phone: str  # masked
    timezone: str
    local_now: str
    state: str
    attempts_made: int
    reason: Reason
    detail: str


class Waiting:
    """One campaign at one instant: counts per reason, and pages of calls with their reasons."""

    def __init__(self, campaign: Campaign, now: datetime | None = None) -> None:
        self.campaign = campaign
        self.now = now or timezone.now()
        self.window: CallingWindow = calling_window(campaign)
        due = Call.objects.filter(campaign=campaign, state=Call.State.READY, next_attempt_at__lte=self.now)
        self.zones = sorted(set(due.values_list("timezone", flat=True).distinct().order_by()))
        self.unknown_zones = [z for z in self.zones if zone(z) is None]
        known = [z for z in self.zones if zone(z) is not None]
        self.holiday_zones = [z for z in known if self.window.is_holiday(z, self.now)]
        self.open_zones = [z for z in known if self.window.is_open(z, self.now)]
        self.closed_zones = [z for z in known if z not in self.open_zones and z not in self.holiday_zones]
        self._opens: dict[str, datetime | None] = {}
        self._stalled_calls, self._stalled_keys = self._stalled_work()

    def _stalled_work(self) -> tuple[dict[int, Worker], dict[str, Worker]]:
        """Call ids and render keys held by workers found silent and not yet recovered (a handful at most)."""
        calls: dict[int, Worker] = {}
        keys: dict[str, Worker] = {}
        for worker in workers.stalled(self.now):
            held_calls, held_keys = workers.held_work(worker.held)
            calls.update(dict.fromkeys(held_calls, worker))
            keys.update(dict.fromkeys(held_keys, worker))
        return calls, keys

    # -- the reason, as SQL --

    def _conditions(self) -> list[tuple[str, Q]]:
        """(reason code, condition) in order; the first that holds is the call's reason."""
        now, status = self.now, self.campaign.status
        ready = Q(state=Call.State.READY)
        due = ready & Q(next_attempt_at__lte=now)
        on_dnc = Exists(DoNotCall.objects.filter(phone=OuterRef("phone")))
        conditions = [
            (
                "stalled_worker",
                Q(state=Call.State.DIALING, pk__in=list(self._stalled_calls))
                | Q(state=Call.State.RENDERING, audio_id__in=list(self._stalled_keys)),
            ),
            ("dialling", Q(state__in=[Call.State.DIALING, Call.State.IN_PROGRESS])),
            ("script_error", Q(state=Call.State.INVALID)),
            ("render_failed", Q(state=Call.State.FAILED, attempts_made=0)),
            (
                "do_not_call",
                Q(state__in=[Call.State.DONE, Call.State.CANCELLED], outcome=Call.Outcome.DO_NOT_CALL, attempts_made=0)
                | (Q(state__in=[Call.State.RENDERING, Call.State.READY]) & on_dnc),
            ),
            ("no_consent", Q(state=Call.State.DONE, outcome="no_consent", attempts_made=0)),
            ("campaign_over", Q(state=Call.State.CANCELLED, attempts_made=0)),
            ("rendering", Q(state=Call.State.RENDERING)),
        ]
        if status == Campaign.Status.PAUSED:
            conditions.append(("paused", ready))
        elif status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
            conditions.append(("not_started", ready))
        elif status != Campaign.Status.RUNNING:
            conditions.append(("campaign_over", ready))
        conditions += [
            ("daily_cap", ready & Q(hold=Call.Hold.NUMBER_CAP, next_attempt_at__gt=now)),
            ("retry", ready & Q(next_attempt_at__gt=now, attempts_made__gt=0)),
            ("scheduled", ready & Q(next_attempt_at__gt=now)),
        ]
        if self.window.problem:
            conditions.append(("rules_invalid", due))
        conditions += [
            ("unknown_zone", due & Q(timezone__in=self.unknown_zones)),
            ("holiday", due & Q(timezone__in=self.holiday_zones)),
            ("window_closed", due & Q(timezone__in=self.closed_zones)),
            ("pacing", due & Q(timezone__in=self.open_zones)),
        ]
        return conditions

    def calls(self) -> QuerySet[Call]:
        """The campaign's calls not yet called, annotated with `waiting_reason` (a reason code)."""
        cases = [When(condition, then=Value(code)) for code, condition in self._conditions()]
        return (
            Call.objects.filter(campaign=self.campaign)
            .filter(Q(state__in=lifecycle.OPEN) | Q(state__in=NOT_CALLED_ENDS, attempts_made=0))
            .annotate(waiting_reason=Case(*cases, default=Value("other"), output_field=CharField()))
        )

    # -- counts --

    def counts(self) -> list[ReasonCount]:
        """Calls per reason (reasons with none left out), in REASONS order; one GROUP BY query."""
        grouped = (
            self.calls().values("waiting_reason", "timezone").annotate(n=Count("pk")).order_by()
        )
        totals: dict[str, int] = defaultdict(int)
        per_zone: dict[str, dict[str, int]] = defaultdict(dict)
        for row in grouped:
            totals[row["waiting_reason"]] += row["n"]
            if row["waiting_reason"] in ZONE_REASONS:
                per_zone[row["waiting_reason"]][row["timezone"]] = row["n"]
        result = []
        for reason in REASONS:
            if not totals.get(reason.code):
                continue
            waits = reason.code in ("holiday", "window_closed")
            zones = [
                ZoneCount(tz, n, self.local_clock(tz), self.opening_text(tz) if waits else "")
                for tz, n in sorted(per_zone.get(reason.code, {}).items(), key=lambda item: (-item[1], item[0]))
            ]
            result.append(ReasonCount(reason, totals[reason.code], zones))
        return result

    # -- a page of calls --

    def page(self, reason: str | None = None, *, after: int = 0, limit: int = PAGE_SIZE) -> list[WaitingCall]:
        """Up to `limit` calls after call id `after` (optionally of one reason), in id order."""
        calls = self.calls().filter(pk__gt=after)
        if reason is not None:
            calls = calls.filter(state__in=REASONS_BY_CODE[reason].states, waiting_reason=reason)
        rows = calls.order_by("pk").values(
            "pk", "phone", "timezone", "state", "attempts_made", "next_attempt_at", "error", "used_fallback",
            "audio_id", "waiting_reason",
        )[:limit]
        return [self._row(values) for values in rows]

    def _row(self, values: dict) -> WaitingCall:
        reason = REASONS_BY_CODE[values["waiting_reason"]]
        tz = values["timezone"]
        return WaitingCall(
            pk=values["pk"],
            phone=mask_phone(values["phone"]),
            timezone=tz,
            local_now=self.local_clock(tz),
            state=Call.State(values["state"]).label,
            attempts_made=values["attempts_made"],
            reason=reason,
            detail=self.detail(reason.code, values),
        )

    def detail(self, code: str, values: dict) -> str:
        """The reason for one call in words, with the times that matter to it."""
        tz, due = values["timezone"], values["next_attempt_at"]
        if code == "stalled_worker":
            worker = self._stalled_calls.get(values["pk"]) or self._stalled_keys.get(values["audio_id"])
            if worker is not None:
                back = worker.seen_at + timedelta(
                    seconds=settings.WORKER_DEAD_SECONDS + settings.WORKER_HEARTBEAT_SECONDS
                )
                what = gettext("dial it") if values["state"] == Call.State.DIALING else gettext("render its audio")
                silent = round((self.now - worker.seen_at).total_seconds())
                left = max(0, round((back - self.now).total_seconds()))
                return gettext(
                    "worker %(worker)s (pid %(pid)s) was to %(what)s and has been silent for %(silent)d s; another "
                    "worker takes it over within %(left)d s"
                ) % {"worker": worker.name, "pid": worker.pid, "what": what, "silent": silent, "left": left}
        if code == "dialling":
            return gettext("on the line") if values["state"] == Call.State.IN_PROGRESS else gettext("claimed, being dialled")
        if code == "rendering" and values["used_fallback"]:
            return gettext("its own audio failed to render: waiting for the campaign's generic clip")
        if code in ("script_error", "render_failed", "other") or values["state"] == Call.State.CANCELLED:
            return (values["error"] or str(REASONS_BY_CODE[code].explanation))[:300]
        if code == "paused":
            return self.campaign.paused_reason or gettext("paused by staff")
        if code == "not_started":
            return gettext("starts at %(when)s") % {"when": admin_time(self.campaign.starts_at, self.now)}
        if code == "daily_cap":
            when = admin_time(due, self.now)
            return gettext("this number had its calls for 24 hours; next try at %(when)s") % {"when": when}
        if code == "retry":
            when, n = admin_time(due, self.now), values["attempts_made"] + 1
            return gettext("retry at %(when)s (attempt %(n)d)") % {"when": when, "n": n}
        if code == "scheduled":
            return gettext("not before %(when)s") % {"when": admin_time(due, self.now)}
        if code == "rules_invalid":
            return self.window.problem
        if code == "unknown_zone":
            return gettext("time zone %(zone)s is not known, so the callee's local time cannot be told") % {"zone": repr(tz)}
        if code in ("holiday", "window_closed"):
            return self.opening_text(tz, holiday=code == "holiday")
        return str(REASONS_BY_CODE[code].explanation)

    # -- the callee's clock --

    def local_clock(self, tz_name: str) -> str:
        """'Wed 20:30': the callee's day and time now ('—' for an unknown zone)."""
        tz = zone(tz_name)
        return dateformat.format(self.now.astimezone(tz), "D H:i") if tz else "—"

    def opens_at(self, tz_name: str) -> datetime | None:
        if tz_name not in self._opens:
            self._opens[tz_name] = self.window.next_open(tz_name, self.now)
        return self._opens[tz_name]

    def opening_text(self, tz_name: str, *, holiday: bool = False) -> str:
        """'opens at 09:00 callee-local (in 42 min)', with the day when it is not the callee's today."""
        opens, tz = self.opens_at(tz_name), zone(tz_name)
        prefix = gettext("holiday in the callee's calendar; ") if holiday else ""
        if opens is None or tz is None:
            return prefix + gettext("the window does not open in the coming year")
        local, today = opens.astimezone(tz), self.now.astimezone(tz).date()
        if local.date() == today:
            when = f"{local:%H:%M}"
        elif local.date() == today + timedelta(days=1):
            when = gettext("%(time)s tomorrow") % {"time": f"{local:%H:%M}"}
        else:
            when = gettext("%(time)s on %(day)s") % {"time": f"{local:%H:%M}", "day": dateformat.format(local, "D d M")}
        opening = {"when": when, "zone": tz_name, "until": until(opens - self.now)}
        return prefix + gettext("opens at %(when)s callee-local (%(zone)s), %(until)s") % opening


def admin_time(moment: datetime | None, now: datetime) -> str:
    """A time in the admin's zone (settings.TIME_ZONE): '14:30', or '26 Nov 14:30' when not today."""
    if moment is None:
        return "—"
    local, today = timezone.localtime(moment), timezone.localtime(now).date()
    text = f"{local:%H:%M}" if local.date() == today else dateformat.format(local, "d M H:i")
    return f"{text} ({timezone.get_current_timezone_name()})"


def until(delta: timedelta) -> str:
    """'in 42 min', 'in 3 h 5 min', 'in 2 days'."""
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes < 60:
        return gettext("in %(min)d min") % {"min": minutes}
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        if rest:
            return gettext("in %(h)d h %(min)d min") % {"h": hours, "min": rest}
        return gettext("in %(h)d h") % {"h": hours}
    return gettext("in %(days)d days") % {"days": round(minutes / 1440)}
