"""The admin's live view: the dashboard (what runs now, what happened today) and one call's log.

Every figure is an aggregate count over an indexed column: campaigns' calls by (campaign, state), calls on the
line by state, renders by state, today's attempts by ended_at. Nothing loops over calls in Python, so the
page and its JSON stay cheap at millions of calls. "Today" is the admin's time zone (the active one).
Phone numbers are masked unless the user holds campaigns.view_full_number; logs stay masked regardless.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.contrib import admin
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from campaigns import callflow, workers
from campaigns.models import Call, CallAttempt, CallClip, Campaign, VariantClip
from campaigns.policy import INVALID_NUMBER_CODES
from campaigns.reports import FUNNEL_ACTIONS
from herald.logmask import mask_phone
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url

REFRESH_SECONDS = 5
ACTIVE = (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED, Campaign.Status.PAUSED)
CAMPAIGNS_SHOWN = 50
RECENT_SHOWN = 15
FINISHED_STATES = (Call.State.DONE, Call.State.FAILED, Call.State.CANCELLED, Call.State.INVALID)
ON_THE_LINE = (Call.State.DIALING, Call.State.IN_PROGRESS)
AUDIO_URL_TTL = 3600  # the call log's listen links: long enough to read the page, short enough not to be shared
FULL_NUMBER_PERMISSION = "campaigns.view_full_number"

S = CallAttempt.Status
# policy.outcome_of's rules, in SQL: an ended attempt counts under the outcome it gave its call.
_OPTED_OUT = Q(action=callflow.OPTED_OUT) | (
    Q(call__campaign__flow__isnull=True, digits=F("call__campaign__opt_out_digit")) & ~Q(digits="")
)
_MACHINE = Q(answered_by__startswith="machine") | Q(answered_by="fax")
_INVALID = Q(status__in=[S.FAILED, S.BUSY, S.NO_ANSWER], error_code__in=sorted(INVALID_NUMBER_CODES))
OUTCOME_FILTERS: dict[str, Q] = {
    "answered": ~_OPTED_OUT & Q(status=S.COMPLETED) & ~_MACHINE,
    "machine": ~_OPTED_OUT & Q(status=S.COMPLETED) & _MACHINE,
    "busy": ~_OPTED_OUT & ~_INVALID & Q(status=S.BUSY),
    "no_answer": ~_OPTED_OUT & ~_INVALID & Q(status=S.NO_ANSWER),
    "failed": ~_OPTED_OUT & ~_INVALID & ~Q(status__in=[S.COMPLETED, S.BUSY, S.NO_ANSWER]),
    "opted_out": _OPTED_OUT,
    "invalid_number": ~_OPTED_OUT & _INVALID,
}
OUTCOME_LABELS = {
    "answered": gettext_lazy("Answered"), "machine": gettext_lazy("Answering machine"), "busy": gettext_lazy("Busy"),
    "no_answer": gettext_lazy("No answer"), "failed": gettext_lazy("Failed"), "opted_out": gettext_lazy("Opted out"),
    "invalid_number": gettext_lazy("Invalid number"),
}  # fmt: skip


def shows_full_numbers(user: AbstractBaseUser) -> bool:
    return user.has_perm(FULL_NUMBER_PERMISSION)


def phone_for(user: AbstractBaseUser, phone: str) -> str:
    """The number as this user may see it: in full with campaigns.view_full_number, masked otherwise."""
    return phone if shows_full_numbers(user) else mask_phone(phone)


def today_start(now: datetime) -> datetime:
    """Midnight of today in the active (admin's) time zone."""
    local = timezone.localtime(now)
    return datetime.combine(local.date(), time.min, tzinfo=local.tzinfo)


def _local(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def figures(user: AbstractBaseUser, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, JSON-ready (numbers masked unless the user may see them)."""
    now = now or timezone.now()
    start = today_start(now)

    campaigns = list(
        Campaign.objects.filter(status__in=ACTIVE).order_by("status", "name").values("id", "name", "status")[
            :CAMPAIGNS_SHOWN
        ]
    )
    by_campaign: dict[int, dict[str, int]] = {c["id"]: {} for c in campaigns}
    rows = Call.objects.filter(campaign_id__in=list(by_campaign)).values_list("campaign_id", "state")
    for campaign_id, state, n in rows.annotate(n=Count("pk")).order_by():
        by_campaign[campaign_id][state] = n
    for campaign in campaigns:
        states = by_campaign[campaign["id"]]
        campaign["total"] = sum(states.values())
        campaign["finished"] = sum(states.get(s, 0) for s in FINISHED_STATES)
        campaign["by_state"] = {s: states[s] for s in Call.State.values if states.get(s)}
        # The words shown, in the reader's language; the codes above stay for scripts reading the JSON.
        campaign["status_label"] = str(Campaign.Status(campaign["status"]).label)
        campaign["states_shown"] = " · ".join(f"{Call.State(s).label} {n}" for s, n in campaign["by_state"].items())
        campaign["url"] = reverse("admin:campaigns_campaign_change", args=[campaign["id"]])
        campaign["report_url"] = reverse("admin:campaigns_campaign_report", args=[campaign["id"]])

    line = dict(
        Call.objects.filter(state__in=ON_THE_LINE).values_list("state").annotate(n=Count("pk")).order_by()
    )
    renders = dict(
        RenderedAudio.objects.filter(
            state__in=[RenderedAudio.State.PENDING, RenderedAudio.State.RENDERING, RenderedAudio.State.FAILED]
        )
        .values_list("state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    ended_today = CallAttempt.objects.filter(ended_at__gte=start, ended_at__lte=now)
    outcomes = ended_today.aggregate(
        **{name: Count("pk", filter=condition) for name, condition in OUTCOME_FILTERS.items()}
    )
    actions = dict(
        ended_today.exclude(action="").values_list("action").annotate(n=Count("pk")).order_by("action")
    )

    full = shows_full_numbers(user)
    show = (lambda phone: phone) if full else mask_phone
    recent = [
        {
            "call": a.call_id,
            "attempt": a.number,
            "phone": show(a.call.phone),
            "campaign": a.call.campaign.name,
            "status": a.status,
            "status_label": a.get_status_display(),
            "action": a.action,
            "action_label": action_label(a.action),
            "ended_at": _local(a.ended_at),
            "log_url": reverse("admin:campaigns_call_log", args=[a.call_id]),
        }
        for a in CallAttempt.objects.filter(ended_at__isnull=False)
        .select_related("call__campaign")
        .order_by("-ended_at")[:RECENT_SHOWN]
    ]
    stalled = [
        {"name": w.name, "queues": w.queues, "pid": w.pid, "seen_at": _local(w.seen_at), "held": len(w.held)}
        for w in workers.stalled(now)
    ]
    return {
        "as_of": _local(now),
        "time_zone": timezone.get_current_timezone_name(),
        "refresh_seconds": REFRESH_SECONDS,
        "campaigns": campaigns,
        "on_the_line": {
            "dialing": line.get(Call.State.DIALING, 0),
            "in_progress": line.get(Call.State.IN_PROGRESS, 0),
            "total": sum(line.values()),
        },
        "renders": {state: renders.get(state, 0) for state in ("pending", "rendering", "failed")},
        "stalled_workers": stalled,
        "outcomes_today": outcomes,
        "actions_today": actions,
        "actions_shown": [[action, action_label(action), n] for action, n in actions.items()],  # the page's rows
        "recent": recent,
        "full_numbers": full,
    }


def action_label(action: str) -> str:
    """A flow's final action in the reader's language ("confirmed" -> "Confirmed"); "" stays ""."""
    return str(FUNNEL_ACTIONS.get(action, action))


def _clip(name: str, render_key: str | None, state: str | None) -> dict[str, Any]:
    ready = render_key is not None and state == RenderedAudio.State.READY
    return {
        "name": name,
        "render_key": (render_key or "")[:12],
        "state": state or "missing",
        "url": signed_audio_url(render_key, ttl=AUDIO_URL_TTL) if ready and render_key else "",
    }


def call_log(call: Call, user: AbstractBaseUser) -> dict[str, Any]:
    """One call's story for its log page: its audio, and each attempt's timeline, path, keys and errors."""
    clips = []
    if call.audio_id:
        clips.append(_clip("message", call.audio_id, call.audio.state))
    if call.voicemail_audio_id:
        clips.append(_clip("voicemail", call.voicemail_audio_id, call.voicemail_audio.state))
    for name, key, state in (
        CallClip.objects.filter(call=call).order_by("name").values_list("name", "audio_id", "audio__state")
    ):
        clips.append(_clip(name, key, state))
    for name, key, state in (
        VariantClip.objects.filter(variant_id=call.variant_id)
        .order_by("name")
        .values_list("name", "audio_id", "audio__state")
    ):
        if name != "message" or not call.audio_id:
            clips.append(_clip(name, key, state))

    attempts = []
    for attempt in call.attempts.order_by("number"):
        marks = []
        for entry in attempt.timeline:
            if not (isinstance(entry, list | tuple) and len(entry) >= 2):
                continue
            marks.append({"status": str(entry[0]), "at": _mark_time(entry[1])})
        attempts.append(
            {
                "number": attempt.number,
                "status": attempt.status,
                "provider": attempt.provider,
                "answered_by": attempt.answered_by,
                "duration": attempt.duration,
                "digits": attempt.digits,
                "path": [str(node) for node in attempt.path] if isinstance(attempt.path, list) else [],
                "action": attempt.action,
                "action_detail": attempt.action_detail,
                "error": " ".join(p for p in (attempt.error_code, attempt.error_message) if p),
                "placed_at": _local(attempt.placed_at),
                "answered_at": _local(attempt.answered_at),
                "ended_at": _local(attempt.ended_at),
                "marks": marks,
            }
        )
    return {
        "call": call,
        "phone": phone_for(user, call.phone),
        "full_numbers": shows_full_numbers(user),
        "clips": clips,
        "attempts": attempts,
        "time_zone": timezone.get_current_timezone_name(),
    }


def _mark_time(value: Any) -> str:
    """A timeline mark's ISO time in the admin's time zone (left as written when it is not a time)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if timezone.is_naive(parsed):
        return str(value)
    return _local(parsed)


# --- pages (the admin wraps them: staff only, see herald/urls.py and CallAdmin.get_urls) ----------------


def _require_view(request: HttpRequest) -> None:
    if not (request.user.has_perm("campaigns.view_campaign") and request.user.has_perm("campaigns.view_call")):
        raise PermissionDenied


def dashboard_page(request: HttpRequest) -> TemplateResponse:
    """The live view: the page renders the figures once, then its script fetches dashboard_json."""
    _require_view(request)
    shown = figures(request.user)
    context = {
        **admin.site.each_context(request),
        "title": gettext_lazy("Dashboard"),
        "figures": shown,
        "outcome_tiles": [(key, label, shown["outcomes_today"][key]) for key, label in OUTCOME_LABELS.items()],
    }
    return TemplateResponse(request, "admin/campaigns/dashboard.html", context)


def dashboard_json(request: HttpRequest) -> JsonResponse:
    _require_view(request)
    response = JsonResponse(figures(request.user))
    response["Cache-Control"] = "no-store"
    return response


def call_log_page(request: HttpRequest, call: Call, context: dict[str, Any]) -> TemplateResponse:
    """One call's log; `context` is the admin's (site context, opts) so it renders inside the admin."""
    context = {**context, **call_log(call, request.user), "title": gettext("Log of call %(id)s") % {"id": call.pk}}
    return TemplateResponse(request, "admin/campaigns/call/log.html", context)
