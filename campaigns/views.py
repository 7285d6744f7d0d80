"""Campaign report pages, served by CampaignAdmin.get_urls behind the admin login.

Charts are SVG drawn on the server: the admin works offline, with no JavaScript or CDN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from campaigns import reports
from campaigns.models import Call, Campaign

REFRESH_SECONDS = 5
# Admin palette: primary blue, light blue, yellow.
SERIES_COLORS = ["#417690", "#79aec8", "#e4b832"]

# (heading, ReportRow attribute or rate property); rates render as percentages.
TABLE_COLUMNS = [
    ("Calls", "calls"),
    ("Pending", "pending"),
    ("Done", "done"),
    ("Attempts", "attempts"),
    ("Dialled", "dialled"),
    ("Answered", "answered"),
    ("Answer rate", "answer_rate"),
    ("Human", "human"),
    ("Human rate", "human_rate"),
    ("Machine", "machine"),
    ("Listened to end", "listened_to_end"),
    ("Listen rate", "listen_rate"),
    ("Opted out", "opted_out"),
    ("Busy", "busy"),
    ("No answer", "no_answer"),
    ("Failed", "failed"),
    ("Excluded (DNC)", "excluded_dnc"),
    ("Invalid script", "invalid"),
]
RATE_COLUMNS = {"answer_rate", "human_rate", "listen_rate"}


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class BarChart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
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


def _cell(row: reports.ReportRow, attribute: str) -> str:
    value = getattr(row, attribute)
    return reports.format_rate(value) if attribute in RATE_COLUMNS else f"{value:,}"


def report_page(request: HttpRequest, campaign: Campaign, context: dict[str, Any]) -> TemplateResponse:
    """The report page; `context` is the admin's (site context, opts) so it renders inside the admin."""
    report = reports.campaign_report(campaign)
    states = reports.progress(campaign)
    state_labels = dict(Call.State.choices)
    hours = reports.hourly(campaign)
    digit_keys = report.digit_keys
    running = campaign.status == Campaign.Status.RUNNING
    context = {
        **context,
        "campaign": campaign,
        "report": report,
        "refresh_seconds": REFRESH_SECONDS if running else None,
        "stalled": reports.stalled_rendering(campaign),
        "progress": [(state_labels[state], count) for state, count in states.items()],
        "done_percent": round(100 * report.total.done / report.total.calls) if report.total.calls else 0,
        "headings": [heading for heading, _ in TABLE_COLUMNS],
        "table": [
            {
                "row": row,
                "is_total": row.variant_id is None,
                "cells": [_cell(row, attribute) for _, attribute in TABLE_COLUMNS],
            }
            for row in report.rows
        ],
        "digit_keys": digit_keys,
        "time_zone": settings.TIME_ZONE,
        "digit_rows": [(row.label, [row.digits.get(d, 0) for d in digit_keys]) for row in report.rows],
        "rate_chart": grouped_bar_chart(
            "Rates per variant",
            ["Answer rate", "Human rate", "Listen rate"],
            [(row.label, [row.answer_rate, row.human_rate, row.listen_rate]) for row in report.variants],
            percent=True,
        ),
        "hour_chart": grouped_bar_chart(
            "Attempts per local hour",
            ["Attempts", "Answered"],
            [(f"{h.hour:02d}", [h.attempts, h.answered]) for h in hours],
            bar_width=12,
        )
        if hours
        else None,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/report.html", context)


def report_csv_download(campaign: Campaign) -> HttpResponse:
    """The report as a CSV attachment; the BOM makes Excel read UTF-8 (Chinese names) correctly."""
    response = HttpResponse("\ufeff" + reports.report_csv(campaign), content_type="text/csv; charset=utf-8")
    filename = f"{slugify(campaign.name, allow_unicode=True) or 'campaign'}-report.csv"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def waiting_page(request: HttpRequest, campaign: Campaign, context: dict[str, Any]) -> TemplateResponse:
    """Why the campaign's contacts not yet called are waiting: calls per reason, then a page of calls.

    ?reason=<code> lists only that reason; ?after=<call id> pages on (ids ascending), so no page costs more
    than its hundred rows however large the campaign.
    """
    from campaigns.waiting import PAGE_SIZE, REASONS_BY_CODE, Waiting

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
