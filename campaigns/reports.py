"""Campaign figures people can trust: every number is one aggregate query, never a loop over calls.

Definitions (per variant; the campaign row is their sum, since every call has exactly one variant):
- calls: Call rows that were meant to be made (not INVALID, not excluded as do-not-call).
  calls == pending + done; calls + excluded_dnc + invalid == every Call row.
- attempts: CallAttempt rows. dialled: calls with at least one attempt (a number put on the do-not-call list
  after a first attempt still counts as dialled once).
- answered: dialled calls with an attempt whose status is ``completed`` (answered by anyone);
  human + machine == answered, where machine means answering machines and fax (campaigns.policy.is_machine).
- listened_to_end: calls where a person heard the message to the end.
- digits: the keys of each call's latest attempt with keys, keys -> number of calls; confirmed and rescheduled
  are the calls whose keys are the campaign's confirm and reschedule keys. opted_out: calls whose outcome is
  an opt-out.
- mean duration: seconds per answered attempt whose duration is known (talk_seconds / timed_attempts).
- actions (campaigns with a call flow): the funnel after the message. Of the calls that reached the menu
  (listened_to_end: a person heard the message to its end), how each ended: Call.final_action, the final action
  of its latest attempt that had one (campaigns.callflow.FINAL_ACTIONS). With a flow, confirmed and rescheduled
  are the calls whose final action says so (keys there are a path through menus, not one answer); opted_out
  stays the calls whose outcome is an opt-out, which the flow's opt-out node sets too.
Rates: answer and human rates per dialled call; listen-through, confirmations, reschedules and opt-outs per
call answered by a person. Each comes with a 95% Wilson interval.

The per-call facts (answered, human, listened, final keys, talk time) are rolled up onto Call as attempts
change (campaigns.lifecycle.record_call_facts), so the variant table is one pass over the campaign's calls.
Only the hour-by-weekday heatmap reads the attempts themselves, on its own page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import (
    CharField,
    Count,
    DateTimeField,
    F,
    Func,
    IntegerField,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, ExtractMinute, Floor, TruncHour
from django.utils.translation import gettext, gettext_lazy

from campaigns import callflow, stats
from campaigns.cells import guard_value
from campaigns.models import Call, CallAttempt, Campaign, Variant
from synthesis.models import RenderedAudio
from voices.models import Voice

PENDING_STATES = (Call.State.RENDERING, Call.State.READY, Call.State.DIALING, Call.State.IN_PROGRESS)
FINAL_STATES = (Call.State.DONE, Call.State.FAILED, Call.State.CANCELLED)

_COUNTED = ~Q(state=Call.State.INVALID) & ~Q(outcome=Call.Outcome.DO_NOT_CALL)
_DIALLED = Q(attempts_made__gt=0)
_ANSWERED_ATTEMPT = Q(status=CallAttempt.Status.COMPLETED)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Metric:
    """A rate people compare: numerator / denominator, both ReportRow counts."""

    key: str
    label: str  # shown on pages (translated lazily); the exports' metric_key column is the stable name
    numerator: str
    denominator: str
    verb: str  # for the A/B sentence: "B answers 4.1 points more than A"

    @property
    def unit(self) -> str:
        """What one trial of the rate is, for "about N more … per variant"."""
        return gettext("calls answered by a person") if self.denominator == "human" else gettext("calls")


METRICS = {
    m.key: m
    for m in (
        Metric("answer_rate", gettext_lazy("Answer rate"), "answered", "dialled", gettext_lazy("answers")),
        Metric("human_rate", gettext_lazy("Human-answer rate"), "human", "dialled", gettext_lazy("reaches a person")),
        Metric(
            "listen_rate", gettext_lazy("Listen-through"), "listened_to_end", "human", gettext_lazy("is heard to the end")
        ),
        Metric("confirm_rate", gettext_lazy("Confirmations"), "confirmed", "human", gettext_lazy("gets confirmations")),
        Metric(
            "reschedule_rate", gettext_lazy("Reschedules"), "rescheduled", "human", gettext_lazy("gets reschedules")
        ),
        Metric("opt_out_rate", gettext_lazy("Opt-outs"), "opted_out", "human", gettext_lazy("gets opt-outs")),
    )
}
# The rates an A/B test decides on, in the order the decision box shows them.
DECISION_METRICS = ("answer_rate", "listen_rate", "confirm_rate")

# How a call that reached a flow's menu ended, in the order the funnel shows them (Call.final_action).
FUNNEL_ACTIONS = {
    callflow.CONFIRMED: gettext_lazy("Confirmed"),
    callflow.RESCHEDULED: gettext_lazy("Rescheduled"),
    callflow.OPTED_OUT: gettext_lazy("Opted out"),
    callflow.TRANSFERRED: gettext_lazy("Transferred"),
    callflow.TRANSFER_REFUSED: gettext_lazy("Transfer refused"),
    callflow.NO_INPUT: gettext_lazy("No answer to the menu"),
    callflow.HUNG_UP: gettext_lazy("Hung up in the menu"),
}
assert set(FUNNEL_ACTIONS) == set(callflow.FINAL_ACTIONS)  # a new final action needs its funnel label


@dataclass(frozen=True)
class FunnelStep:
    action: str
    label: str
    calls: int
    share: float | None  # of the calls that reached the menu


@dataclass
class ReportRow:
    """One line of a report: a variant, a voice, or the whole campaign (variant_id None)."""

    label: str
    variant_id: int | None = None
    voice: str = ""
    script: str = ""
    weight: int = 0
    voice_id: int | None = None  # set on the rows of voice_report
    campaigns: int = 0  # voice_report: campaigns with calls in this voice
    calls: int = 0
    excluded_dnc: int = 0
    invalid: int = 0
    attempts: int = 0
    dialled: int = 0
    answered: int = 0
    human: int = 0
    machine: int = 0
    listened_to_end: int = 0
    confirmed: int = 0
    rescheduled: int = 0
    opted_out: int = 0
    busy: int = 0
    no_answer: int = 0
    failed: int = 0
    pending: int = 0
    done: int = 0
    timed_attempts: int = 0
    talk_seconds: int = 0
    digits: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)  # final action -> calls that reached the menu

    def rate(self, key: str) -> float | None:
        metric = METRICS[key]
        return _ratio(getattr(self, metric.numerator), getattr(self, metric.denominator))

    def interval(self, key: str) -> stats.Interval | None:
        """The rate's 95% Wilson interval (None when there is nothing to divide by)."""
        metric = METRICS[key]
        return stats.wilson(getattr(self, metric.numerator), getattr(self, metric.denominator))

    @property
    def answer_rate(self) -> float | None:
        return self.rate("answer_rate")

    @property
    def human_rate(self) -> float | None:
        return self.rate("human_rate")

    @property
    def listen_rate(self) -> float | None:
        return self.rate("listen_rate")

    @property
    def mean_duration(self) -> float | None:
        """Seconds per answered attempt whose duration is known (one still waiting for it is not a 0)."""
        return _ratio(self.talk_seconds, self.timed_attempts)

    @property
    def funnel(self) -> list[FunnelStep]:
        """Each final action with its calls and their share of the calls that reached the menu."""
        return [
            FunnelStep(action, label, self.actions.get(action, 0), _ratio(self.actions.get(action, 0), self.listened_to_end))
            for action, label in FUNNEL_ACTIONS.items()
        ]

    def add(self, other: ReportRow) -> None:
        for name in _COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for digit, count in other.digits.items():
            self.digits[digit] = self.digits.get(digit, 0) + count
        for action, count in other.actions.items():
            self.actions[action] = self.actions.get(action, 0) + count


_COUNT_FIELDS = [f.name for f in fields(ReportRow) if f.type == "int" and f.name not in ("weight", "campaigns")]


def _call_counts(calls: QuerySet[Call]) -> QuerySet:
    """Every count of the report, per (variant, final keys, final action, state): one pass over the calls, a few
    dozen rows back. `rows` counts every call, whatever it is, for the progress table."""
    return (
        calls.values("variant_id", "final_digits", "final_action", "state")
        .annotate(
            rows=Count("pk"),
            calls=Count("pk", filter=_COUNTED),
            excluded_dnc=Count("pk", filter=Q(outcome=Call.Outcome.DO_NOT_CALL)),
            invalid=Count("pk", filter=Q(state=Call.State.INVALID)),
            opted_out=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.OPTED_OUT)),
            busy=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.BUSY)),
            no_answer=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.NO_ANSWER)),
            failed=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.FAILED)),
            pending=Count("pk", filter=_COUNTED & Q(state__in=PENDING_STATES)),
            done=Count("pk", filter=_COUNTED & Q(state__in=FINAL_STATES)),
            attempts=Coalesce(Sum("attempts_made"), 0),
            dialled=Count("pk", filter=_DIALLED),
            answered=Count("pk", filter=_DIALLED & Q(answered=True)),
            human=Count("pk", filter=_DIALLED & Q(human_answered=True)),
            listened_to_end=Count("pk", filter=_DIALLED & Q(human_answered=True, listened_to_end=True)),
            timed_attempts=Coalesce(Sum("timed_attempts"), 0),
            talk_seconds=Coalesce(Sum("talk_seconds"), 0),
        )
        .order_by()
    )


def _fill(
    rows: dict[int, ReportRow],
    calls: QuerySet[Call],
    keys: dict[int, tuple[str, str] | None],
    *,
    settled: dict[int, ReportRow] | None = None,
    states: dict[str, int] | None = None,
) -> None:
    """Add the call counts into rows by variant; keys: variant id -> (confirm key, reschedule key), or None
    where the campaign has a call flow (confirmed and rescheduled are then final actions).

    `settled` rows, when given, also get the counts of finished calls only (done, failed or cancelled: no retry
    to come); `states` gets the number of calls in each state.
    """
    for values in _call_counts(calls):
        variant_id, digits, state = values.pop("variant_id"), values.pop("final_digits"), values.pop("state")
        action = values.pop("final_action")
        every = values.pop("rows")
        if states is not None:
            states[state] = states.get(state, 0) + every
        targets = [rows[variant_id]]
        if settled is not None and state in FINAL_STATES:
            targets.append(settled[variant_id])
        for row in targets:
            for name, count in values.items():
                setattr(row, name, getattr(row, name) + count)
            if digits:
                dialled = values["dialled"]
                row.digits[digits] = row.digits.get(digits, 0) + dialled
                if keys[variant_id] is not None:
                    confirm, reschedule = keys[variant_id]
                    if digits == confirm:
                        row.confirmed += dialled
                    elif digits == reschedule:
                        row.rescheduled += dialled
            if action and keys[variant_id] is None:
                # Counted among the calls that reached the menu, so the funnel's steps add up within it.
                reached = values["listened_to_end"]
                row.actions[action] = row.actions.get(action, 0) + reached
                if action == callflow.CONFIRMED:
                    row.confirmed += reached
                elif action == callflow.RESCHEDULED:
                    row.rescheduled += reached
    for row in [*rows.values(), *(settled or {}).values()]:
        row.machine = row.answered - row.human


@dataclass
class CampaignReport:
    campaign: Campaign
    total: ReportRow
    variants: list[ReportRow]
    # The variants counting finished calls only: what the A/B comparisons are made on.
    settled: list[ReportRow] = field(default_factory=list)
    # Calls per state, every state present (zeros included), in the order of Call.State.
    progress: dict[str, int] = field(default_factory=dict)
    # metric key -> one comparison per challenger variant against the control (the first variant).
    comparisons: dict[str, list[stats.Comparison]] = field(default_factory=dict)
    sample_ratio_p: float | None = None

    @property
    def has_flow(self) -> bool:
        """The campaign runs a call flow: its report has a funnel, its confirmations are final actions."""
        return self.campaign.flow_id is not None

    @property
    def funnel_labels(self) -> list[str]:
        return list(FUNNEL_ACTIONS.values())

    @property
    def rows(self) -> list[ReportRow]:
        return [self.total, *self.variants]

    @property
    def digit_keys(self) -> list[str]:
        return sorted(self.total.digits)

    @property
    def control(self) -> ReportRow | None:
        return self.variants[0] if self.variants else None

    @property
    def split_is_off(self) -> bool:
        """Calls per variant are further from the weights than chance allows (sample ratio mismatch)."""
        return self.sample_ratio_p is not None and self.sample_ratio_p < SRM_ALPHA


# A split this unlikely under the weights means assignment went wrong (p < 0.001, the usual SRM threshold).
SRM_ALPHA = 0.001


def campaign_report(campaign: Campaign) -> CampaignReport:
    """The campaign row, one row per variant, progress by state and the A/B comparisons, in two queries.

    The comparisons count finished calls only. A call waiting for a retry has no final outcome yet: counting it
    as unanswered now and answered later would change a trial the sequential test has already seen.
    """
    variants = list(campaign.variants.select_related("voice", "script").order_by("name"))

    def blank() -> dict[int, ReportRow]:
        return {
            v.pk: ReportRow(label=v.name, variant_id=v.pk, voice=v.voice.name, script=v.script.name, weight=v.weight)
            for v in variants
        }

    rows, settled, states = blank(), blank(), {}
    keys = {v.pk: None if campaign.flow_id else (campaign.confirm_digit, campaign.reschedule_digit) for v in variants}
    _fill(rows, Call.objects.filter(campaign=campaign), keys, settled=settled, states=states)
    total = ReportRow(label=gettext("All variants"))
    for row in rows.values():
        total.add(row)
    report = CampaignReport(
        campaign=campaign,
        total=total,
        variants=list(rows.values()),
        settled=list(settled.values()),
        progress={state: states.get(state, 0) for state in Call.State.values},
    )
    report.comparisons = compare_variants(report.settled, min_effect=campaign.min_effect / 100)
    report.sample_ratio_p = stats.sample_ratio_mismatch(
        [row.calls for row in report.variants], [row.weight for row in report.variants]
    )
    return report


def compare_variants(variants: list[ReportRow], *, min_effect: float) -> dict[str, list[stats.Comparison]]:
    """Each later variant against the first, on every decision metric; the error rate is split between the
    challengers (Bonferroni), so naming one winner among several stays at 5%."""
    if len(variants) < 2:
        return {}
    control, challengers = variants[0], variants[1:]
    comparisons: dict[str, list[stats.Comparison]] = {}
    for key in DECISION_METRICS:
        metric = METRICS[key]
        comparisons[key] = [
            stats.compare(
                str(metric.label).lower(),
                str(metric.verb),
                control.label,
                getattr(control, metric.numerator),
                getattr(control, metric.denominator),
                row.label,
                getattr(row, metric.numerator),
                getattr(row, metric.denominator),
                min_effect=min_effect,
                comparisons=len(challengers),
                unit=metric.unit,
            )
            for row in challengers
        ]
    return comparisons


def voice_report() -> list[ReportRow]:
    """One row per voice, over every campaign that used it (label = voice name), busiest first."""
    variants = Variant.objects.select_related("campaign").only(
        "pk", "voice_id", "campaign__confirm_digit", "campaign__reschedule_digit", "campaign__flow_id"
    )
    voice_of = {v.pk: v.voice_id for v in variants}
    keys = {
        v.pk: None if v.campaign.flow_id else (v.campaign.confirm_digit, v.campaign.reschedule_digit) for v in variants
    }
    by_variant = {pk: ReportRow(label="") for pk in voice_of}
    _fill(by_variant, Call.objects.all(), keys)
    voices = {v.pk: ReportRow(label=v.name, voice=v.name, voice_id=v.pk) for v in Voice.objects.all()}
    campaigns: dict[int, set[int]] = {pk: set() for pk in voices}
    for variant in variants:
        voices[variant.voice_id].add(by_variant[variant.pk])
        if by_variant[variant.pk].calls:
            campaigns[variant.voice_id].add(variant.campaign_id)
    for pk, row in voices.items():
        row.campaigns = len(campaigns[pk])
    return sorted(voices.values(), key=lambda r: (-r.dialled, r.label))


def progress(campaign: Campaign) -> dict[str, int]:
    """Calls per state, every state present (zeros included), in the order of Call.State."""
    counts = dict(
        Call.objects.filter(campaign=campaign).values_list("state").annotate(n=Count("pk")).order_by()
    )
    return {state: counts.get(state, 0) for state in Call.State.values}


# --- when people answer ----------------------------------------------------------------------------

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass
class Heatmap:
    """Attempts and answered attempts by the callee's local weekday (Monday = 0) and hour of day."""

    cells: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def add(self, weekday: int, hour: int, attempts: int, answered: int) -> None:
        before = self.cells.get((weekday, hour), (0, 0))
        self.cells[(weekday, hour)] = (before[0] + attempts, before[1] + answered)

    @property
    def attempts(self) -> int:
        return sum(a for a, _ in self.cells.values())

    @property
    def answered(self) -> int:
        return sum(b for _, b in self.cells.values())

    @property
    def hours(self) -> list[int]:
        """The hours from the first to the last with any attempt, so a table or chart reads as a day."""
        used = [hour for _, hour in self.cells]
        return list(range(min(used), max(used) + 1)) if used else []

    def by_hour(self) -> list[tuple[int, int, int]]:
        """(hour, attempts, answered) over all weekdays."""
        return [
            (hour, *map(sum, zip(*(self.cells.get((d, hour), (0, 0)) for d in range(7)), strict=True)))
            for hour in self.hours
        ]

    def by_weekday(self) -> list[tuple[int, int, int]]:
        """(weekday, attempts, answered) over all hours."""
        return [
            (day, *map(sum, zip(*(self.cells.get((day, h), (0, 0)) for h in range(24)), strict=True)))
            for day in range(7)
        ]


def heatmap(attempts: QuerySet[CallAttempt]) -> Heatmap:
    """Attempts by callee-local weekday and hour, e.g. heatmap(campaign_attempts(campaign)).

    The database groups placed_at by UTC quarter-hour and callee zone (every zone's offset is a whole number of
    quarter-hours), and each group is turned into local time here, with that instant's offset: exact across
    daylight-saving changes and on SQLite and PostgreSQL alike. A few thousand groups, whatever the size.
    """
    if connection.vendor == "postgresql":
        keys = {"slot": QuarterHour("placed_at")}  # one key: half the time of hour + minute on a million rows
    else:
        keys = {"slot": TruncHour("placed_at", tzinfo=UTC), "quarter": Floor(ExtractMinute("placed_at", tzinfo=UTC) / 15)}
    groups = (
        attempts.filter(placed_at__isnull=False)
        .values(zone=F("call__timezone"), **keys)
        .annotate(attempts=Count("pk"), answered=Count("pk", filter=_ANSWERED_ATTEMPT))
        .order_by()
    )
    result = Heatmap()
    zones: dict[str, ZoneInfo] = {}
    for g in groups:
        zone = zones.get(g["zone"]) or zones.setdefault(g["zone"], _zone(g["zone"]))
        slot: datetime = g["slot"]
        local = (slot.replace(tzinfo=UTC) + timedelta(minutes=15 * int(g.get("quarter", 0)))).astimezone(zone)
        result.add(local.weekday(), local.hour, g["attempts"], g["answered"])
    return result


class QuarterHour(Func):
    """The start of the UTC quarter-hour holding a time: PostgreSQL's date_bin (14+)."""

    template = "date_bin('15 minutes', %(expressions)s, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    output_field = DateTimeField()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):  # a zone removed from tzdata since: count it in UTC rather than lose it
        return ZoneInfo("UTC")


def campaign_attempts(campaign: Campaign, variant: Variant | None = None) -> QuerySet[CallAttempt]:
    attempts = CallAttempt.objects.filter(call__campaign=campaign)
    return attempts.filter(call__variant=variant) if variant else attempts


def voice_attempts(voice_id: int) -> QuerySet[CallAttempt]:
    return CallAttempt.objects.filter(call__variant__voice_id=voice_id)


# --- list pages ------------------------------------------------------------------------------------


def _count(queryset: QuerySet, group: str) -> Coalesce:
    counted = queryset.order_by().values(group).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def with_summary(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """Annotate campaigns for list pages (summary_calls, summary_done, summary_dialled, summary_answered),
    with the same definitions as campaign_report, one correlated subquery each."""
    calls = Call.objects.filter(campaign=OuterRef("pk"))
    counted = calls.filter(_COUNTED)
    dialled = calls.filter(_DIALLED)
    return campaigns.annotate(
        summary_calls=_count(counted, "campaign"),
        summary_done=_count(counted.filter(state__in=FINAL_STATES), "campaign"),
        summary_dialled=_count(dialled, "campaign"),
        summary_answered=_count(dialled.filter(answered=True), "campaign"),
    )


def format_rate(rate: float | None) -> str:
    """Rates as people read them: 42.5%, or an em dash when nothing was dialled."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


def format_interval(interval: stats.Interval | None) -> str:
    """A 95% interval as people read it: 38.1–46.9%, or an em dash."""
    return "—" if interval is None else f"{interval.low * 100:.1f}–{interval.high * 100:.1f}%"


# --- exports ---------------------------------------------------------------------------------------

COUNT_COLUMNS = [
    "calls", "excluded_dnc", "invalid", "attempts", "dialled", "answered", "human", "machine", "listened_to_end",
    "confirmed", "rescheduled", "opted_out", "busy", "no_answer", "failed", "pending", "done", "timed_attempts",
    "talk_seconds",
]  # fmt: skip
RATE_KEYS = list(METRICS)


def _ends(interval: stats.Interval | None) -> tuple[float | None, float | None]:
    return (interval.low, interval.high) if interval else (None, None)


def row_record(row: ReportRow, *, flow: bool = False) -> dict[str, object]:
    """A report row as a flat record for CSV, Excel and JSON: counts, then each rate with its 95% interval
    (fractions, None when undefined), then mean duration in seconds, then (flow: True) the funnel's count of
    each final action, then the keys pressed."""
    record: dict[str, object] = {name: getattr(row, name) for name in COUNT_COLUMNS}
    for key in RATE_KEYS:
        record[key] = row.rate(key)
        record[f"{key}_low"], record[f"{key}_high"] = _ends(row.interval(key))
    record["mean_duration"] = row.mean_duration
    if flow:
        record["actions"] = {action: row.actions.get(action, 0) for action in FUNNEL_ACTIONS}
    record["digits"] = dict(sorted(row.digits.items()))
    return record


def export_columns(digit_keys: Iterable[str], *, flow: bool = False) -> list[str]:
    rates = [name for key in RATE_KEYS for name in (key, f"{key}_low", f"{key}_high")]
    actions = [f"action_{action}" for action in FUNNEL_ACTIONS] if flow else []
    return [*COUNT_COLUMNS, *rates, "mean_duration", *actions, *(f"digit_{d}" for d in digit_keys)]


def export_rows(report: CampaignReport) -> tuple[list[str], list[list[object]]]:
    """The report as a table (header, rows; campaign row first): what CSV and Excel downloads hold. A campaign
    with a flow gets its funnel too: listened_to_end (reached the menu), then action_<final action> counts."""
    flow = report.has_flow
    header = ["campaign", "variant", "voice", "script", *export_columns(report.digit_keys, flow=flow)]
    rows = [
        [report.campaign.name, row.label if row.variant_id else "", row.voice, row.script,
         *_export_values(row, report.digit_keys, flow=flow)]  # fmt: skip
        for row in report.rows
    ]
    return header, rows


def _export_values(row: ReportRow, digit_keys: list[str], *, flow: bool = False) -> list[object]:
    """A row's values in export_columns(digit_keys, flow=flow) order: its record, its final actions, then one
    count per key."""
    record = row_record(row, flow=flow)
    digits: dict[str, int] = record.pop("digits")  # type: ignore[assignment]
    actions: dict[str, int] = record.pop("actions", {})  # type: ignore[assignment]
    return [*record.values(), *actions.values(), *(digits.get(d, 0) for d in digit_keys)]


CALL_COLUMNS = [
    "call_id", "contact_id", "external_id", "phone", "variant", "state", "outcome", "attempts", "final_digits",
    "final_action", "action_detail", "path",
]  # fmt: skip
PATH_SEPARATOR = ">"


def calls_with_flow_facts(calls: QuerySet[Call]) -> QuerySet[Call]:
    """Calls with the path and action detail of their latest attempt with a final action (the attempt
    Call.final_action comes from), as flow_path and flow_detail; one query, a correlated subquery each."""
    latest = CallAttempt.objects.filter(call_id=OuterRef("pk")).exclude(action="").order_by("-number")
    return calls.annotate(
        flow_path=Subquery(latest.values("path")[:1], output_field=JSONField()),
        flow_detail=Coalesce(Subquery(latest.values("action_detail")[:1], output_field=CharField()), Value("")),
    )


def call_record(call: Call) -> dict[str, object]:
    """One call of calls_with_flow_facts as a flat record (CALL_COLUMNS): path like "message>2>2.1"."""
    return {
        "call_id": call.pk,
        "contact_id": call.contact_id,
        "external_id": call.contact.external_id,
        "phone": call.phone,
        "variant": call.variant.name,
        "state": call.state,
        "outcome": call.outcome,
        "attempts": call.attempts_made,
        "final_digits": call.final_digits,
        "final_action": call.final_action,
        "action_detail": call.flow_detail,
        "path": PATH_SEPARATOR.join(call.flow_path or []),
    }


def campaign_calls(campaign: Campaign) -> QuerySet[Call]:
    return calls_with_flow_facts(
        Call.objects.filter(campaign=campaign).select_related("variant", "contact").order_by("pk")
    )


def call_rows(campaign: Campaign, *, limit: int | None = None) -> tuple[list[str], list[list[object]]]:
    """Every call of a campaign (the first `limit` by id), one row each: how far it went in the flow. A last
    row says how many were left out, and where to read them all (the API pages through every call)."""
    calls = campaign_calls(campaign)
    rows = [list(call_record(call).values()) for call in (calls[:limit] if limit else calls).iterator(chunk_size=2000)]
    if limit and len(rows) == limit:
        more = calls.count() - limit
        if more > 0:
            rows.append([f"{more} more calls: read every call from /api/v1/campaigns/{campaign.pk}/calls"])
    return CALL_COLUMNS, rows


def comparison_rows(report: CampaignReport) -> tuple[list[str], list[list[object]]]:
    """The A/B decisions as a table, one row per metric and challenger."""
    header = ["metric_key", "metric", "control", "challenger", "control_rate", "challenger_rate", "difference", "ci_low",
              "ci_high", "p_value", "verdict", "more_calls_per_variant", "sentence"]  # fmt: skip
    rows = [
        [key, str(METRICS[key].label), c.control, c.challenger, c.control_rate, c.challenger_rate, c.difference,
         *_ends(c.interval), c.p_value,
         str(c.verdict), c.more_calls, c.sentence]  # fmt: skip
        for key, comparisons in report.comparisons.items()
        for c in comparisons
    ]
    return header, rows


def heatmap_rows(result: Heatmap) -> tuple[list[str], list[list[object]]]:
    """The heatmap as a long table (weekday 0 = Monday, and its name), hour, attempts, answered, answer rate
    and its interval; hours without attempts are left out."""
    header = ["weekday_number", "weekday", "hour", "attempts", "answered", "answer_rate", "answer_rate_low",
              "answer_rate_high"]  # fmt: skip
    rows = []
    for (day, hour), (attempts, answered) in sorted(result.cells.items()):
        rows.append(
            [day, WEEKDAYS[day], hour, attempts, answered, _ratio(answered, attempts),
             *_ends(stats.wilson(answered, attempts))]  # fmt: skip
        )
    return header, rows


def voice_rows(rows: list[ReportRow]) -> tuple[list[str], list[list[object]]]:
    digit_keys = sorted({d for row in rows for d in row.digits})
    header = ["voice_id", "voice", "campaigns", *export_columns(digit_keys)]
    table = [[row.voice_id, row.label, row.campaigns, *_export_values(row, digit_keys)] for row in rows]
    return header, table


def to_csv(header: list[str], rows: list[list[object]]) -> str:
    """CSV text; fractions with 4 decimals (0.4250) so a spreadsheet computes with them, blank when undefined."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        # Names in reports come from staff and contact lists: guard_value keeps =HYPERLINK(…) from running.
        writer.writerow(["" if v is None else f"{v:.4f}" if isinstance(v, float) else guard_value(v) for v in row])
    return out.getvalue()


STALL_MINUTES = 5


def stalled_rendering(campaign: Campaign, *, now=None) -> str | None:
    """A warning when calls wait for audio and nothing has been rendered for a while (no synthesis worker?)."""
    from datetime import timedelta

    from django.utils import timezone

    waiting = campaign.calls.filter(state=Call.State.RENDERING)
    if campaign.status != Campaign.Status.RUNNING or not waiting.exists():
        return None
    now = now or timezone.now()
    since = now - timedelta(minutes=STALL_MINUTES)
    launched = campaign.launched_at or now
    if launched > since:
        return None  # just launched: give the workers a moment
    recent = RenderedAudio.objects.filter(rendered_at__gte=since).exists()
    if recent:
        return None
    return gettext(
        "%(n)s calls are waiting for audio and nothing has been rendered in the last %(minutes)s minutes: check that "
        "a synthesis worker (celery -Q synthesis) is running."
    ) % {"n": waiting.count(), "minutes": STALL_MINUTES}
