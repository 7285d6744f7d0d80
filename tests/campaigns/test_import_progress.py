"""A big CSV import tells how far it got: lines read, contacts saved, done; the import page asks under a token of
its own, and only its own user hears the answer."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns.contacts import import_contacts
from campaigns.contacts_csv import PROGRESS_EVERY
from campaigns.models import ContactList

pytestmark = pytest.mark.django_db

ROWS = 5_000


def big_csv(rows: int = ROWS) -> bytes:
    lines = ["手机号,订单号"] + [f"138{i:08d},SF{i:010d}" for i in range(rows)]
    lines[100] = "12345,SF-bad"  # rejected
    lines[200] = lines[201].replace("SF", "SX")  # repeats the next line's number: merged
    return ("\n".join(lines) + "\n").encode()


def test_an_import_tells_lines_read_then_contacts_saved_then_done():
    contact_list = ContactList.objects.create(name="今晚")
    heard: list[tuple[str, int, int]] = []
    record = import_contacts(contact_list, big_csv(), filename="big.csv", progress=lambda *s: heard.append(s))
    assert (record.created, record.merged, record.rejected) == (ROWS - 2, 1, 1)
    stages = [stage for stage, _, _ in heard]
    assert stages == sorted(stages, key=["reading", "saving", "done"].index)  # in order, each stage once through
    reading = [(done, total) for stage, done, total in heard if stage == "reading"]
    assert len(reading) == ROWS // PROGRESS_EVERY + 1 and reading[-1] == (ROWS + 1, ROWS + 1)  # header + rows
    assert [d for d, _ in reading] == sorted(d for d, _ in reading)
    saving = [(done, total) for stage, done, total in heard if stage == "saving"]
    assert saving[0] == (2000, ROWS - 2) and saving[-1] == (ROWS - 2, ROWS - 2)
    assert heard[-1] == ("done", ROWS - 2, ROWS - 2)


def test_a_file_that_cannot_be_read_tells_done_at_once():
    heard: list[tuple[str, int, int]] = []
    record = import_contacts(ContactList.objects.create(name="x"), b"", filename="e.csv", progress=lambda *s: heard.append(s))
    assert record.error and heard == [("done", 0, 0)]


def progress(client, token: str):
    return client.get(reverse("admin:campaigns_contactlist_import_progress", args=[token]))


def test_the_import_page_hears_its_own_progress_and_nobody_else_does(admin_client):
    contact_list = ContactList.objects.create(name="今晚")
    token = str(uuid.uuid4())  # as the page makes one (the cache outlives a test run)
    before = progress(admin_client, token).json()
    assert before["stage"] == "uploading" and before["text"] == "Uploading the file…"
    upload = SimpleUploadedFile("big.csv", big_csv(), content_type="text/csv")
    response = admin_client.post(
        reverse("admin:campaigns_contactlist_import"), {"contact_list": contact_list.pk, "file": upload, "progress": token}
    )
    assert response.status_code == 302
    after = progress(admin_client, token).json()
    assert after == {"stage": "done", "done": ROWS - 2, "total": ROWS - 2,
                     "text": "Imported; opening what became of each line…"}

    other = User.objects.create_user("other", password="pw", is_staff=True)
    other.user_permissions.add(Permission.objects.get(codename="change_contactlist"))
    elsewhere = Client()  # admin_client is pytest-django's `client`, logged in as the admin
    elsewhere.force_login(other)
    assert progress(elsewhere, token).json()["stage"] == "uploading"  # another user's import is not theirs to read
    assert progress(admin_client, "a.b.c.d.e.f.g.h").status_code == 404
    assert progress(admin_client, "short").status_code == 404


def test_a_progress_token_that_is_not_one_is_refused_with_the_form():
    from campaigns.forms import ContactImportForm

    contact_list = ContactList.objects.create(name="今晚")
    form = ContactImportForm(
        {"contact_list": contact_list.pk, "progress": "<script>"},
        {"file": SimpleUploadedFile("a.csv", b"phone\n13800138000\n", content_type="text/csv")},
    )
    assert not form.is_valid() and "progress" in form.errors
