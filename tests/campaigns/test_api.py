"""The read-only report API and its tokens, as a BI tool and the admin use them, on a real database."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import campaigns.admin_tokens  # noqa: F401  (registers the ApiToken admin until campaigns.admin imports it)
from campaigns import reports, tokens
from campaigns.lifecycle import rebuild_call_facts
from campaigns.models import ApiToken, CallAttempt, Campaign
from tests.campaigns.direct_sql import heatmap_counts, variant_counts
from tests.campaigns.test_reports import build_report_campaign

TOKEN_RE = re.compile(r"hrld_[A-Za-z0-9_-]{43}")
COUNTED = ["calls", "attempts", "dialled", "answered", "human", "listened_to_end", "opted_out", "confirmed",
           "rescheduled"]  # fmt: skip


def make_user(username: str, *, staff: bool = False, can_view: bool = True, active: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=staff, is_active=active)
    if can_view:
        user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    return user


def bearer(plain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plain}"}


@pytest.fixture
def campaign(db) -> Campaign:
    campaign = build_report_campaign()
    # Talk time on every answered attempt, different each time, so mean duration is checked for real.
    answered = CallAttempt.objects.filter(call__campaign=campaign, status=CallAttempt.Status.COMPLETED)
    for seconds, attempt in enumerate(answered.order_by("pk"), start=7):
        attempt.duration = seconds * 3
        attempt.save(update_fields=["duration"])
    rebuild_call_facts(campaign.calls.all())
    return campaign


@pytest.fixture
def analyst(db) -> User:
    """A staff member who may view campaigns, nothing more."""
    return make_user("analyst", staff=True)


@pytest.fixture
def plain_token(analyst) -> str:
    return tokens.create_token(name="Metabase", user=analyst)[1]


def get(client: Client, name: str, *args, plain: str | None = None, **params):
    headers = bearer(plain) if plain else {}
    return client.get(reverse(f"api:{name}", args=args), params, headers=headers)


def assert_refused(response, words: str, *secrets: str) -> None:
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="herald"'
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert words in response.json()["error"]
    shown = response.content.decode() + "".join(f"{k}: {v}" for k, v in response.items())
    for secret in secrets:
        assert secret not in shown


# --- who may ask ------------------------------------------------------------------------------------


def test_no_credentials_is_401(client, campaign):
    assert_refused(get(client, "campaigns"), "Missing Authorization header")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic {plain}", "Token {plain}", "{plain}", "Bearer {plain}x", "Bearer hrld_short",
     "Bearer {plain} extra"],
)  # fmt: skip
def test_malformed_header_is_401(client, plain_token, header):
    headers = {"Authorization": header.format(plain=plain_token)}
    response = client.get(reverse("api:campaigns"), headers=headers)
    assert_refused(response, "Malformed Authorization header", plain_token, plain_token[12:])


def test_unknown_token_is_401(client, plain_token):
    unknown = "hrld_" + "A" * 43
    assert_refused(get(client, "campaigns", plain=unknown), "Unknown token", unknown)


def test_revoked_token_is_401(client, analyst):
    token, plain = tokens.create_token(name="Old sheet", user=analyst)
    assert tokens.revoke(token) is True
    assert tokens.revoke(token) is False  # already revoked
    assert_refused(get(client, "campaigns", plain=plain), "revoked", plain, plain[12:])


def test_token_of_an_inactive_user_is_401(client, analyst, plain_token):
    analyst.is_active = False
    analyst.save()
    assert_refused(get(client, "campaigns", plain=plain_token), "inactive", plain_token)


def test_token_of_a_user_who_may_not_view_campaigns_is_403(client, db):
    plain = tokens.create_token(name="Too little", user=make_user("nobody", staff=True, can_view=False))[1]
    response = get(client, "campaigns", plain=plain)
    assert response.status_code == 403
    assert "campaigns.view_campaign" in response.json()["error"]


def test_token_with_view_permission_is_200(client, campaign, plain_token):
    response = get(client, "campaigns", plain=plain_token)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Cache-Control"] == "no-store"


def test_a_service_user_needs_the_permission_not_staff(client, campaign):
    """A Metabase user that cannot log in to the admin is the least a BI tool needs."""
    plain = tokens.create_token(name="Metabase", user=make_user("metabase"))[1]
    assert get(client, "campaigns", plain=plain).status_code == 200


def test_scheme_is_case_insensitive(plain_token):
    assert tokens.check(f"bearer {plain_token}") is not None
    assert tokens.check(f"BEARER  {plain_token} ") is not None
    for refused in ("", f"Basic {plain_token}"):
        with pytest.raises(tokens.TokenRefused):
            tokens.check(refused)


def test_logged_in_staff_session_is_200(client, campaign, analyst):
    client.force_login(analyst)
    assert get(client, "campaigns").status_code == 200
    assert get(client, "campaign-report", campaign.pk).status_code == 200


def test_session_needs_staff_and_the_permission(client, campaign, db):
    client.force_login(make_user("customer"))  # may view, but is no staff member
    assert_refused(get(client, "campaigns"), "Missing Authorization header")
    client.force_login(make_user("intern", staff=True, can_view=False))
    assert get(client, "campaigns").status_code == 403


def test_a_sent_header_is_checked_even_with_a_session(client, analyst):
    client.force_login(analyst)
    assert_refused(get(client, "campaigns", plain="hrld_" + "B" * 43), "Unknown token")


def test_only_get_and_head(campaign, analyst, plain_token):
    # CSRF checks on, as in production: the API answers 405 rather than the CSRF failure page.
    client = Client(enforce_csrf_checks=True)
    url = reverse("api:campaign-report", args=[campaign.pk])
    for method in (client.post, client.put, client.patch, client.delete):
        response = method(url, headers=bearer(plain_token))
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
    client.force_login(analyst)
    assert client.post(url).status_code == 405
    head = client.head(url, headers=bearer(plain_token))
    assert (head.status_code, head.content) == (200, b"")


# --- tokens ---------------------------------------------------------------------------------------------


def test_create_token_stores_only_prefix_and_digest(analyst):
    token, plain = tokens.create_token(name="Finance sheet", user=analyst)
    assert TOKEN_RE.fullmatch(plain)
    token.refresh_from_db()
    assert token.prefix == plain[:12]
    assert token.digest == hashlib.sha256(plain.encode()).hexdigest()
    assert_not_in_database(plain)
    assert tokens.create_token(name="Finance sheet", user=analyst)[1] != plain


def assert_not_in_database(plain: str) -> None:
    """Not in any column of any table, nor in any session."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                assert plain not in repr(row), table
    for session in Session.objects.all():
        assert plain not in repr(session.get_decoded())


def test_the_token_is_never_logged(client, campaign, analyst, caplog):
    caplog.set_level(logging.DEBUG)
    # Capturing queries makes Django log every SQL statement with its parameters at DEBUG (settings keep
    # that logger at WARNING).
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    with CaptureQueriesContext(connection):
        token, plain = tokens.create_token(name="Metabase", user=analyst)
        assert get(client, "campaign-report", campaign.pk, plain=plain).status_code == 200
        assert get(client, "campaigns", plain=plain + "x").status_code == 401
        tokens.revoke(token)
        assert get(client, "campaigns", plain=plain).status_code == 401
    assert any("campaigns_apitoken" in r.getMessage() for r in caplog.records)  # the SQL was captured
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert plain not in logged and plain[12:] not in logged


def test_last_used_at_is_written_at_most_once_a_minute(client, campaign, analyst):
    token, plain = tokens.create_token(name="Metabase", user=analyst)
    assert token.last_used_at is None

    def token_updates() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert get(client, "campaigns", plain=plain).status_code == 200
        return sum(q["sql"].startswith("UPDATE") and "campaigns_apitoken" in q["sql"] for q in queries)

    assert token_updates() == 1
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None and timezone.now() - first_use < timedelta(seconds=5)

    assert token_updates() == 0
    token.refresh_from_db()
    assert token.last_used_at == first_use

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=2))
    assert token_updates() == 1
    token.refresh_from_db()
    assert token.last_used_at > first_use - timedelta(minutes=2)


def test_a_known_token_costs_one_query(analyst, plain_token, django_assert_num_queries):
    tokens.check(f"Bearer {plain_token}")  # first use: lookup and last_used_at
    with django_assert_num_queries(1):
        assert tokens.check(f"Bearer {plain_token}").user == analyst


# --- what it answers ------------------------------------------------------------------------------


def test_report_numbers_equal_direct_sql(client, campaign, plain_token):
    body = get(client, "campaign-report", campaign.pk, plain=plain_token).json()
    direct = variant_counts(campaign.pk)
    variants = {v["variant"]: v for v in body["variants"]}
    assert list(variants) == ["A", "B", "C"] == sorted(direct)
    for name, expected in direct.items():
        record = variants[name]
        assert {k: record[k] for k in COUNTED} == {k: expected[k] for k in COUNTED}, name
        assert record["digits"] == expected["digits"], name
        talk, answers = expected["talk_seconds"], expected["timed_attempts"]
        mean = talk / answers if answers else None
        assert record["mean_duration"] == pytest.approx(mean), name
        assert record["answer_rate"] == (
            pytest.approx(expected["answered"] / expected["dialled"]) if expected["dialled"] else None
        )
    assert {k: body["total"][k] for k in COUNTED} == {k: sum(c[k] for c in direct.values()) for k in COUNTED}
    assert variants["A"]["mean_duration"] and variants["C"]["mean_duration"] is None
    assert (variants["A"]["voice"], variants["A"]["script"], variants["A"]["weight"]) == (
        "Embedded zh", "Delivery reminders short", 1,
    )  # fmt: skip


def test_report_shape(client, campaign, plain_token, django_assert_max_num_queries):
    campaign.min_effect = 3.5
    campaign.save()
    # The token and its last use, the user's and groups' permissions, the campaign, the report's two.
    with django_assert_max_num_queries(7):
        body = get(client, "campaign-report", campaign.pk, plain=plain_token).json()
    assert body["campaign"] == {
        "id": campaign.pk, "name": "Delivery reminders", "status": "running", "confirm_digit": "1",
        "reschedule_digit": "2", "min_effect_points": 3.5,
    }  # fmt: skip
    generated = datetime.fromisoformat(body["generated_at"])
    assert generated.utcoffset() is not None and abs(timezone.now() - generated) < timedelta(seconds=5)
    assert set(body["total"]) == set(reports.row_record(reports.ReportRow(label="")))
    header, rows = reports.comparison_rows(reports.campaign_report(campaign))
    assert len(body["decisions"]) == len(rows) == 6  # 3 decision metrics x challengers B and C
    assert all(list(d) == header for d in body["decisions"])
    assert {(d["control"], d["challenger"]) for d in body["decisions"]} == {("A", "B"), ("A", "C")}
    assert body["decisions"] == [dict(zip(header, row, strict=True)) for row in rows]
    assert body["sample_ratio_p"] is None or isinstance(body["sample_ratio_p"], float)
    assert isinstance(body["split_is_off"], bool)
    # Decisions are made on finished calls: the fixture's B has calls still dialling and in progress.
    finished = {row["variant"]: row for row in body["finished_variants"]}
    variants = {row["variant"]: row for row in body["variants"]}
    assert finished["A"]["dialled"] == variants["A"]["dialled"]  # A: nothing dialled is still open
    assert finished["B"]["dialled"] < variants["B"]["dialled"]


def test_unknown_campaign_is_404(client, campaign, plain_token):
    for name in ("campaign-report", "campaign-heatmap"):
        response = get(client, name, campaign.pk + 1000, plain=plain_token)
        assert response.status_code == 404
        assert response.json() == {"error": f"No campaign with id {campaign.pk + 1000}."}


def heatmap_cells(body: dict) -> dict[tuple[int, int], tuple[int, int]]:
    cells = body["cells"]
    assert all(reports.WEEKDAYS[c["weekday_number"]] == c["weekday"] for c in cells)
    return {(c["weekday_number"], c["hour"]): (c["attempts"], c["answered"]) for c in cells}


def test_heatmap_equals_direct_sql(client, campaign, plain_token):
    body = get(client, "campaign-heatmap", campaign.pk, plain=plain_token).json()
    assert body["time_basis"] == "callee-local"
    assert heatmap_cells(body) == heatmap_counts(campaign.pk)
    assert set(body["cells"][0]) == {"weekday_number", "weekday", "hour", "attempts", "answered", "answer_rate", "answer_rate_low",
                                     "answer_rate_high"}  # fmt: skip


def test_heatmap_of_one_variant(client, campaign, plain_token):
    whole: dict[tuple[int, int], tuple[int, int]] = {}
    for name in ("A", "B", "C"):
        body = get(client, "campaign-heatmap", campaign.pk, plain=plain_token, variant=name).json()
        for cell, (attempts, answered) in heatmap_cells(body).items():
            before = whole.get(cell, (0, 0))
            whole[cell] = (before[0] + attempts, before[1] + answered)
        if name == "C":
            assert body["cells"] == []
    assert whole == heatmap_counts(campaign.pk)
    response = get(client, "campaign-heatmap", campaign.pk, plain=plain_token, variant="Z")
    assert response.status_code == 400
    assert response.json()["error"] == "Unknown variant 'Z' in this campaign: its variants are A, B, C."


def test_campaign_list(client, campaign, plain_token):
    draft = build_report_campaign("快递提醒", status=Campaign.Status.DRAFT)
    launched = datetime(2025, 3, 3, 8, 30, tzinfo=timezone.get_current_timezone())
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=launched)
    response = get(client, "campaigns", plain=plain_token)
    assert "快递提醒".encode() in response.content  # UTF-8 as is, not \u escapes
    listed = response.json()["campaigns"]
    assert [c["id"] for c in listed] == [campaign.pk, draft.pk]
    first = listed[0]
    direct = variant_counts(campaign.pk).values()
    assert first == {
        "id": campaign.pk, "name": "Delivery reminders", "status": "running",
        "launched_at": "2025-03-03T08:30:00+08:00", "finished_at": None,
        "calls": sum(c["calls"] for c in direct), "done": 9,
        "dialled": sum(c["dialled"] for c in direct), "answered": sum(c["answered"] for c in direct),
        "answer_rate": pytest.approx(6 / 11),
        "report": f"http://testserver/api/v1/campaigns/{campaign.pk}/report",
    }  # fmt: skip
    assert get(client, "campaign-report", campaign.pk, plain=plain_token).json()["total"]["done"] == 9

    running = get(client, "campaigns", plain=plain_token, status="running").json()["campaigns"]
    assert [c["id"] for c in running] == [campaign.pk]
    response = get(client, "campaigns", plain=plain_token, status="finished")
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Unknown status 'finished': use one of draft, scheduled, running, paused, completed, cancelled."
    )


def test_voices(client, campaign, plain_token):
    other = build_report_campaign("Appointment confirmations")
    voices = get(client, "voices", plain=plain_token).json()["voices"]
    assert [v["voice"] for v in voices] == ["Embedded zh"]
    (voice,) = voices
    direct = [*variant_counts(campaign.pk).values(), *variant_counts(other.pk).values()]
    assert voice["campaigns"] == 2
    assert {k: voice[k] for k in COUNTED} == {k: sum(c[k] for c in direct) for k in COUNTED}


# --- the admin ------------------------------------------------------------------------------------


def test_superuser_adds_a_token_and_sees_it_once(admin_client, analyst):
    response = admin_client.post(
        reverse("admin:campaigns_apitoken_add"), {"name": "Metabase", "user": analyst.pk}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    shown = [m for m in messages if "copy it now, it cannot be shown again" in m]
    assert len(shown) == 1
    plain = TOKEN_RE.search(shown[0]).group()
    assert plain in response.content.decode()

    token = ApiToken.objects.get()
    assert (token.name, token.user, token.prefix) == ("Metabase", analyst, plain[:12])
    assert token.digest == hashlib.sha256(plain.encode()).hexdigest()
    assert_not_in_database(plain)
    # Shown once: the next page no longer has it.
    again = admin_client.get(reverse("admin:campaigns_apitoken_changelist"))
    assert plain not in again.content.decode() and token.prefix in again.content.decode()
    assert Client().get(reverse("api:campaigns"), headers=bearer(plain)).status_code == 200


def test_only_superusers_add_tokens(client, db):
    staff = make_user("manager", staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_apitoken"))
    client.force_login(staff)
    assert client.get(reverse("admin:campaigns_apitoken_add")).status_code == 403
    response = client.post(reverse("admin:campaigns_apitoken_add"), {"name": "Mine", "user": staff.pk})
    assert response.status_code == 403 and not ApiToken.objects.exists()


def test_tokens_cannot_be_edited(admin_client, analyst):
    token, plain = tokens.create_token(name="Metabase", user=analyst)
    url = reverse("admin:campaigns_apitoken_change", args=[token.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert token.prefix in page.content.decode() and token.digest not in page.content.decode()
    assert admin_client.post(url, {"name": "Renamed", "user": analyst.pk}).status_code == 403
    token.refresh_from_db()
    assert token.name == "Metabase"
    delete = reverse("admin:campaigns_apitoken_delete", args=[token.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


def test_revoke_action(admin_client, client, analyst):
    (first, first_plain), (second, _), (kept, kept_plain) = (
        tokens.create_token(name=name, user=analyst) for name in ("Metabase", "Sheet", "Script")
    )
    tokens.revoke(second)
    response = admin_client.post(
        reverse("admin:campaigns_apitoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Revoked 1 token (1 already revoked)."]
    first.refresh_from_db()
    kept.refresh_from_db()
    assert first.revoked_at is not None and kept.revoked_at is None
    assert_refused(get(client, "campaigns", plain=first_plain), "revoked")
    assert get(client, "campaigns", plain=kept_plain).status_code == 200
