"""The JSON API at /api/v1/, on Django REST framework: reports for BI tools, contact lists for order systems.

Callers send `Authorization: Bearer <token>` (tokens are made in the admin, with the scopes read and/or
write), or use it from a browser where they are logged in to the admin as staff. On top of the scope, the
user needs the model permission each view names (campaigns.view_campaign for the reports). Every figure comes
from campaigns.reports, the same functions the report pages and downloads use.

What every view here shares lives in `ApiView`: errors are `{"error": "..."}` in JSON, answers are never
cached, each token (or staff member) has a rate limit per minute counted in the cache (Redis in production,
so all web processes share it), and every write is recorded in the audit log (ApiAuditEntry).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView, set_rollback

from campaigns import reports, tokens
from campaigns.models import ApiAuditEntry, ApiToken, Call, Campaign, IdempotentRequest

VIEW_PERMISSION = "campaigns.view_campaign"
MISSING_CREDENTIALS = (
    "Missing Authorization header: send 'Authorization: Bearer <token>', or log in to the admin as staff."
)
IDEMPOTENCY_KEY_LENGTH = 255


class _Encoder(DjangoJSONEncoder):
    """Times in the server's zone with their offset (2025-03-03T10:15:00+08:00), to the second."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return timezone.localtime(o).isoformat(timespec="seconds")
        return super().default(o)


def to_json(data: Any) -> str:
    # allow_nan=False: NaN is not JSON, and a BI tool would fail on it far from the cause.
    return json.dumps(data, cls=_Encoder, ensure_ascii=False, allow_nan=False)


class JsonRenderer(BaseRenderer):
    """UTF-8 as is (not \\u escapes), times with their offset, no NaN."""

    media_type = "application/json"
    format = "json"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        return to_json(data).encode()


class JsonOnly(BaseContentNegotiation):
    """Always JSON, whatever Accept says: BI tools and spreadsheets send all sorts."""

    def select_parser(self, request: Request, parsers: list[BaseParser]) -> BaseParser | None:
        content_type = request.content_type.split(";")[0].strip().lower()
        return next((p for p in parsers if p.media_type == content_type), None)

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ):
        return renderers[0], renderers[0].media_type


class BodyTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."


class BoundedJsonParser(BaseParser):
    """JSON bodies up to HERALD_API_MAX_BODY_BYTES; a larger one is refused with 413 before it is read."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        too_large = BodyTooLarge(
            f"The request body is over {limit:,} bytes: send fewer contacts per request."
        )
        request = parser_context["request"]
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > limit:
            raise too_large
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        try:
            return json.loads(raw, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}.") from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class BearerTokenAuthentication(BaseAuthentication):
    """A sent Authorization header decides, even with an admin session: a wrong token is refused (401)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        try:
            token = tokens.check(header)
        except tokens.TokenRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="herald"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A Herald API token, hrld_ and 43 characters.",
        }


class StaffSessionAuthentication(SessionAuthentication):
    """A browser logged in to the admin as active staff; writes need the CSRF token as in the admin."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        user = getattr(request._request, "user", None)
        if user is None or not (user.is_authenticated and user.is_staff and user.is_active):
            return None
        self.enforce_csrf(request)
        return user, None


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = StaffSessionAuthentication
    name = "adminSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


class ScopedPermission(BasePermission):
    """Signed in; a token with the scope the method needs (the view's `scope_for`: read, or write for POST); the
    view's model perms."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated(MISSING_CREDENTIALS)
        scope = view.scope_for(request.method)
        token = request.auth
        if isinstance(token, ApiToken) and scope not in token.scope_set:
            raise exceptions.PermissionDenied(
                f"This token's scopes are '{token.scopes}'; {request.method} needs the '{scope}' scope: "
                "ask an admin for a token with it."
            )
        needed, purpose = view.permissions_for(request.method)
        for permission in needed:
            if not user.has_perm(permission):
                raise exceptions.PermissionDenied(f"This user needs the {permission} permission {purpose}.")
        return True


class RateLimit(BaseThrottle):
    """HERALD_API_RATE_PER_MINUTE requests per token (or per staff member) per clock minute.

    A fixed window counted with the cache's atomic incr: in Redis every web process shares the count.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return True
        who = f"token{request.auth.pk}" if isinstance(request.auth, ApiToken) else f"user{user.pk}"
        now = time.time()
        key = f"api-rate:{who}:{int(now // 60)}"
        cache.add(key, 0, timeout=120)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.set(key, 1, timeout=120)
            count = 1
        self.wait_seconds = 60 - now % 60
        return count <= settings.API_RATE_PER_MINUTE

    def wait(self) -> float:
        return self.wait_seconds


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every refusal as `{"error": "..."}` (and `fields` for invalid bodies), with its status and headers."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Permission denied.")
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    wait = getattr(exc, "wait", None)  # Throttled, or an ApiError that says when to come back
    if wait is not None:
        headers["Retry-After"] = str(math.ceil(wait))
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            body: dict[str, Any] = {"error": _first_error(detail), "fields": detail}
        else:
            body = {"error": _first_error(detail)}
    else:
        body = {"error": str(exc.detail)}
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def _first_error(detail: Any, where: str = "") -> str:
    """The first message of a DRF error tree, with the field it is about: 'name: This field is required.'"""
    if isinstance(detail, dict):
        for name, inner in detail.items():
            return _first_error(inner, f"{where}.{name}" if where else str(name))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], where)
    return f"{where}: {detail}" if where else str(detail)


class ApiError(exceptions.APIException):
    """A request the API cannot answer, with the status and the words to send back."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status
        self.wait = retry_after  # seconds, sent as Retry-After


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


ERRORS = {status: ErrorSerializer for status in (400, 401, 403, 404, 429)}


class ApiView(APIView):
    """What every API view shares; a subclass sets http_method_names and `permissions` per method."""

    authentication_classes = [BearerTokenAuthentication, StaffSessionAuthentication]
    permission_classes = [ScopedPermission]
    throttle_classes = [RateLimit]
    renderer_classes = [JsonRenderer]
    parser_classes = [BoundedJsonParser]
    content_negotiation_class = JsonOnly
    # method -> (permissions needed, what for, in words)
    permissions: dict[str, tuple[list[str], str]] = {"GET": ([VIEW_PERMISSION], "to read reports")}

    # method -> the token scope it needs, where that is not the rule (read for GET, write for the rest)
    scopes: dict[str, str] = {}

    def permissions_for(self, method: str) -> tuple[list[str], str]:
        return self.permissions.get("GET" if method == "HEAD" else method, ([], ""))

    def scope_for(self, method: str) -> str:
        default = ApiToken.Scope.READ if method in SAFE_METHODS else ApiToken.Scope.WRITE
        return self.scopes.get(method, default)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A method this URL does not have is 405 before anything else: no CSRF page, no 401 for it.
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            allowed = ", ".join(self.allowed_methods)
            raise exceptions.MethodNotAllowed(
                request.method, detail=f"{request.method} is not allowed here: use {allowed}."
            )
        super().initial(request, *args, **kwargs)

    def throttled(self, request: Request, wait: float | None) -> None:
        wait = wait or 1
        raise exceptions.Throttled(
            wait,
            detail=f"Too many requests: {settings.API_RATE_PER_MINUTE} a minute per token; "
            f"try again in {math.ceil(wait)} s.",
        )

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        if request.method not in SAFE_METHODS:
            self._audit(request, response)
        return response

    def _audit(self, request: Request, response: Any) -> None:
        user = request.__dict__.get("_user")  # only who authentication already found; never authenticate here
        if user is None or not user.is_authenticated:
            return
        token = request.__dict__.get("_auth")
        ApiAuditEntry.objects.create(
            token=token if isinstance(token, ApiToken) else None,
            user=user,
            method=request.method,
            path=request.get_full_path()[:300],
            status=response.status_code,
            object_ids=list(getattr(self, "audit_ids", []))[:100],
            summary=getattr(self, "audit_summary", "")[:300],
            replayed=response.get("Idempotent-Replayed") == "true",
        )


View = Callable[..., Response]


def idempotent(handler: View) -> View:
    """Writes sent with an `Idempotency-Key` header answer once: the same key with the same request gets the
    first answer again (marked `Idempotent-Replayed: true`), with another request 422.

    The answer is stored in the same transaction as the write, so a write is never stored without its answer;
    two concurrent requests with one key race on a unique row, and the loser replays the winner's answer.
    """

    @wraps(handler)
    def wrapper(self: ApiView, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        if key is None:
            return handler(self, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            raise ApiError(
                400,
                f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH} printable characters, e.g. a UUID.",
            )
        body = json.dumps(request.data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        fingerprint = hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()
        stored = IdempotentRequest.objects.filter(user=request.user, key=key).first()
        if stored is not None:
            return _replay(stored, fingerprint)
        try:
            with transaction.atomic():
                response = handler(self, request, *args, **kwargs)
                if response.status_code < 500:
                    IdempotentRequest.objects.create(
                        user=request.user,
                        key=key,
                        method=request.method,
                        path=request.path[:300],
                        fingerprint=fingerprint,
                        status=response.status_code,
                        response=json.loads(to_json(response.data)),
                    )
        except IntegrityError:
            stored = IdempotentRequest.objects.filter(user=request.user, key=key).first()
            if stored is None:
                raise
            self.audit_ids, self.audit_summary = [], ""
            return _replay(stored, fingerprint)
        return response

    return wrapper


def _replay(stored: IdempotentRequest, fingerprint: str) -> Response:
    if stored.fingerprint != fingerprint:
        raise ApiError(
            422,
            f"This Idempotency-Key was first used at {timezone.localtime(stored.created_at):%Y-%m-%d %H:%M:%S} "
            f"for a different request ({stored.method} {stored.path} with another body); "
            "use a new key for a new request.",
        )
    return Response(stored.response, status=stored.status, headers={"Idempotent-Replayed": "true"})


@csrf_exempt  # nothing here to protect: a POST to a wrong URL gets the same 404
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """A URL under /api/v1/ that is none of the API's."""
    body = to_json(
        {"error": f"No such API URL: {request.path}. The API is described at {reverse('api:docs')}."}
    )
    return HttpResponse(body, status=404, content_type="application/json; charset=utf-8")


# --- reports, read-only ------------------------------------------------------------------------------


class ReportView(ApiView):
    http_method_names = ["get", "head"]


def campaign_or_404(campaign_id: int) -> Campaign:
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise ApiError(404, f"No campaign with id {campaign_id}.")
    return campaign


def _table(header: list[str], rows: list[list[object]]) -> list[dict[str, object]]:
    return [dict(zip(header, row, strict=True)) for row in rows]


STATUS_PARAMETER = OpenApiParameter(
    "status", str, enum=Campaign.Status.values, description="Only this status."
)


class CampaignsView(ReportView):
    @extend_schema(parameters=[STATUS_PARAMETER], responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request) -> Response:
        """Every campaign with its headline figures, oldest first; ?status=running for one status."""
        queryset = Campaign.objects.order_by("pk")
        status = request.GET.get("status")
        if status is not None:
            if status not in Campaign.Status.values:
                choices = ", ".join(Campaign.Status.values)
                raise ApiError(400, f"Unknown status {status!r}: use one of {choices}.")
            queryset = queryset.filter(status=status)
        return Response(
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


class CampaignReportView(ReportView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request, campaign_id: int) -> Response:
        """The campaign row, one row per variant and the A/B decisions: the report page as data."""
        campaign = campaign_or_404(campaign_id)
        report = reports.campaign_report(campaign)
        flow = report.has_flow
        data: dict[str, Any] = {
            "campaign": {
                "id": campaign.pk,
                "name": campaign.name,
                "status": campaign.status,
                "confirm_digit": campaign.confirm_digit,
                "reschedule_digit": campaign.reschedule_digit,
                "min_effect_points": campaign.min_effect,
            },
            "generated_at": timezone.now(),
            "total": reports.row_record(report.total, flow=flow),
            "variants": [
                {
                    "variant": row.label,
                    "voice": row.voice,
                    "script": row.script,
                    "weight": row.weight,
                    **reports.row_record(row, flow=flow),
                }
                for row in report.variants
            ],
            # The decisions are made on finished calls only (no retry to come); these are their counts.
            "finished_variants": [
                {"variant": row.label, **reports.row_record(row, flow=flow)} for row in report.settled
            ],
            "decisions": _table(*reports.comparison_rows(report)),
            "sample_ratio_p": report.sample_ratio_p,
            "split_is_off": report.split_is_off,
        }
        if flow:
            # With a flow, "confirmed" and "rescheduled" count final actions, and every row has "actions".
            data["campaign"]["flow"] = campaign.flow.name
            # Answered by a person -> reached the menu -> each final action; the campaign row (variant None) first.
            data["funnel"] = [
                {
                    "variant": row.label if row.variant_id else None,
                    "human": row.human,
                    "reached_menu": row.listened_to_end,
                    **{step.action: step.calls for step in row.funnel},
                }
                for row in report.rows
            ]
        return Response(data)


CALLS_PAGE = 1000  # calls per page at most (?limit=)


def _positive_int(request: Request, name: str, default: int) -> int:
    value = request.GET.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise ApiError(400, f"{name}={value!r} is not a whole number: send e.g. ?{name}={default}.")
    return int(value)


EXTERNAL_ID = OpenApiParameter(
    "external_id", str, description="Only the calls of the contact with this external_id (e.g. the order number)."
)
CALLS_BY_EXTERNAL_ID = 100  # calls one lookup returns: an order is called by a campaign or a few, not more


def _external_id(request: Request) -> str | None:
    value = request.GET.get("external_id")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 100:
        raise ApiError(400, "external_id must be 1 to 100 characters.")
    return value


class CampaignCallsView(ReportView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="The last call id of the previous page."),
            OpenApiParameter("limit", int, description=f"Calls a page, 1 to {CALLS_PAGE}."),
            EXTERNAL_ID,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        """Every call of a campaign by id, a page at a time (?after=<last call id>, ?limit=), with its final keys,
        final action and the path of the attempt that ended so ("message>2>2.1"), and the slot chosen;
        ?external_id= for the calls of one contact of the order system."""
        campaign = campaign_or_404(campaign_id)
        after = _positive_int(request, "after", 0)
        limit = _positive_int(request, "limit", CALLS_PAGE)
        if not 1 <= limit <= CALLS_PAGE:
            raise ApiError(400, f"limit={limit} is out of range: ask for 1 to {CALLS_PAGE} calls a page.")
        calls_qs = reports.campaign_calls(campaign).filter(pk__gt=after)
        external_id = _external_id(request)
        if external_id is not None:
            calls_qs = calls_qs.filter(contact__external_id=external_id)
        calls = [reports.call_record(c) for c in calls_qs[: limit + 1]]
        more = len(calls) > limit
        calls = calls[:limit]
        next_url = None
        if more:
            params = {"after": calls[-1]["call_id"], "limit": limit}
            if external_id is not None:
                params["external_id"] = external_id
            next_url = request.build_absolute_uri(
                f"{reverse('api:campaign-calls', args=[campaign.pk])}?{urlencode(params)}"
            )
        return Response({"calls": calls, "next": next_url})


class CallsView(ReportView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "external_id", str, required=True, description="The contact's external_id (e.g. the order number)."
            )
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        """The calls of one order system contact in every campaign, newest first (at most 100): campaign, state,
        attempts, outcome, keys, the flow's path and final action, the slot chosen."""
        external_id = _external_id(request)
        if external_id is None:
            raise ApiError(400, "Say whose calls: ?external_id=<the contact's external_id>.")
        calls = reports.calls_with_flow_facts(
            Call.objects.filter(contact__external_id=external_id)
            .select_related("variant", "contact", "campaign")
            .order_by("-pk")
        )[:CALLS_BY_EXTERNAL_ID]
        return Response(
            {
                "calls": [
                    {"campaign_id": c.campaign_id, "campaign": c.campaign.name, **reports.call_record(c)} for c in calls
                ]
            }
        )


class CampaignHeatmapView(ReportView):
    @extend_schema(
        parameters=[OpenApiParameter("variant", str, description="Only this variant, by name.")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, campaign_id: int) -> Response:
        """Attempts and answers by callee-local weekday and hour; ?variant=<name> for one variant."""
        campaign = campaign_or_404(campaign_id)
        variant = None
        name = request.GET.get("variant")
        if name is not None:
            variants = {v.name: v for v in campaign.variants.order_by("name")}
            variant = variants.get(name)
            if variant is None:
                known = ", ".join(variants) or "none"
                raise ApiError(400, f"Unknown variant {name!r} in this campaign: its variants are {known}.")
        heatmap = reports.heatmap(reports.campaign_attempts(campaign, variant))
        return Response({"time_basis": "callee-local", "cells": _table(*reports.heatmap_rows(heatmap))})


class VoicesView(ReportView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    def get(self, request: Request) -> Response:
        """One row per voice over every campaign that used it, busiest first."""
        return Response({"voices": _table(*reports.voice_rows(reports.voice_report()))})
