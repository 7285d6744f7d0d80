"""Do-not-call: an opt-out sticks in every campaign at once; the list goes in and out as CSV."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns import dnc
from campaigns.lifecycle import add_to_do_not_call, do_not_call
from campaigns.models import Call, CallAttempt, Campaign, DoNotCall
from telephony import outcomes

pytestmark = pytest.mark.django_db
S = CallAttempt.Status
PHONE = "+8613800000000"  # contact 0 of every make_campaign list
OTHER = "+8613800000001"


def call_for(campaign: Campaign, phone: str, state: str, **fields) -> Call:
    contact = campaign.contact_list.contacts.get(phone=phone)
    return Call.objects.create(
        campaign=campaign, contact=contact, variant=campaign.variants.first(), phone=phone,
        timezone=contact.timezone, state=state, **fields,
    )


def answered_attempt(call: Call) -> CallAttempt:
    Call.objects.filter(pk=call.pk).update(state=Call.State.IN_PROGRESS, attempts_made=1)
    return CallAttempt.objects.create(call=call, number=1, provider="twilio", status=S.IN_PROGRESS)


@pytest.fixture
def campaigns(make_campaign) -> list[Campaign]:
    return [make_campaign(n=2, status=Campaign.Status.RUNNING) for _ in range(5)]


# --- opt-out ---------------------------------------------------------------------------------------


def test_opting_out_cancels_the_numbers_queued_calls_in_every_campaign(campaigns):
    speaking, rendering, ready, dialing, in_call = campaigns
    own = call_for(speaking, PHONE, Call.State.READY)
    attempt = answered_attempt(own)
    queued = [
        call_for(rendering, PHONE, Call.State.RENDERING),
        call_for(ready, PHONE, Call.State.READY),
        call_for(dialing, PHONE, Call.State.DIALING),
    ]
    busy_elsewhere = call_for(in_call, PHONE, Call.State.IN_PROGRESS)  # being dialled: it finishes
    bystander = call_for(ready, OTHER, Call.State.READY)

    assert outcomes.apply_gather(attempt.pk, "9")

    entry = DoNotCall.objects.get()
    assert (entry.phone, entry.source) == (PHONE, "keypress")
    for call in queued:
        call.refresh_from_db()
        assert (call.state, call.outcome) == (Call.State.CANCELLED, Call.Outcome.DO_NOT_CALL)
        assert "do-not-call" in call.error
    for call, state in ((busy_elsewhere, Call.State.IN_PROGRESS), (bystander, Call.State.READY)):
        call.refresh_from_db()
        assert (call.state, call.outcome) == (state, "")

    outcomes.apply_status(attempt.pk, S.COMPLETED, answered_by="human", duration=15)
    own.refresh_from_db()
    assert (own.state, own.outcome) == (Call.State.DONE, Call.Outcome.OPTED_OUT)


def test_the_campaigns_own_opt_out_key_is_the_one_that_counts(campaigns):
    campaign, other, *_ = campaigns
    campaign.opt_out_digit = "0"
    campaign.save(update_fields=["opt_out_digit"])
    attempt = answered_attempt(call_for(campaign, PHONE, Call.State.READY))
    waiting = call_for(other, PHONE, Call.State.READY)

    outcomes.apply_gather(attempt.pk, "9")
    assert not DoNotCall.objects.exists()
    outcomes.apply_status(attempt.pk, S.COMPLETED, answered_by="human", duration=15)
    assert Call.objects.get(pk=attempt.call_id).outcome == Call.Outcome.ANSWERED

    second = answered_attempt(call_for(campaign, OTHER, Call.State.READY))
    other_waiting = call_for(other, OTHER, Call.State.READY)
    outcomes.apply_gather(second.pk, "0")
    outcomes.apply_status(second.pk, S.COMPLETED, answered_by="human", duration=15)

    assert list(DoNotCall.objects.values_list("phone", "reason")) == [(OTHER, f"pressed 0 on call {second.call_id}")]
    assert Call.objects.get(pk=second.call_id).outcome == Call.Outcome.OPTED_OUT
    waiting.refresh_from_db()
    other_waiting.refresh_from_db()
    assert (waiting.state, other_waiting.state) == (Call.State.READY, Call.State.CANCELLED)


def test_a_key_pressed_on_a_machine_call_waiting_for_its_retry_ends_it(campaigns):
    campaign = campaigns[0]
    campaign.retry_policy = {"machine": 60}
    campaign.save(update_fields=["retry_policy"])
    attempt = answered_attempt(call_for(campaign, PHONE, Call.State.READY))
    outcomes.apply_status(attempt.pk, S.COMPLETED, answered_by="machine_start", duration=30)
    assert Call.objects.get(pk=attempt.call_id).state == Call.State.READY

    outcomes.apply_gather(attempt.pk, "9")  # the gather arrived after the status callback

    call = Call.objects.get(pk=attempt.call_id)
    assert (call.state, call.outcome, call.error) == (Call.State.DONE, Call.Outcome.OPTED_OUT, "")


def test_adding_a_number_by_hand_cancels_its_queued_calls(campaigns, admin_client):
    waiting = call_for(campaigns[0], PHONE, Call.State.READY)

    response = admin_client.post(reverse("admin:campaigns_donotcall_add"), {"phone": "138 0000 0000", "reason": "asked"})

    assert response.status_code == 302
    waiting.refresh_from_db()
    assert (waiting.state, waiting.outcome) == (Call.State.CANCELLED, Call.Outcome.DO_NOT_CALL)


def test_adding_is_idempotent_and_cancels_calls_planned_since(campaigns):
    assert add_to_do_not_call(PHONE, reason="asked", source="admin")
    late = call_for(campaigns[0], PHONE, Call.State.READY)  # planned in a race with the add

    assert not add_to_do_not_call(PHONE, reason="again", source="admin")

    assert DoNotCall.objects.get().reason == "asked"
    late.refresh_from_db()
    assert late.state == Call.State.CANCELLED


def test_many_numbers_at_once(campaigns):
    phones = {f"+86139{i:08d}": f"r{i}" for i in range(1234)}
    add_to_do_not_call("+8613900000007", reason="before", source="admin")
    waiting = call_for(campaigns[0], PHONE, Call.State.RENDERING)

    result = do_not_call({**phones, PHONE: "x"}, source="import")

    assert len(result.added) == 1234 and "+8613900000007" not in result.added
    assert DoNotCall.objects.count() == 1235
    assert DoNotCall.objects.get(phone="+8613900000100").reason == "r100"
    assert result.cancelled == 1
    waiting.refresh_from_db()
    assert waiting.state == Call.State.CANCELLED


def test_logs_never_show_the_number(campaigns, caplog):
    attempt = answered_attempt(call_for(campaigns[0], PHONE, Call.State.READY))
    with caplog.at_level(logging.DEBUG):
        outcomes.apply_gather(attempt.pk, "9")
        dnc.import_do_not_call(b"phone\n13800000001\n", region="CN", filename="x.csv")
        list(dnc.export_csv())

    assert "13800000000" not in caplog.text and "13800000001" not in caplog.text


# --- import ----------------------------------------------------------------------------------------

MESSY = "\n".join(
    [
        "phone,reason",  # 1 header
        "138 0013 8001,asked by phone",  # 2 added (national format)
        "+86 138-0013-8002,",  # 3 added, reason from the form
        "",  # 4 blank
        "13800138001,again",  # 5 repeat of line 2
        "+8613800138009,already",  # 6 already on the list
        "12345,short",  # 7 rejected: too short for a CN number
        "call me,no",  # 8 rejected: not a number
        "1.38001E+10,excel",  # 9 rejected: Excel scientific notation
        ",no number",  # 10 rejected: empty
        '"+8613800138003","=cmd|x"',  # 11 added, formula-looking reason kept as text
    ]
).encode()


def test_import_accounts_for_every_line(campaigns):
    add_to_do_not_call("+8613800138009", reason="earlier", source="admin")

    result = dnc.import_do_not_call(MESSY, region="CN", filename="list.csv", reason="complaint")

    assert (result.total_lines, result.header, result.added, result.already_there, result.repeats) == (11, 1, 3, 2, 1)
    assert result.blank == 1 and result.accounted()
    assert [(r.line, r.raw) for r in result.rejected] == [
        (7, "12345,short"), (8, "call me,no"), (9, "1.38001E+10,excel"), (10, ",no number")
    ]
    reasons = [r.reason for r in result.rejected]
    assert "missing its area code" in reasons[0]
    assert "not a phone number" in reasons[1]
    assert "scientific notation" in reasons[2]
    assert "empty" in reasons[3]
    assert dict(DoNotCall.objects.filter(source="import").values_list("phone", "reason")) == {
        "+8613800138001": "asked by phone",
        "+8613800138002": "complaint",
        "+8613800138003": "=cmd|x",
    }
    assert DoNotCall.objects.get(phone="+8613800138009").reason == "earlier"


def test_import_cancels_queued_calls(campaigns):
    waiting = call_for(campaigns[2], OTHER, Call.State.READY)

    result = dnc.import_do_not_call(f"{OTHER}\n".encode(), region="CN", filename="one.csv")

    assert (result.added, result.cancelled_calls) == (1, 1)
    waiting.refresh_from_db()
    assert (waiting.state, waiting.outcome) == (Call.State.CANCELLED, Call.Outcome.DO_NOT_CALL)


def test_a_file_without_a_header_is_a_list_of_numbers():
    result = dnc.parse_do_not_call_csv(b"13800138001\n13800138002\nnot a number\n", region="CN", default_reason="r")

    assert result.header == 0 and list(result.numbers) == ["+8613800138001", "+8613800138002"]
    assert [r.line for r in result.rejected] == [3]


def test_an_unknown_header_is_rejected_with_a_hint(campaigns):
    result = dnc.parse_do_not_call_csv("客户号码\n13800138001\n".encode(), region="CN")

    assert result.header == 0 and list(result.numbers) == ["+8613800138001"]
    (rejected,) = result.rejected
    assert rejected.line == 1 and "name the number column “phone”" in rejected.reason


def test_the_region_reads_national_numbers():
    data = b"number\n020 7946 0018\n+8613800138001\n"

    british = dnc.parse_do_not_call_csv(data, region="GB")
    assert list(british.numbers) == ["+442079460018", "+8613800138001"]

    chinese = dnc.parse_do_not_call_csv(data, region="CN")
    assert "+442079460018" not in chinese.numbers


def test_gbk_and_semicolons_and_chinese_headers():
    data = "手机号;原因\n13800138001;客户要求\n".encode("gbk")

    result = dnc.parse_do_not_call_csv(data, region="CN")

    assert result.encoding == "gb18030" and result.numbers == {"+8613800138001": "客户要求"}


def test_a_workbook_is_refused_as_a_whole():
    with pytest.raises(dnc.CsvImportError, match="Excel workbook"):
        dnc.parse_do_not_call_csv(b"PK\x03\x04rest", region="CN")


# --- export and the admin --------------------------------------------------------------------------


def read_export(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:])))


def test_export_import_round_trip(admin_client):
    add_to_do_not_call("+8613800138001", reason="asked", source="keypress")
    add_to_do_not_call("+442079460018", reason="=HYPERLINK(evil)", source="admin")
    add_to_do_not_call("+8613800138002", reason="客户要求，不再来电", source="admin")

    response = admin_client.get(reverse("admin:campaigns_donotcall_export"))

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_export(response)
    assert list(rows[0]) == ["phone", "reason", "source", "created_at"]
    assert [(r["phone"], r["reason"]) for r in rows] == [
        ("+8613800138001", "asked"),
        ("+442079460018", "'=HYPERLINK(evil)"),  # a spreadsheet shows it, never runs it
        ("+8613800138002", "客户要求，不再来电"),
    ]

    exported = b"".join(admin_client.get(reverse("admin:campaigns_donotcall_export")).streaming_content)
    before = set(DoNotCall.objects.values_list("phone", "reason"))
    DoNotCall.objects.all().delete()
    exported += b"\n12345,bad line,admin,2026-01-01\n"
    result = dnc.import_do_not_call(exported, region="US", filename="export.csv")

    assert (result.added, result.already_there, len(result.rejected), result.header) == (3, 0, 1, 1)
    assert result.rejected[0].line == 6 and result.blank == 1 and result.accounted()
    assert set(DoNotCall.objects.values_list("phone", "reason")) == before


def test_admin_import_page(admin_client, campaigns):
    url = reverse("admin:campaigns_donotcall_import")
    assert admin_client.get(url).status_code == 200
    assert b"Import CSV" in admin_client.get(reverse("admin:campaigns_donotcall_changelist")).content
    waiting = call_for(campaigns[0], PHONE, Call.State.READY)

    upload = SimpleUploadedFile("dnc.csv", b"phone\n13800000000\n12345\n", content_type="text/csv")
    response = admin_client.post(url, {"file": upload, "region": "CN", "reason": "complaints"})

    assert response.status_code == 200
    assert response.context["result"].added == 1
    page = response.content.decode()
    assert "Rejected lines" in page and "12345" in page and "<td>3</td>" in page
    assert DoNotCall.objects.get().reason == "complaints"
    waiting.refresh_from_db()
    assert waiting.state == Call.State.CANCELLED


def test_admin_import_refuses_a_workbook_and_imports_nothing(admin_client):
    upload = SimpleUploadedFile("dnc.xlsx", b"PK\x03\x04" + b"\0" * 50)

    response = admin_client.post(reverse("admin:campaigns_donotcall_import"), {"file": upload, "region": "CN"})

    assert response.status_code == 200
    assert "Nothing was imported" in response.content.decode()
    assert not DoNotCall.objects.exists()


def test_import_and_export_need_permissions(client, django_user_model):
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("admin:campaigns_donotcall_import")).status_code == 403
    assert client.get(reverse("admin:campaigns_donotcall_export")).status_code == 403


def test_export_needs_a_login(client):
    response = client.get(reverse("admin:campaigns_donotcall_export"))

    assert response.status_code == 302 and "login" in response["Location"]
