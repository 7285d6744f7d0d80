"""The OpenAPI 3 schema (drf-spectacular) and a page that shows it, with nothing fetched from a CDN.

Swagger UI and Redoc are JavaScript bundles normally loaded from a CDN; Herald runs offline, so the page here
is a small one of our own that reads the schema from /api/v1/schema and lists each operation with its
parameters, body and answers.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny


class SchemaView(SpectacularAPIView):
    """The schema is public: it describes the API, it holds no data (every operation still needs a token)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]


def docs(request: HttpRequest) -> HttpResponse:
    """The API reference page, rendered in the browser from the schema."""
    return TemplateResponse(request, "api/docs.html", {"schema_url": reverse("api:schema") + "?format=json"})
