"""Campaign report pages, served by CampaignAdmin.get_urls behind the admin login.

Charts are SVG drawn on the server: the admin works offline, with no JavaScript or CDN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.translation import gettext, gettext_lazy, pgettext

from campaigns import exports, reports, stats
from campaigns.models import Call, Campaign
from campaigns.waiting import PAGE_SIZE, REASONS_BY_CODE, Waiting

REFRESH_SECONDS = 5
# Admin palette: primary blue, light blue, yellow.
SERIES_COLORS = ["#417690", "#79aec8", "#e4b832"]

# (heading, ReportRow count attribute, rate key shown after it or None); rates show their 95% interval.
TABLE_COLUMNS = [
    (gettext_lazy("Calls"), "calls", None),
    (gettext_lazy("Pending"), "pending", None),
    (gettext_lazy("Done"), "done", None),
    (gettext_lazy("Attempts"), "attempts", None),
    (gettext_lazy("Dialled"), "dialled", None),
    (gettext_lazy("Answered"), "answered", "answer_rate"),
    (gettext_lazy("Human"), "human", "human_rate"),
    (gettext_lazy("Machine"), "machine", None),
    (gettext_lazy("Listened to end"), "listened_to_end", "listen_rate"),
    (gettext_lazy("Confirmed"), "confirmed", "confirm_rate"),
    (gettext_lazy("Rescheduled"), "rescheduled", "reschedule_rate"),
    (gettext_lazy("Opted out"), "opted_out", "opt_out_rate"),
    (gettext_lazy("Busy"), "busy", None),
    (gettext_lazy("No answer"), "no_answer", None),
    (gettext_lazy("Failed"), "failed", None),
    (gettext_lazy("Excluded (DNC)"), "excluded_dnc", None),
    (gettext_lazy("Invalid script"), "invalid", None),
]
# The results table's column groups, by the count that opens each (a heading row above the columns).
TABLE_GROUPS = {
    "calls": gettext_lazy("Calls"),
    "attempts": gettext_lazy("Reached"),
    "listened_to_end": gettext_lazy("After the message"),
    "busy": gettext_lazy("Not reached"),
    "excluded_dnc": gettext_lazy("Not called"),
}
VERDICT_CLASSES = {"wins": "success", "loses": "error", "no_difference": "info", "not_enough_data": "warning"}


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Plot:
    """An SVG chart's canvas and plot area (pixels), and its axis ticks."""

    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (position on the value axis, label)


@dataclass
class BarChart(Plot):
    bars: list[Bar] = field(default_factory=list)
    group_labels: list[tuple[float, str]] = field(default_factory=list)  # (x centre, label)
    legend: list[tuple[float, float, str, str]] = field(default_factory=list)  # (x, text x, color, name)


def _nice_step(value: float) -> float:
    """Smallest 1, 2 or 5 × 10^k at or above value (at least 1), so axis ticks are round whole numbers."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def grouped_bar_chart(
    title: str,
    series: list[str],
    groups: list[tuple[str, list[float | None]]],
    *,
    percent: bool = False,
    bar_width: int = 18,
) -> BarChart:
    """Geometry of a grouped bar chart: one group per label, one bar per series (None draws no bar)."""
    left, right_pad, top, bottom, gap, height = 52, 16, 36, 34, 18, 240
    group_width = bar_width * len(series) + gap
    width = max(420, left + right_pad + group_width * max(len(groups), 1))
    plot_bottom = height - bottom
    plot_height = plot_bottom - top
    if percent:
        step, intervals = 0.25, 4
    else:
        largest = max((v or 0 for _, vs in groups for v in vs), default=0)
        step = _nice_step(largest / 4)
        intervals = max(1, math.ceil(largest / step))
    top_value = step * intervals

    def fmt(value: float) -> str:
        return f"{value * 100:.0f}%" if percent else f"{value:,.0f}"

    chart = BarChart(
        title=title,
        width=width,
        height=height,
        plot_left=left,
        plot_right=width - right_pad,
        plot_bottom=plot_bottom,
    )
    for i in range(intervals + 1):
        chart.ticks.append((plot_bottom - plot_height * i / intervals, fmt(step * i)))
    for g, (label, values) in enumerate(groups):
        x0 = left + gap / 2 + g * group_width
        chart.group_labels.append((x0 + bar_width * len(series) / 2, label))
        for s, value in enumerate(values):
            if value is None:
                continue
            bar_height = plot_height * min(value / top_value, 1.0)
            shown = f"{value * 100:.1f}%" if percent else f"{value:,.0f}"
            color = SERIES_COLORS[s % len(SERIES_COLORS)]
            tooltip = f"{label} · {series[s]}: {shown}"
            chart.bars.append(
                Bar(x0 + s * bar_width, plot_bottom - bar_height, bar_width - 2, bar_height, color, tooltip)
            )
    for s, name in enumerate(series):
        chart.legend.append(
            (left + s * 130, left + s * 130 + 16, SERIES_COLORS[s % len(SERIES_COLORS)], name)
        )
    return chart


@dataclass
class IntervalRow:
    label: str
    y: float
    low: float  # x of the interval's ends and of the rate
    rate: float
    high: float
    title: str


@dataclass
class IntervalChart(Plot):
    """A rate per variant as a dot on its 95% interval (a forest plot): overlap is visible at a glance."""

    rows: list[IntervalRow] = field(default_factory=list)


def interval_chart(title: str, rows: list[tuple[str, float | None, stats.Interval | None]]) -> IntervalChart:
    """Geometry of an interval chart; rows without a rate yet are left out. The axis spans 0 to the next
    10% above the highest interval end."""
    shown = [(label, rate, ci) for label, rate, ci in rows if rate is not None and ci is not None]
    left, right_pad, top, row_height, bottom = 90, 24, 10, 26, 30
    width = 420
    height = top + row_height * max(len(shown), 1) + bottom
    chart = IntervalChart(title, width, height, left, width - right_pad, height - bottom)
    top_value = min(1.0, math.ceil(max((ci.high for _, _, ci in shown), default=0.1) * 10 + 1e-9) / 10) or 0.1
    span = chart.plot_right - left

    def x(value: float) -> float:
        return left + span * value / top_value

    steps = round(top_value * 10)
    every = 1 if steps <= 5 else 2
    chart.ticks = [(x(i / 10), f"{i * 10}%") for i in range(0, steps + 1, every)]
    for i, (label, rate, ci) in enumerate(shown):
        tip = gettext("%(label)s: %(rate)s (95%% CI %(interval)s)") % {
            "label": label,
            "rate": reports.format_rate(rate),
            "interval": reports.format_interval(ci),
        }
        chart.rows.append(IntervalRow(label, top + row_height * (i + 0.5), x(ci.low), x(rate), x(ci.high), tip))
    return chart


def _count_cell(row: reports.ReportRow, attribute: str) -> dict[str, str]:
    return {"value": f"{getattr(row, attribute):,}"}


def _rate_cell(row: reports.ReportRow, key: str) -> dict[str, str]:
    return {"value": reports.format_rate(row.rate(key)), "ci": reports.format_interval(row.interval(key))}


def _table(rows: list[reports.ReportRow]) -> list[dict[str, Any]]:
    lines = []
    for row in rows:
        cells = []
        for _, attribute, rate in TABLE_COLUMNS:
            cells.append(_count_cell(row, attribute))
            if rate:
                cells.append(_rate_cell(row, rate))
        duration = row.mean_duration
        cells.append({"value": "—" if duration is None else f"{duration:.1f} s"})
        lines.append({"row": row, "is_total": row.variant_id is None and row.voice_id is None, "cells": cells})
    return lines


def _decision_counts(settled: list[reports.ReportRow], metric: reports.Metric) -> dict[str, Any]:
    """What a decision compares, per variant: its finished calls' numerator of denominator, and the rate."""
    units = {"dialled": gettext("finished dialled calls"), "human": gettext("finished calls answered by a person")}
    rows = [
        {
            "label": row.label,
            "numerator": getattr(row, metric.numerator),
            "denominator": getattr(row, metric.denominator),
            **_rate_cell(row, metric.key),
        }
        for row in settled
    ]
    counted = next((heading for heading, attribute, _ in TABLE_COLUMNS if attribute == metric.numerator), metric.numerator)
    return {"unit": units.get(metric.denominator, metric.denominator), "counted": counted, "rows": rows}


def _heading_groups() -> list[tuple[str, int]]:
    """(group, columns it spans) over the table's figures, in order, mean duration last."""
    groups: list[tuple[str, int]] = []
    for _, attribute, rate in TABLE_COLUMNS:
        width = 2 if rate else 1
        if attribute in TABLE_GROUPS or not groups:
            groups.append((TABLE_GROUPS.get(attribute, ""), width))
        else:
            label, span = groups[-1]
            groups[-1] = (label, span + width)
    return [*groups, (gettext("Time"), 1)]


def _headings() -> list[str]:
    headings = []
    for heading, _, rate in TABLE_COLUMNS:
        headings.append(heading)
        if rate:
            headings.append(reports.METRICS[rate].label)
    return [*headings, gettext("Mean duration")]


def report_page(request: HttpRequest, campaign: Campaign, context: dict[str, Any]) -> TemplateResponse:
    """The report page; `context` is the admin's (site context, opts) so it renders inside the admin."""
    report = reports.campaign_report(campaign)
    states = report.progress
    state_labels = dict(Call.State.choices)
    digit_keys = report.digit_keys
    running = campaign.status == Campaign.Status.RUNNING
    context = {
        **context,
        "campaign": campaign,
        "report": report,
        # A big campaign's report is a second of database work: refresh it less often.
        "refresh_seconds": (REFRESH_SECONDS if report.total.calls < 100_000 else 60) if running else None,
        "stalled": reports.stalled_rendering(campaign),
        "progress": [(state_labels[state], count) for state, count in states.items()],
        "done_percent": round(100 * report.total.done / report.total.calls) if report.total.calls else 0,
        "headings": _headings(),
        "heading_groups": _heading_groups(),
        "table": _table(report.rows),
        "decisions": [
            {
                "label": reports.METRICS[key].label,
                "comparisons": [(c, VERDICT_CLASSES[str(c.verdict)]) for c in comparisons],
                # The very counts compared, so the box can be read against the table below (which counts every call).
                "counted": _decision_counts(report.settled, reports.METRICS[key]),
                "chart": interval_chart(
                    reports.METRICS[key].label,
                    [(row.label, row.rate(key), row.interval(key)) for row in report.settled],
                ),
            }
            for key, comparisons in report.comparisons.items()
        ],
        "min_effect": campaign.min_effect,
        "settled_calls": sum(row.dialled for row in report.settled),
        "digit_keys": digit_keys,
        "digit_rows": [(row.label, [row.digits.get(d, 0) for d in digit_keys]) for row in report.rows],
        "rate_chart": grouped_bar_chart(
            gettext("Rates per variant"),
            [gettext("Answer rate"), gettext("Human rate"), gettext("Listen-through")],
            [(row.label, [row.answer_rate, row.human_rate, row.listen_rate]) for row in report.variants],
            percent=True,
        ),
    }
    return TemplateResponse(request, "admin/campaigns/campaign/report.html", context)


# Calls in the workbook's Calls sheet at most: a bigger campaign's calls are read from the API, page by page.
CALLS_SHEET_LIMIT = 100_000


def report_download(campaign: Campaign, kind: str) -> HttpResponse:
    """The variant table as CSV, or the variants, decisions and heatmap (and with a flow, each call's path) as an
    Excel workbook."""
    report = reports.campaign_report(campaign)
    if kind == "csv":
        return exports.csv_response(reports.export_rows(report), exports.filename(campaign.name, "report.csv"))
    sheets = [
        (pgettext("export sheet", "Variants"), reports.export_rows(report)),
        (pgettext("export sheet", "Decisions"), reports.comparison_rows(report)),
        (pgettext("export sheet", "Hours (callee-local)"), reports.heatmap_rows(reports.heatmap(reports.campaign_attempts(campaign)))),
    ]
    if report.has_flow:  # how far each call went in the flow
        sheets.append((pgettext("export sheet", "Calls"), reports.call_rows(campaign, limit=CALLS_SHEET_LIMIT)))
    return exports.xlsx_response(sheets, exports.filename(campaign.name, "report.xlsx"))


# --- when people answer ----------------------------------------------------------------------------

# Cells with fewer attempts than this are drawn faint: their rate moves too much to read from the colour.
FEW_ATTEMPTS = 30


def _shade(rate: float, low: float, high: float) -> str:
    """Background for a heatmap cell: white at the lowest rate on the map to the admin blue at the highest."""
    share = 0.5 if high <= low else (rate - low) / (high - low)
    white, blue = (255, 255, 255), (65, 118, 144)
    r, g, b = (round(w + (c - w) * share) for w, c in zip(white, blue, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_context(result: reports.Heatmap) -> dict[str, Any]:
    """Rows (weekday) × columns (hour) of cells with text, colour and a tooltip, plus an hour-of-day chart."""
    hours = result.hours
    rates = [b / a for a, b in result.cells.values() if a >= FEW_ATTEMPTS]
    low, high = (min(rates), max(rates)) if rates else (0.0, 1.0)
    grid = []
    for day, (_, day_attempts, day_answered) in enumerate(result.by_weekday()):
        cells = []
        for hour in hours:
            attempts, answered = result.cells.get((day, hour), (0, 0))
            if not attempts:
                title = gettext("%(day)s %(hour)s:00: no attempts") % {"day": WEEKDAYS_ABBR[day], "hour": f"{hour:02d}"}
                cells.append({"text": "", "title": title})
                continue
            rate = answered / attempts
            ci = stats.wilson(answered, attempts)
            cells.append(
                {
                    "text": f"{rate * 100:.0f}",
                    "color": _shade(rate, low, high),
                    "dark": rate > (low + high) / 2 and attempts >= FEW_ATTEMPTS,
                    "few": attempts < FEW_ATTEMPTS,
                    "title": gettext(
                        "%(day)s %(start)s:00–%(end)s:00: %(answered)s of %(attempts)s answered, %(rate)s (95%% CI "
                        "%(interval)s)"
                    )
                    % {
                        "day": WEEKDAYS_ABBR[day],
                        "start": f"{hour:02d}",
                        "end": f"{hour + 1:02d}",
                        "answered": f"{answered:,}",
                        "attempts": f"{attempts:,}",
                        "rate": f"{rate * 100:.1f}%",
                        "interval": reports.format_interval(ci),
                    },
                    "attempts": attempts,
                    "answered": answered,
                }
            )
        grid.append(
            {
                "day": WEEKDAYS_ABBR[day],
                "cells": cells,
                "attempts": day_attempts,
                "rate": reports.format_rate(day_answered / day_attempts if day_attempts else None),
            }
        )
    by_hour = result.by_hour()
    return {
        "hours": hours,
        "grid": grid,
        "hour_totals": [
            {"hour": h, "attempts": a, "rate": reports.format_rate(b / a if a else None)} for h, a, b in by_hour
        ],
        "attempts": result.attempts,
        "answered": result.answered,
        "rate": reports.format_rate(result.answered / result.attempts if result.attempts else None),
        "few_attempts": FEW_ATTEMPTS,
        "hour_chart": grouped_bar_chart(
            gettext("Attempt answer rate by callee-local hour"),
            [gettext("Answer rate")],
            [(f"{h:02d}", [b / a if a else None]) for h, a, b in by_hour],
            percent=True,
            bar_width=16,
        )
        if by_hour
        else None,
    }


def _heatmap_download(request: HttpRequest, result: reports.Heatmap, name: str, stem: str) -> HttpResponse | None:
    """?format=csv or ?format=xlsx: the heatmap as a long table (one row per weekday and hour with attempts)."""
    kind = request.GET.get("format")
    if kind == "csv":
        return exports.csv_response(reports.heatmap_rows(result), exports.filename(name, f"{stem}.csv"))
    if kind == "xlsx":
        sheet = (pgettext("export sheet", "Hours (callee-local)"), reports.heatmap_rows(result))
        return exports.xlsx_response([sheet], exports.filename(name, f"{stem}.xlsx"))
    return None


def heatmap_page(request: HttpRequest, campaign: Campaign, context: dict[str, Any]) -> HttpResponse:
    """Answer rate by callee-local weekday × hour for the campaign, or one variant (?variant=<name>)."""
    variants = list(campaign.variants.order_by("name"))
    chosen = request.GET.get("variant", "")
    variant = next((v for v in variants if v.name == chosen), None)
    if chosen and variant is None:
        raise Http404(f"campaign {campaign} has no variant {chosen!r}")
    result = reports.heatmap(reports.campaign_attempts(campaign, variant))
    download = _heatmap_download(request, result, campaign.name, f"{variant.name}-hours" if variant else "hours")
    if download is not None:
        return download
    context = {
        **context,
        "campaign": campaign,
        "variants": variants,
        "variant": variant,
        **heatmap_context(result),
    }
    return TemplateResponse(request, "admin/campaigns/campaign/heatmap.html", context)


def voices_page(request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
    """Every voice across every campaign that used it: the rates with their 95% intervals."""
    rows = reports.voice_report()
    kind = request.GET.get("format")
    if kind == "csv":
        return exports.csv_response(reports.voice_rows(rows), "voices-report.csv")
    if kind == "xlsx":
        return exports.xlsx_response([(pgettext("export sheet", "Voices"), reports.voice_rows(rows))], "voices-report.xlsx")
    context = {
        **context,
        "headings": _headings(),
        "heading_groups": _heading_groups(),
        "table": _table(rows),
        "chart": interval_chart(
            gettext("Answer rate by voice"), [(row.label, row.answer_rate, row.interval("answer_rate")) for row in rows]
        ),
    }
    return TemplateResponse(request, "admin/voices/voice/report.html", context)


def voice_heatmap_page(request: HttpRequest, voice: Any, context: dict[str, Any]) -> HttpResponse:
    result = reports.heatmap(reports.voice_attempts(voice.pk))
    download = _heatmap_download(request, result, voice.name, "hours")
    if download is not None:
        return download
    context = {**context, "voice": voice, **heatmap_context(result)}
    return TemplateResponse(request, "admin/voices/voice/heatmap.html", context)


def waiting_page(request: HttpRequest, campaign: Campaign, context: dict[str, Any]) -> TemplateResponse:
    """Why the campaign's contacts not yet called are waiting: calls per reason, then a page of calls.

    ?reason=<code> lists only that reason; ?after=<call id> pages on (ids ascending), so no page costs more
    than its hundred rows however large the campaign.
    """
    waiting = Waiting(campaign)
    reason = REASONS_BY_CODE.get(request.GET.get("reason", ""))
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        after = 0
    rows = waiting.page(reason.code if reason else None, after=after, limit=PAGE_SIZE + 1)
    counts = waiting.counts()
    context = {
        **context,
        "campaign": campaign,
        "counts": counts,
        "total": sum(count.calls for count in counts),
        "reason": reason,
        "rows": rows[:PAGE_SIZE],
        "after": after,
        "next_after": rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None,
        "window": waiting.window.describe(),
        "now": waiting.now,
        "time_zone": settings.TIME_ZONE,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/waiting.html", context)
