"""The write API as an order system uses it: scopes, contact lists, the bulk upsert, idempotency, rate limits,
the audit log; on a real database (SQLite and PostgreSQL) and real Redis for the shared rate limit."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from campaigns import tokens, upsert
from campaigns.models import ApiAuditEntry, ApiToken, Contact, ContactList, IdempotentRequest

WRITER_PERMISSIONS = ["view_contactlist", "add_contactlist", "add_contact", "change_contact", "view_campaign"]


@pytest.fixture(autouse=True)
def fresh_rate_counts():
    cache.clear()


@pytest.fixture
def order_system(db) -> User:
    user = User.objects.create_user("shop")
    user.user_permissions.add(*Permission.objects.filter(codename__in=WRITER_PERMISSIONS))
    return user


@pytest.fixture
def writer(order_system) -> str:
    return tokens.create_token(name="Shop", user=order_system, scopes=["read", "write"])[1]


@pytest.fixture
def reader(order_system) -> str:
    return tokens.create_token(name="Shop reports", user=order_system)[1]


@pytest.fixture
def contact_list(db) -> ContactList:
    return ContactList.objects.create(name="Tomorrow's deliveries")


def post(client: Client, url: str, body: object, plain: str, **headers: str):
    return client.post(
        url,
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {plain}", **headers},
    )


def contacts_url(contact_list: ContactList) -> str:
    return reverse("api:contacts", args=[contact_list.pk])


def row(n: int, **extra: object) -> dict[str, object]:
    return {"phone": f"138{n:08d}", "external_id": f"JD{n:010d}", "name": f"客户{n}", "variables": {"slot": "上午"},
            **extra}  # fmt: skip


# --- scopes and permissions ---------------------------------------------------------------------------


def test_tokens_are_read_only_unless_given_write(client, order_system, reader, contact_list):
    assert ApiToken.objects.get().scopes == "read"
    response = post(client, contacts_url(contact_list), {"contacts": [row(1)]}, reader)
    assert response.status_code == 403
    assert response.json()["error"] == (
        "This token's scopes are 'read'; POST needs the 'write' scope: ask an admin for a token with it."
    )
    assert not Contact.objects.exists()
    # Reading is what a read token is for.
    assert (
        client.get(reverse("api:contact-lists"), headers={"Authorization": f"Bearer {reader}"}).status_code
        == 200
    )


def test_write_needs_the_model_permissions_too(client, contact_list, db):
    user = User.objects.create_user("viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_contactlist"))
    plain = tokens.create_token(name="Half", user=user, scopes=["read", "write"])[1]
    response = post(client, contacts_url(contact_list), {"contacts": [row(1)]}, plain)
    assert response.status_code == 403
    assert (
        response.json()["error"] == "This user needs the campaigns.add_contact permission to upsert contacts."
    )


def test_create_token_refuses_unknown_scopes(order_system):
    with pytest.raises(ValueError, match="scopes must be some of read, write"):
        tokens.create_token(name="x", user=order_system, scopes=["admin"])


def test_admin_chooses_scopes(admin_client, order_system):
    response = admin_client.post(
        reverse("admin:campaigns_apitoken_add"),
        {"name": "Shop", "user": order_system.pk, "scopes": ["read", "write"]},
        follow=True,
    )
    assert response.status_code == 200
    assert ApiToken.objects.get().scopes == "read write"
    page = admin_client.get(reverse("admin:campaigns_apitoken_add"))
    assert b'value="write"' in page.content


def test_staff_session_writes_need_csrf(contact_list, db):
    staff = User.objects.create_user("clerk", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=WRITER_PERMISSIONS))
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(contacts_url(contact_list), {"contacts": []}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]


# --- contact lists ---------------------------------------------------------------------------------


def test_create_list_and_read_it_back(client, writer):
    body = {"name": "周一派送", "default_region": "CN", "default_timezone": "Asia/Shanghai"}
    response = post(client, reverse("api:contact-lists"), body, writer)
    assert response.status_code == 201
    created = response.json()
    assert {k: created[k] for k in body} == body and created["contacts"] == 0
    headers = {"Authorization": f"Bearer {writer}"}
    detail = client.get(reverse("api:contact-list", args=[created["id"]]), headers=headers).json()
    assert detail == created
    listed = client.get(reverse("api:contact-lists"), headers=headers).json()["contact_lists"]
    assert [c["id"] for c in listed] == [created["id"]]

    again = post(client, reverse("api:contact-lists"), body, writer)
    assert again.status_code == 400
    assert again.json()["error"] == "name: contact list with this name already exists."
    bad = post(client, reverse("api:contact-lists"), {"name": "x", "default_region": "cn"}, writer)
    assert bad.status_code == 400 and "use capitals" in bad.json()["error"]
    missing = client.get(reverse("api:contact-list", args=[created["id"] + 99]), headers=headers)
    assert missing.status_code == 404 and missing.json() == {
        "error": f"No contact list with id {created['id'] + 99}."
    }


# --- the bulk upsert ---------------------------------------------------------------------------------


def test_good_rows_land_and_every_rejected_row_says_why(client, writer, contact_list):
    rows = [
        row(1, timezone="Asia/Shanghai", consent_basis="contract", consent_at="2026-11-02T10:15:00+08:00",
            consent_source="checkout"),
        {"phone": "12345"},
        row(3, timezone="Mars/Olympus"),
        "not an object",
        row(5, colour="red"),
        row(6, variables={"nested": {"a": 1}}),
        row(7, consent_at="2026-11-02T10:15:00"),
        {"name": "nobody"},
        row(9, phone=13800000009),
        {"phone": "+1 212 555 0100"},  # New York, one zone: fine without a timezone
    ]  # fmt: skip
    response = post(client, contacts_url(contact_list), {"contacts": rows}, writer)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["updated"], body["merged"]) == (2, 0, 0)
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1] == 'the phone number "12345" is missing its area code'
    assert (
        reasons[2]
        == 'the time zone "Mars/Olympus" is not recognised; use a name like Asia/Shanghai or America/New_York'
    )
    assert reasons[3] == "a contact must be a JSON object"
    assert reasons[4].startswith("unknown field 'colour'")
    assert reasons[5] == 'the variable "nested" must be a string or a number'
    assert "has no UTC offset" in reasons[6]
    assert reasons[7] == "the phone number is missing"
    assert reasons[8] == "phone must be a string, not int"
    first = Contact.objects.get(external_id="JD0000000001")
    assert (first.phone, first.name, first.timezone, first.fields) == ("+8613800000001", "客户1", "Asia/Shanghai",
                                                                     {"slot": "上午"})  # fmt: skip
    assert (first.consent_basis, first.consent_source, first.consent_at.isoformat()) == (
        "contract", "checkout", "2026-11-02T02:15:00+00:00",
    )  # fmt: skip
    assert Contact.objects.get(phone="+12125550100").timezone == "America/New_York"
    assert [c["index"] for c in body["contacts"]] == [0, 9]
    assert body["contacts"][0] == {
        "index": 0,
        "id": first.pk,
        "external_id": "JD0000000001",
        "result": "created",
    }


def test_csv_and_api_reject_a_number_for_the_same_reason(contact_list):
    """One set of rules: the CSV import's reason for a bad number is the API's."""
    from campaigns.contacts_csv import parse_contacts_csv

    for phone in ("1.38001E+10", "12345", "+999 1234"):
        csv_reason = parse_contacts_csv(f"phone\n{phone}\n".encode()).rejected[0].reason
        api_reason = upsert.upsert_contacts(contact_list, [{"phone": phone}]).rejected[0]["reason"]
        assert api_reason == csv_reason


def test_upsert_matches_by_external_id_then_phone(client, writer, contact_list):
    known_by_phone = Contact.objects.create(
        contact_list=contact_list, phone="+8613800000002", timezone="Asia/Shanghai"
    )
    post(client, contacts_url(contact_list), {"contacts": [row(1)]}, writer)
    first = Contact.objects.get(external_id="JD0000000001")

    rows = [
        {"phone": "13900000001", "external_id": "JD0000000001", "name": "新号码"},  # same order, new number
        {"phone": "13800000002", "external_id": "JD0000000002"},  # known by phone: gets the key
        {"phone": "13900000001", "external_id": "JD0000000003"},  # another order's number: refused
        {"phone": "13700000004", "name": "无订单号"},  # no key: by phone, new
    ]
    body = post(client, contacts_url(contact_list), {"contacts": rows}, writer).json()
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 2, 0)
    assert body["rejected"] == [{"index": 2, "reason": "the phone number +8613900000001 already belongs to the "
                                                       "contact with external_id 'JD0000000001' in this list"}]  # fmt: skip
    first.refresh_from_db()
    assert (first.phone, first.name, first.fields) == ("+8613900000001", "新号码", {"slot": "上午"})  # kept
    known_by_phone.refresh_from_db()
    assert known_by_phone.external_id == "JD0000000002"
    assert Contact.objects.filter(contact_list=contact_list).count() == 3

    # The same rows again change nothing.
    again = post(client, contacts_url(contact_list), {"contacts": [rows[0], rows[1], rows[3]]}, writer).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)


def test_rows_for_one_contact_merge_later_non_empty_wins(client, writer, contact_list):
    rows = [row(1, variables={"slot": "上午", "items": "2"}), {"phone": "13800000001", "external_id": "JD0000000001",
            "name": "", "variables": {"slot": "下午"}}]  # fmt: skip
    body = post(client, contacts_url(contact_list), {"contacts": rows}, writer).json()
    assert (body["created"], body["merged"]) == (1, 1)
    assert [c["result"] for c in body["contacts"]] == ["created", "merged"]
    contact = Contact.objects.get()
    assert (contact.name, contact.fields) == ("客户1", {"slot": "下午", "items": "2"})


def test_more_than_10000_rows_is_413_and_nothing_lands(client, writer, contact_list):
    rows = [row(n) for n in range(upsert.MAX_ROWS + 1)]
    response = post(client, contacts_url(contact_list), {"contacts": rows}, writer)
    assert response.status_code == 413
    assert response.json() == {"error": "At most 10,000 contacts a request: this one has 10,001; split it."}
    assert not Contact.objects.exists()


def test_a_body_over_the_byte_limit_is_413(client, writer, contact_list, settings):
    settings.API_MAX_BODY_BYTES = 2000
    response = post(client, contacts_url(contact_list), {"contacts": [row(n) for n in range(40)]}, writer)
    assert response.status_code == 413
    assert (
        response.json()["error"] == "The request body is over 2,000 bytes: send fewer contacts per request."
    )


def test_malformed_bodies_are_400(client, writer, contact_list):
    bad_json = client.post(contacts_url(contact_list), "{", content_type="application/json",
                           headers={"Authorization": f"Bearer {writer}"})  # fmt: skip
    assert bad_json.status_code == 400 and bad_json.json()["error"].startswith("The body is not valid JSON")
    for body in ({"contacts": "all"}, [row(1)], {}):
        response = post(client, contacts_url(contact_list), body, writer)
        assert response.status_code == 400
        assert response.json() == {"error": 'The body must be {"contacts": [...]}, a list of contacts.'}


def test_upsert_costs_a_few_queries_not_one_per_row(
    client, writer, contact_list, django_assert_max_num_queries
):
    post(client, contacts_url(contact_list), {"contacts": [row(n) for n in range(0, 600, 2)]}, writer)
    rows = [row(n, name=f"改{n}") for n in range(600)]  # half new, half changed
    # Token, permissions, list, lock, 2 lookups, inserts, upserts, audit entry: no query per row. (SQLite
    # splits a bulk insert into batches of 999 parameters, 90 contacts: 4 inserts of each kind here.)
    with django_assert_max_num_queries(20):
        body = post(client, contacts_url(contact_list), {"contacts": rows}, writer).json()
    assert (body["created"], body["updated"]) == (300, 300)
    assert Contact.objects.filter(contact_list=contact_list, name__startswith="改").count() == 600


# --- idempotency --------------------------------------------------------------------------------------


def test_same_key_same_body_replays_the_first_answer(client, writer, contact_list):
    rows = {"contacts": [row(n) for n in range(20)]}
    first = post(
        client, contacts_url(contact_list), rows, writer, **{"Idempotency-Key": "evening-2026-12-07"}
    )
    assert first.status_code == 200 and first.json()["created"] == 20
    Contact.objects.filter(external_id="JD0000000003").update(name="changed since")
    again = post(
        client, contacts_url(contact_list), rows, writer, **{"Idempotency-Key": "evening-2026-12-07"}
    )
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Contact.objects.count() == 20
    assert Contact.objects.get(external_id="JD0000000003").name == "changed since"  # nothing written again

    other = post(client, contacts_url(contact_list), {"contacts": rows["contacts"][:5]}, writer,
                 **{"Idempotency-Key": "evening-2026-12-07"})  # fmt: skip
    assert other.status_code == 422
    assert "for a different request" in other.json()["error"]
    bad_key = post(client, contacts_url(contact_list), rows, writer, **{"Idempotency-Key": "x" * 256})
    assert bad_key.status_code == 400 and "Idempotency-Key must be 1 to 255" in bad_key.json()["error"]
    assert IdempotentRequest.objects.count() == 1


def test_keys_belong_to_their_user(client, writer, contact_list):
    other = User.objects.create_user("other shop")
    other.user_permissions.add(*Permission.objects.filter(codename__in=WRITER_PERMISSIONS))
    other_plain = tokens.create_token(name="Other", user=other, scopes=["read", "write"])[1]
    post(client, contacts_url(contact_list), {"contacts": [row(1)]}, writer, **{"Idempotency-Key": "k1"})
    response = post(
        client, contacts_url(contact_list), {"contacts": [row(2)]}, other_plain, **{"Idempotency-Key": "k1"}
    )
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert Contact.objects.count() == 2


# --- rate limit and audit ------------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(client, writer, settings):
    settings.API_RATE_PER_MINUTE = 2
    headers = {"Authorization": f"Bearer {writer}"}
    url = reverse("api:contact-lists")
    assert [client.get(url, headers=headers).status_code for _ in range(2)] == [200, 200]
    refused = client.get(url, headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"].startswith("Too many requests: 2 a minute per token")


def test_rate_counts_are_shared_through_redis(client, writer, settings):
    """Two web processes share one count: the count lives in Redis, where another client sees it."""
    url = "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(url).flushdb()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    settings.API_RATE_PER_MINUTE = 3
    headers = {"Authorization": f"Bearer {writer}"}
    assert client.get(reverse("api:contact-lists"), headers=headers).status_code == 200
    keys = [k for k in redis.Redis.from_url(url).keys() if b"api-rate:token" in k]
    assert len(keys) == 1
    redis.Redis.from_url(url).incrby(keys[0], 2)  # as if another process had answered two
    assert client.get(reverse("api:contact-lists"), headers=headers).status_code == 429


def test_every_write_is_in_the_audit_log(client, writer, reader, contact_list, admin_client):
    post(client, contacts_url(contact_list), {"contacts": [row(1), {"phone": "1"}]}, writer)
    post(client, contacts_url(contact_list), {"contacts": [row(2)]}, reader)  # refused: still on record
    client.get(reverse("api:contact-lists"), headers={"Authorization": f"Bearer {writer}"})  # reads are not
    written, refused = ApiAuditEntry.objects.order_by("pk")
    contact = Contact.objects.get()
    assert (written.method, written.path, written.status, written.token.name, written.user.username) == (
        "POST", contacts_url(contact_list), 200, "Shop", "shop",
    )  # fmt: skip
    assert written.object_ids == [contact.pk]
    assert (
        written.summary
        == f"contact list {contact_list.pk}: 1 created, 0 updated, 0 unchanged, 0 merged, 1 rejected"
    )
    assert (refused.status, refused.token.name, refused.object_ids) == (403, "Shop reports", [])
    page = admin_client.get(reverse("admin:campaigns_apiauditentry_changelist"))
    assert page.status_code == 200 and contacts_url(contact_list) in page.content.decode()
    assert admin_client.get(reverse("admin:campaigns_apiauditentry_add")).status_code == 403


# --- schema and docs --------------------------------------------------------------------------------


def test_schema_and_docs_page(client):
    schema = client.get(reverse("api:schema"), {"format": "json"}).json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/contact-lists/{list_id}/contacts", "/api/v1/campaigns", "/api/v1/voices"} <= set(
        schema["paths"]
    )
    upsert_op = schema["paths"]["/api/v1/contact-lists/{list_id}/contacts"]["post"]
    assert {"200", "413", "422", "429"} <= set(upsert_op["responses"])
    page = client.get(reverse("api:docs")).content.decode()
    assert "/api/v1/schema?format=json" in page
    assert "<script src" not in page and "cdn" not in page.lower()  # nothing fetched from elsewhere


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once(order_system):
    """Two retries of one request at the same moment (a client that timed out and tried again): one writes, the
    other gets its answer; both answers are the same and nothing is written twice."""
    plain = tokens.create_token(name="Shop", user=order_system, scopes=["read", "write"])[1]
    contact_list = ContactList.objects.create(name="Concurrent")
    body = {"contacts": [row(n) for n in range(2000)]}
    barrier = threading.Barrier(2)

    def send(_: int):
        try:
            barrier.wait()
            response = post(Client(), contacts_url(contact_list), body, plain, **{"Idempotency-Key": "same"})
            return response.status_code, response.json(), response.get("Idempotent-Replayed")
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        (status_a, answer_a, replayed_a), (status_b, answer_b, replayed_b) = pool.map(send, range(2))
    assert (status_a, status_b) == (200, 200)
    assert answer_a == answer_b and answer_a["created"] == 2000
    assert [replayed_a, replayed_b].count("true") == 1
    assert Contact.objects.filter(contact_list=contact_list).count() == 2000
    assert IdempotentRequest.objects.count() == 1
