"""schemathesis against the API's own OpenAPI schema: no 5xx, every answer's status, content type and body as the
schema says. Bounded: a few examples per operation, on SQLite and PostgreSQL (run with DATABASE_URL)."""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import Permission, User
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from campaigns import tokens
from campaigns.models import ContactList
from herald.wsgi import application
from tests.campaigns.test_reports import build_report_campaign

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Loaded once, at collection: the schema view needs no database. (schemathesis.pytest.from_fixture would load it
# per test, but this schemathesis release does not run on pytest 9: it renames a private pytest attribute.)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application)


@pytest.fixture
def in_transaction(db):
    """Requests go straight to the WSGI app, in the test's transaction: keep Django from closing the connection
    at each request's start and end (as its own test client does)."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def writer(in_transaction) -> str:
    user = User.objects.create_user("shop")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="campaigns"))
    build_report_campaign()
    ContactList.objects.create(name="Tomorrow")
    return tokens.create_token(name="Shop", user=user, scopes=["read", "write"])[1]


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case, writer, settings):
    settings.API_RATE_PER_MINUTE = 100_000
    case.call_and_validate(headers={"Authorization": f"Bearer {writer}"}, checks=CHECKS)
