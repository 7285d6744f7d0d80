"""Campaign figures people can trust: every number is one aggregate query, never a loop over calls.

Definitions (per variant; the campaign row is their sum, since every call has exactly one variant):
- calls: Call rows that were meant to be made (not INVALID, not excluded as do-not-call).
  calls == pending + done; calls + excluded_dnc + invalid == every Call row.
- attempts, dialled, answered, human, machine, listened_to_end and digits are facts about what happened
  on the phone, counted over every call that was dialled (a number put on the do-not-call list after a
  first attempt still counts as dialled once).
- answered: calls with an attempt whose status is ``completed`` (answered by anyone);
  human + machine == answered, where machine means only machines/fax answered.
- listened_to_end: calls where a human-answered attempt played to the end, so listen_rate <= 1.
- digits: the final keypress of each call (its last attempt with digits), digit -> number of calls.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, ExtractHour

from campaigns.models import Call, CallAttempt, Campaign

PENDING_STATES = (Call.State.RENDERING, Call.State.READY, Call.State.DIALING, Call.State.IN_PROGRESS)
FINAL_STATES = (Call.State.DONE, Call.State.FAILED, Call.State.CANCELLED)

_ANSWERED = Q(status=CallAttempt.Status.COMPLETED)
_HUMAN = _ANSWERED & ~Q(answered_by__istartswith="machine") & ~Q(answered_by__istartswith="fax")
_COUNTED = ~Q(state=Call.State.INVALID) & ~Q(outcome=Call.Outcome.DO_NOT_CALL)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class ReportRow:
    """One line of the report: a variant, or the whole campaign (variant_id None)."""

    label: str
    variant_id: int | None = None
    voice: str = ""
    script: str = ""
    calls: int = 0
    excluded_dnc: int = 0
    invalid: int = 0
    attempts: int = 0
    dialled: int = 0
    answered: int = 0
    human: int = 0
    machine: int = 0
    listened_to_end: int = 0
    opted_out: int = 0
    busy: int = 0
    no_answer: int = 0
    failed: int = 0
    pending: int = 0
    done: int = 0
    digits: dict[str, int] = field(default_factory=dict)

    @property
    def answer_rate(self) -> float | None:
        return _ratio(self.answered, self.dialled)

    @property
    def human_rate(self) -> float | None:
        return _ratio(self.human, self.dialled)

    @property
    def listen_rate(self) -> float | None:
        return _ratio(self.listened_to_end, self.human)

    def add(self, other: ReportRow) -> None:
        for name in _COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for digit, count in other.digits.items():
            self.digits[digit] = self.digits.get(digit, 0) + count


_COUNT_FIELDS = [f.name for f in fields(ReportRow) if f.type == "int"]


@dataclass
class HourRow:
    hour: int  # local hour of day, 0-23, in settings.TIME_ZONE
    attempts: int
    answered: int


@dataclass
class CampaignReport:
    campaign: Campaign
    total: ReportRow
    variants: list[ReportRow]

    @property
    def rows(self) -> list[ReportRow]:
        return [self.total, *self.variants]

    @property
    def digit_keys(self) -> list[str]:
        return sorted(self.total.digits)


def campaign_report(campaign: Campaign) -> CampaignReport:
    """The campaign row and one row per variant, in three aggregate queries."""
    rows = {
        v.pk: ReportRow(label=v.name, variant_id=v.pk, voice=v.voice.name, script=v.script.name)
        for v in campaign.variants.select_related("voice", "script").order_by("name")
    }

    call_counts = (
        Call.objects.filter(campaign=campaign)
        .values("variant_id")
        .annotate(
            calls=Count("pk", filter=_COUNTED),
            excluded_dnc=Count("pk", filter=Q(outcome=Call.Outcome.DO_NOT_CALL)),
            invalid=Count("pk", filter=Q(state=Call.State.INVALID)),
            opted_out=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.OPTED_OUT)),
            busy=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.BUSY)),
            no_answer=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.NO_ANSWER)),
            failed=Count("pk", filter=_COUNTED & Q(outcome=Call.Outcome.FAILED)),
            pending=Count("pk", filter=_COUNTED & Q(state__in=PENDING_STATES)),
            done=Count("pk", filter=_COUNTED & Q(state__in=FINAL_STATES)),
        )
        .order_by()
    )
    for values in call_counts:
        row = rows[values.pop("variant_id")]
        for name, count in values.items():
            setattr(row, name, count)

    attempt_counts = (
        CallAttempt.objects.filter(call__campaign=campaign)
        .values("call__variant_id")
        .annotate(
            attempts=Count("pk"),
            dialled=Count("call_id", distinct=True),
            answered=Count("call_id", distinct=True, filter=_ANSWERED),
            human=Count("call_id", distinct=True, filter=_HUMAN),
            listened_to_end=Count("call_id", distinct=True, filter=_HUMAN & Q(listened_to_end=True)),
        )
        .order_by()
    )
    for values in attempt_counts:
        row = rows[values.pop("call__variant_id")]
        for name, count in values.items():
            setattr(row, name, count)
        row.machine = row.answered - row.human

    last_with_digits = (
        CallAttempt.objects.filter(call_id=OuterRef("call_id"))
        .exclude(digits="")
        .order_by("-number")
        .values("number")[:1]
    )
    final_digits = (
        CallAttempt.objects.filter(call__campaign=campaign)
        .exclude(digits="")
        .filter(number=Subquery(last_with_digits))
        .values("call__variant_id", "digits")
        .annotate(calls=Count("call_id", distinct=True))
        .order_by()
    )
    for values in final_digits:
        rows[values["call__variant_id"]].digits[values["digits"]] = values["calls"]

    total = ReportRow(label="All variants")
    for row in rows.values():
        total.add(row)
    return CampaignReport(campaign=campaign, total=total, variants=list(rows.values()))


def progress(campaign: Campaign) -> dict[str, int]:
    """Calls per state, every state present (zeros included), in the order of Call.State."""
    counts = dict(
        Call.objects.filter(campaign=campaign).values_list("state").annotate(n=Count("pk")).order_by()
    )
    return {state: counts.get(state, 0) for state in Call.State.values}


def hourly(campaign: Campaign) -> list[HourRow]:
    """Attempts and answered attempts per local hour of day (settings.TIME_ZONE) of placed_at.

    Hours between the first and last busy hour are filled with zeros so a chart reads as a day.
    """
    counts = {
        values["hour"]: values
        for values in CallAttempt.objects.filter(call__campaign=campaign, placed_at__isnull=False)
        .annotate(hour=ExtractHour("placed_at", tzinfo=ZoneInfo(settings.TIME_ZONE)))
        .values("hour")
        .annotate(attempts=Count("pk"), answered=Count("pk", filter=_ANSWERED))
        .order_by()
    }
    if not counts:
        return []
    return [
        HourRow(
            hour=h,
            attempts=counts.get(h, {}).get("attempts", 0),
            answered=counts.get(h, {}).get("answered", 0),
        )
        for h in range(min(counts), max(counts) + 1)
    ]


def _count(queryset: QuerySet, group: str, field_name: str = "pk", *, distinct: bool = False) -> Coalesce:
    counted = queryset.order_by().values(group).annotate(n=Count(field_name, distinct=distinct)).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def with_summary(campaigns: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """Annotate campaigns for list pages (summary_calls, summary_done, summary_dialled, summary_answered),
    with the same definitions as campaign_report, one correlated subquery each."""
    calls = Call.objects.filter(_COUNTED, campaign=OuterRef("pk"))
    attempts = CallAttempt.objects.filter(call__campaign=OuterRef("pk"))
    return campaigns.annotate(
        summary_calls=_count(calls, "campaign"),
        summary_done=_count(calls.filter(state__in=FINAL_STATES), "campaign"),
        summary_dialled=_count(attempts, "call__campaign", "call_id", distinct=True),
        summary_answered=_count(attempts.filter(_ANSWERED), "call__campaign", "call_id", distinct=True),
    )


def format_rate(rate: float | None) -> str:
    """Rates as people read them: 42.5%, or an em dash when nothing was dialled."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


CSV_COLUMNS = [
    "campaign", "variant", "voice", "script", "calls", "excluded_dnc", "invalid", "attempts", "dialled",
    "answered", "human", "machine", "answer_rate", "human_rate", "listened_to_end", "listen_rate",
    "opted_out", "busy", "no_answer", "failed", "pending", "done",
]  # fmt: skip


def report_csv(campaign: Campaign) -> str:
    """The report rows as CSV text (campaign row first), one digit_<d> column per digit pressed.

    Rates are fractions (0.425) so a spreadsheet can compute with them; blank when undefined.
    """
    report = campaign_report(campaign)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS + [f"digit_{d}" for d in report.digit_keys])
    for row in report.rows:
        values: dict[str, object] = {
            "campaign": campaign.name,
            "variant": row.label if row.variant_id else "",
            "voice": row.voice,
            "script": row.script,
            "answer_rate": _csv_rate(row.answer_rate),
            "human_rate": _csv_rate(row.human_rate),
            "listen_rate": _csv_rate(row.listen_rate),
        }
        writer.writerow(
            [values[c] if c in values else getattr(row, c) for c in CSV_COLUMNS]
            + [row.digits.get(d, 0) for d in report.digit_keys]
        )
    return out.getvalue()


def _csv_rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


STALL_MINUTES = 5


def stalled_rendering(campaign: Campaign, *, now=None) -> str | None:
    """A warning when calls wait for audio and nothing has been rendered for a while (no synthesis worker?)."""
    from datetime import timedelta

    from django.utils import timezone

    from synthesis.models import RenderedAudio

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
    return (
        f"{waiting.count()} calls are waiting for audio and nothing has been rendered in the last {STALL_MINUTES} "
        "minutes: check that a synthesis worker (celery -Q synthesis) is running."
    )
