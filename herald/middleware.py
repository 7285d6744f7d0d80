"""Each staff member sees the admin in their own language (admin → Language; campaigns.StaffPreference), else
in settings.LANGUAGE_CODE. Nothing is read from the browser: two people on one shared screen see each their own."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation

from campaigns.models import StaffPreference


class UserLanguageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        language = None
        if user is not None and user.is_authenticated and user.is_staff:
            language = StaffPreference.objects.filter(user=user).values_list("language", flat=True).first()
        if not language:
            return self.get_response(request)
        with translation.override(language):
            request.LANGUAGE_CODE = translation.get_language()
            response = self.get_response(request)
            response.headers.setdefault("Content-Language", language)
            return response
