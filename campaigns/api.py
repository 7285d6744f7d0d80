"""A read-only JSON API over the reports, for BI tools (Metabase, Excel Power Query, scripts).

Callers send `Authorization: Bearer <token>` (tokens are made in the admin), or open a URL in a browser where
they are logged in to the admin as staff. Either way the user needs the campaigns.view_campaign permission.
Every figure comes from campaigns.reports, the same functions the report pages and downloads use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from campaigns import reports, tokens
from campaigns.models import Campaign

VIEW_PERMISSION = "campaigns.view_campaign"

View = Callable[..., HttpResponse]


class _Encoder(DjangoJSONEncoder):
    """Times in the server's zone with their offset (2025-03-03T10:15:00+08:00), to the second."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return timezone.localtime(o).isoformat(timespec="seconds")
        return super().default(o)


def _json(data: dict[str, Any], status: int = 200) -> HttpResponse:
    # allow_nan=False: NaN is not JSON, and a BI tool would fail on it far from the cause.
    body = json.dumps(data, cls=_Encoder, ensure_ascii=False, allow_nan=False)
    response = HttpResponse(body, status=status, content_type="application/json; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str) -> HttpResponse:
    return _json({"error": message}, status=status)


class ApiError(Exception):
    """A request the API cannot answer, with the status and the words to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """Who is asking: the token's user when a header is sent, else a logged-in staff member."""
    header = request.headers.get("Authorization")
    if header is not None:
        return tokens.check(header).user
    if request.user.is_authenticated and request.user.is_staff and request.user.is_active:
        return request.user
    raise tokens.TokenRefused(
        "Missing Authorization header: send 'Authorization: Bearer <token>', or log in to the admin as staff."
    )


def api_view(view: View) -> View:
    """GET/HEAD only, authenticated, with campaigns.view_campaign; errors as JSON."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            user = _user(request)
        except tokens.TokenRefused as refused:
            response = _error(401, str(refused))
            response["WWW-Authenticate"] = 'Bearer realm="herald"'
            return response
        if not user.has_perm(VIEW_PERMISSION):
            return _error(403, f"This user needs the {VIEW_PERMISSION} permission to read reports.")
        try:
            return view(request, *args, **kwargs)
        except ApiError as error:
            return _error(error.status, str(error))

    # Nothing here writes, so there is nothing for CSRF to protect; exempt, a POST gets a plain 405 rather
    # than the CSRF failure page.
    return csrf_exempt(require_safe(wrapper))


def _campaign(campaign_id: int) -> Campaign:
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise ApiError(404, f"No campaign with id {campaign_id}.")
    return campaign


def _table(header: list[str], rows: list[list[object]]) -> list[dict[str, object]]:
    return [dict(zip(header, row, strict=True)) for row in rows]


@api_view
def campaigns(request: HttpRequest) -> HttpResponse:
    """Every campaign with its headline figures, oldest first; ?status=running for one status."""
    queryset = Campaign.objects.order_by("pk")
    status = request.GET.get("status")
    if status is not None:
        if status not in Campaign.Status.values:
            choices = ", ".join(Campaign.Status.values)
            raise ApiError(400, f"Unknown status {status!r}: use one of {choices}.")
        queryset = queryset.filter(status=status)
    return _json(
        {
            "campaigns": [
                {
                    "id": c.pk,
                    "name": c.name,
                    "status": c.status,
                    "launched_at": c.launched_at,
                    "finished_at": c.finished_at,
                    "calls": c.summary_calls,
                    "done": c.summary_done,
                    "dialled": c.summary_dialled,
                    "answered": c.summary_answered,
                    "answer_rate": c.summary_answered / c.summary_dialled if c.summary_dialled else None,
                    "report": request.build_absolute_uri(reverse("api:campaign-report", args=[c.pk])),
                }
                for c in reports.with_summary(queryset)
            ]
        }
    )


@api_view
def campaign_report(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign row, one row per variant and the A/B decisions: the report page as data."""
    campaign = _campaign(campaign_id)
    report = reports.campaign_report(campaign)
    return _json(
        {
            "campaign": {
                "id": campaign.pk,
                "name": campaign.name,
                "status": campaign.status,
                "confirm_digit": campaign.confirm_digit,
                "reschedule_digit": campaign.reschedule_digit,
                "min_effect_points": campaign.min_effect,
            },
            "generated_at": timezone.now(),
            "total": reports.row_record(report.total),
            "variants": [
                {
                    "variant": row.label,
                    "voice": row.voice,
                    "script": row.script,
                    "weight": row.weight,
                    **reports.row_record(row),
                }
                for row in report.variants
            ],
            # The decisions are made on finished calls only (no retry to come); these are their counts.
            "finished_variants": [{"variant": row.label, **reports.row_record(row)} for row in report.settled],
            "decisions": _table(*reports.comparison_rows(report)),
            "sample_ratio_p": report.sample_ratio_p,
            "split_is_off": report.split_is_off,
        }
    )


@api_view
def campaign_heatmap(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Attempts and answers by callee-local weekday and hour; ?variant=<name> for one variant."""
    campaign = _campaign(campaign_id)
    variant = None
    name = request.GET.get("variant")
    if name is not None:
        variants = {v.name: v for v in campaign.variants.order_by("name")}
        variant = variants.get(name)
        if variant is None:
            known = ", ".join(variants) or "none"
            raise ApiError(400, f"Unknown variant {name!r} in this campaign: its variants are {known}.")
    heatmap = reports.heatmap(reports.campaign_attempts(campaign, variant))
    return _json({"time_basis": "callee-local", "cells": _table(*reports.heatmap_rows(heatmap))})


@api_view
def voices(request: HttpRequest) -> HttpResponse:
    """One row per voice over every campaign that used it, busiest first."""
    return _json({"voices": _table(*reports.voice_rows(reports.voice_report()))})
