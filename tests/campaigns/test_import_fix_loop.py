"""Imports as operations staff run them (issue 21): an explicit duplicate policy, every merged line listed with
what it changed, and the rejected rows downloaded as a CSV, fixed and uploaded again."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import ContactImport, ContactList

pytestmark = pytest.mark.django_db

FILE = (
    "姓名,手机号,订单号\n"
    "张三,13800138000,SF1\n"
    "李四,12345,SF2\n"  # 3: rejected, too short
    "王五,13900139000,=HYPERLINK(\"x\")\n"
    "张三,+86 138 0013 8000,SF3\n"  # 5: the same customer's second order
    "赵六,abc,SF4\n"  # 6: rejected, not a number
)


def _import(admin_client, contact_list, data: bytes, name: str, **extra) -> ContactImport:
    upload = SimpleUploadedFile(name, data, content_type="text/csv")
    response = admin_client.post(
        reverse("admin:campaigns_contactlist_import"), {"contact_list": contact_list.pk, "file": upload, **extra}
    )
    assert response.status_code == 302, response.context and response.context["form"].errors
    return ContactImport.objects.order_by("pk").last()


def test_duplicates_combined_listed_and_rejected_rows_fixed_and_uploaded_again(admin_client):
    orders = ContactList.objects.create(name="今晚的订单")
    record = _import(admin_client, orders, FILE.encode("gb18030"), "订单.csv")
    assert (record.created, record.merged, record.rejected, record.duplicates) == (2, 1, 2, "combine")
    assert orders.contacts.get(phone="+8613800138000").fields == {"订单号": "SF1、SF3"}
    assert record.merged_rows == [{"line": 5, "into_line": 2, "changes": {"订单号": "SF1、SF3"}}]

    page = admin_client.get(reverse("admin:campaigns_contactimport_change", args=[record.pk])).content.decode()
    assert 'id="merged-rows"' in page and "<td>5</td><td>2</td>" in page and "订单号 → SF1、SF3" in page
    download = reverse("admin:campaigns_contactimport_rejected_csv", args=[record.pk])
    assert download in page

    response = admin_client.get(download)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"] and "rejected.csv" in response["Content-Disposition"]
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0] == "rejected_reason,姓名,手机号,订单号"
    assert lines[1].startswith('"line 3: ') and lines[1].endswith(",李四,12345,SF2")
    assert lines[2].startswith('"line 6: ') and lines[2].endswith(",赵六,abc,SF4")

    # Fixed in a spreadsheet (the numbers corrected), uploaded again: both rows come in, the reasons do not.
    fixed = text.replace(",12345,", ",13700137000,").replace(",abc,", ",13600136000,")
    again = _import(admin_client, orders, fixed.encode("utf-8"), "订单-rejected.csv")
    assert (again.created, again.rejected, again.merged) == (2, 0, 0)
    assert orders.contacts.get(phone="+8613700137000").fields == {"订单号": "SF2"}
    assert orders.contacts.count() == 4


def test_later_rows_win_when_staff_choose_it(admin_client):
    corrections = ContactList.objects.create(name="corrections")
    data = "phone,name,order\n13800138000,张三,SF1\n13800138000,张三丰,SF9\n".encode()
    record = _import(admin_client, corrections, data, "c.csv", duplicates="latest")
    assert record.duplicates == "latest"
    contact = corrections.contacts.get()
    assert (contact.name, contact.fields) == ("张三丰", {"order": "SF9"})
    page = admin_client.get(reverse("admin:campaigns_contactimport_change", args=[record.pk])).content.decode()
    assert "later rows win" in page and "name → 张三丰; order → SF9" in page


def test_formula_like_cells_are_guarded_in_the_download(admin_client):
    cells = ContactList.objects.create(name="cells")
    data = b'phone,note\n=1+1,"=HYPERLINK(""http://x"")"\n'
    record = _import(admin_client, cells, data, "f.csv")
    text = admin_client.get(reverse("admin:campaigns_contactimport_rejected_csv", args=[record.pk])).content.decode()
    row = text.splitlines()[1]
    assert ",'=1+1," in row and "'=HYPERLINK" in row


def test_only_staff_who_may_view_imports_download_rejected_rows(client, django_user_model):
    record = ContactImport.objects.create(
        contact_list=ContactList.objects.create(name="x"), filename="x.csv", header=["phone"],
        rejected_rows=[{"line": 2, "reason": "bad", "raw": "123"}],
    )  # fmt: skip
    django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.login(username="clerk", password="pw")
    url = reverse("admin:campaigns_contactimport_rejected_csv", args=[record.pk])
    assert client.get(url).status_code == 404
