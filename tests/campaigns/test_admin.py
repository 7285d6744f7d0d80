"""The admin as staff use it: every page renders, uploads and launches go through the actions."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import (
    Call,
    Campaign,
    Contact,
    ContactImport,
    ContactList,
    DoNotCall,
    ScriptTemplate,
    Variant,
)
from telephony.actions import set_auth_token
from telephony.credentials import auth_token
from telephony.models import TelephonyAccount
from tests.campaigns.test_reports import build_report_campaign
from voices.models import SpeakerConsent, Voice

HERALD_APPS = {"campaigns", "voices", "synthesis", "telephony"}
HERALD_MODELS = [model for model in admin.site._registry if model._meta.app_label in HERALD_APPS]


def admin_url(model, page: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


@pytest.fixture
def campaign(db) -> Campaign:
    return build_report_campaign()


@pytest.mark.parametrize("model", HERALD_MODELS, ids=lambda m: m._meta.label)
def test_changelist_and_add_pages_render(admin_client, admin_user, rf, campaign, model):
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    request = rf.get("/")
    request.user = admin_user
    addable = admin.site._registry[model].has_add_permission(request)
    # Records only the system writes (calls, imports, audio, events) have no add page.
    assert admin_client.get(admin_url(model, "add")).status_code == (200 if addable else 403)


def test_every_herald_model_is_registered():
    labels = {m._meta.label for m in HERALD_MODELS}
    assert labels >= {
        "campaigns.ContactList", "campaigns.Contact", "campaigns.ContactImport", "campaigns.ScriptTemplate",
        "campaigns.Campaign", "campaigns.Call", "campaigns.DoNotCall", "voices.Voice", "voices.SpeakerConsent",
        "synthesis.RenderedAudio", "telephony.TelephonyAccount", "telephony.ProviderEvent",
    }  # fmt: skip


def test_change_pages_render(admin_client, campaign):
    call = Call.objects.filter(campaign=campaign, attempts__number=2).first()
    for url in [
        admin_url(Campaign, "change", campaign.pk),
        admin_url(Call, "change", call.pk),
        admin_url(Contact, "change", call.contact_id),
        admin_url(Voice, "change", campaign.variants.first().voice_id),
        admin_url(TelephonyAccount, "change", campaign.telephony_account_id),
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_anonymous_is_sent_to_login(client, campaign):
    login = reverse("admin:login")
    for url in [
        admin_url(Campaign, "changelist"),
        admin_url(Call, "changelist"),
        reverse("admin:campaigns_campaign_report", args=[campaign.pk]),
        reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]),
        reverse("admin:campaigns_contactlist_import"),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(login), url


def test_phones_masked_in_lists_full_in_detail(admin_client, campaign):
    contact = Contact.objects.get(contact_list=campaign.contact_list, phone="+8613900000003")
    listing = admin_client.get(admin_url(Contact, "changelist")).content.decode()
    assert "+86139****0003" in listing
    assert "+8613900000003" not in listing
    assert "+8613900000003" in admin_client.get(admin_url(Contact, "change", contact.pk)).content.decode()
    calls = admin_client.get(admin_url(Call, "changelist")).content.decode()
    assert "+86139****0003" in calls and "+8613900000003" not in calls


def test_contact_search_by_phone(admin_client, campaign):
    response = admin_client.get(admin_url(Contact, "changelist"), {"q": "13900000003"})
    assert list(response.context["cl"].result_list.values_list("phone", flat=True)) == ["+8613900000003"]


def test_campaign_list_shows_progress_and_answer_rate(admin_client, campaign):
    page = admin_client.get(admin_url(Campaign, "changelist")).content.decode()
    assert "9/12 done" in page
    assert "54.5%" in page  # 6 answered of 11 dialled
    assert reverse("admin:campaigns_campaign_report", args=[campaign.pk]) in page


# --- contact import ----------------------------------------------------------------------------------


def test_import_csv_end_to_end(admin_client, admin_user, db):
    contacts = ContactList.objects.create(name="Shanghai customers")
    Contact.objects.create(
        contact_list=contacts, phone="+8613800138001", name="旧名字", timezone="Asia/Shanghai"
    )
    page = admin_client.get(reverse("admin:campaigns_contactlist_import"), {"contact_list": contacts.pk})
    assert page.status_code == 200
    assert f'<option value="{contacts.pk}" selected>' in page.content.decode()

    data = "phone,name,order_id\n13800138000,张三,A1\n12345,李四,A2\n+86 138 0013 8001,王五,A3\n13800138000,张三,A1\n"
    upload = SimpleUploadedFile("客户.csv", data.encode("utf-8"), content_type="text/csv")
    response = admin_client.post(
        reverse("admin:campaigns_contactlist_import"),
        {"contact_list": contacts.pk, "file": upload},
        follow=True,
    )

    record = ContactImport.objects.get()
    assert response.redirect_chain[-1][0] == admin_url(ContactImport, "change", record.pk)
    assert (record.filename, record.imported_by) == ("客户.csv", admin_user)
    assert (record.total_rows, record.created, record.updated, record.merged, record.rejected) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert dict(contacts.contacts.values_list("phone", "name")) == {
        "+8613800138000": "张三",
        "+8613800138001": "王五",
    }
    page = response.content.decode()
    assert "1 created, 1 updated, 1 merged, 1 rejected" in page
    assert 'id="rejected-rows"' in page
    assert "<td>3</td>" in page and "12345,李四,A2" in page and "area code" in page
    assert "utf-8" in page


def test_import_of_unreadable_file_shows_why(admin_client, db):
    contacts = ContactList.objects.create(name="No phone column")
    upload = SimpleUploadedFile("cities.csv", "name,city\n张三,上海\n".encode(), content_type="text/csv")
    response = admin_client.post(
        reverse("admin:campaigns_contactlist_import"),
        {"contact_list": contacts.pk, "file": upload},
        follow=True,
    )
    record = ContactImport.objects.get()
    assert "phone" in record.error
    assert contacts.contacts.count() == 0
    page = response.content.decode()
    assert 'class="errornote"' in page and "Nothing was imported" in page


def test_import_form_requires_a_file(admin_client, db):
    contacts = ContactList.objects.create(name="No file")
    url = reverse("admin:campaigns_contactlist_import")
    response = admin_client.post(url, {"contact_list": contacts.pk})
    assert response.status_code == 200
    assert response.context["form"].errors["file"]
    empty = SimpleUploadedFile("empty.csv", b"", content_type="text/csv")
    assert admin_client.post(url, {"contact_list": contacts.pk, "file": empty}).context["form"].errors["file"]
    assert not ContactImport.objects.exists()


def test_contact_import_is_read_only(admin_client, db):
    contacts = ContactList.objects.create(name="Read only")
    record = ContactImport.objects.create(contact_list=contacts, filename="x.csv", total_rows=1, created=1)
    response = admin_client.post(admin_url(ContactImport, "change", record.pk), {"filename": "changed.csv"})
    assert response.status_code == 403
    assert admin_client.get(admin_url(ContactImport, "add")).status_code == 403


# --- scripts, DNC, accounts, consent ------------------------------------------------------------------


def test_bad_script_is_a_form_error(admin_client, db):
    response = admin_client.post(admin_url(ScriptTemplate, "add"), {"name": "Broken", "language": "zh",
                                                                    "text": "您好{name，订单{order_id}"})  # fmt: skip
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["text"]
    assert not ScriptTemplate.objects.exists()

    ok = admin_client.post(admin_url(ScriptTemplate, "add"), {"name": "Good", "language": "zh",
                                                              "text": "您好{name}，订单{order_id:digits}"})  # fmt: skip
    assert ok.status_code == 302
    assert ScriptTemplate.objects.get().name == "Good"


def test_script_help_lists_variables(admin_client, db):
    page = admin_client.get(admin_url(ScriptTemplate, "add")).content.decode()
    assert "{name}" in page and "digits" in page


def test_do_not_call_numbers_are_normalised(admin_client, db):
    response = admin_client.post(admin_url(DoNotCall, "add"), {"phone": "138 0013 8000", "reason": "asked"})
    assert response.status_code == 302
    entry = DoNotCall.objects.get()
    assert (entry.phone, entry.reason, entry.source) == ("+8613800138000", "asked", "admin")

    bad = admin_client.post(admin_url(DoNotCall, "add"), {"phone": "12345", "reason": ""})
    assert bad.status_code == 200
    assert "not a valid phone number" in str(bad.context["adminform"].form.errors["phone"])
    duplicate = admin_client.post(admin_url(DoNotCall, "add"), {"phone": "+86 13800138000"})
    assert duplicate.status_code == 200
    assert DoNotCall.objects.count() == 1


def test_auth_token_is_write_only(admin_client, db):
    response = admin_client.post(admin_url(TelephonyAccount, "add"), {
        "name": "Twilio", "kind": "twilio", "account_sid": "AC123", "auth_token": "s3cret-token",
        "auth_token_env": "", "api_base_url": "", "caller_ids": '["+8613800000000"]', "calls_per_second": "1",
        "max_concurrent_calls": "10",
    })  # fmt: skip
    assert response.status_code == 302
    account = TelephonyAccount.objects.get()
    assert auth_token(account) == "s3cret-token"
    assert "s3cret-token" not in account.auth_token_encrypted
    page = admin_client.get(admin_url(TelephonyAccount, "change", account.pk)).content.decode()
    assert "s3cret-token" not in page and account.auth_token_encrypted not in page
    assert "stored (encrypted)" in page

    # Saving without typing a token keeps the stored one.
    admin_client.post(admin_url(TelephonyAccount, "change", account.pk), {
        "name": "Twilio", "kind": "twilio", "account_sid": "AC456", "auth_token": "", "auth_token_env": "",
        "api_base_url": "", "caller_ids": "[]", "calls_per_second": "1", "max_concurrent_calls": "10",
    })  # fmt: skip
    account.refresh_from_db()
    assert (account.account_sid, auth_token(account)) == ("AC456", "s3cret-token")


def test_revoke_consent_action(admin_client, db):
    voice = Voice.objects.create(name="Cloned", engine=Voice.Engine.GPT_SOVITS)
    consent = SpeakerConsent.objects.create(
        voice=voice, speaker_name="小李", signed_on="2025-01-02", document="c.pdf"
    )
    assert voice.is_usable()
    response = admin_client.post(
        admin_url(SpeakerConsent, "changelist"), {"action": "revoke", "_selected_action": [consent.pk]}
    )
    assert response.status_code == 302
    consent.refresh_from_db()
    assert consent.revoked_at is not None
    assert not voice.is_usable()
    assert "MISSING" in admin_client.get(admin_url(Voice, "changelist")).content.decode()


# --- campaigns: report, CSV, actions ----------------------------------------------------------------


def test_report_page(admin_client, campaign):
    response = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    # Running: the page follows progress, refreshing its live part in place every 5 s.
    assert 'id="report-live" data-refresh-seconds="5"' in page and "campaigns/report_refresh.js" in page
    assert 'id="report"' in page and 'id="progress"' in page and 'id="digits"' in page
    assert page.count('class="herald-chart"') == 1  # rates per variant
    assert page.count('class="herald-chart interval-chart"') == 3  # one per decision metric
    assert "9/12 done" in page
    total, a, b, c = response.context["table"]
    headings = response.context["headings"]

    def cell(line, heading):
        return line["cells"][headings.index(heading)]["value"]

    assert [cell(line, "Calls") for line in (total, a, b, c)] == ["12", "5", "7", "0"]
    assert [cell(line, "Answer rate") for line in (total, a, b, c)] == ["54.5%", "75.0%", "42.9%", "—"]
    assert [cell(line, "Listen-through") for line in (total, a, b, c)] == ["50.0%", "50.0%", "50.0%", "—"]
    assert response.context["digit_keys"] == ["1", "2", "3", "9"]


def test_report_page_stops_refreshing_when_finished(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.COMPLETED)
    page = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    assert 'id="report-live" data-refresh-seconds=""' in page and 'http-equiv="refresh"' not in page


def test_report_of_missing_campaign_is_404(admin_client, db):
    assert admin_client.get(reverse("admin:campaigns_campaign_report", args=[999])).status_code == 404


def test_csv_export(admin_client, campaign):
    response = admin_client.get(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "delivery-reminders-report.csv" in response["Content-Disposition"]
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeffcampaign,variant")
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert [(r["variant"], r["calls"], r["answered"]) for r in rows] == [
        ("", "12", "6"), ("A", "5", "3"), ("B", "7", "3"), ("C", "0", "0"),
    ]  # fmt: skip


def test_csv_filename_keeps_chinese(admin_client, db):
    campaign = build_report_campaign(name="双十一 配送提醒")
    response = admin_client.get(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]))
    assert "filename*=utf-8''" in response["Content-Disposition"].lower()


def launchable_campaign() -> Campaign:
    voice = Voice.objects.create(name="Embedded", engine=Voice.Engine.EMBEDDED)
    account = TelephonyAccount.objects.create(name="Sandbox", caller_ids=["+8613800000000"])
    set_auth_token(account, "token")
    contacts = ContactList.objects.create(name="Customers")
    for i in range(3):
        Contact.objects.create(contact_list=contacts, phone=f"+86138001380{i:02d}", name=f"客户{i}",
                               timezone="Asia/Shanghai")  # fmt: skip
    script = ScriptTemplate.objects.create(name="Reminder", text="您好{name}，您的快递今天送达。")
    campaign = Campaign.objects.create(name="Launch me", contact_list=contacts, telephony_account=account,
                                       caller_id="+8613800000000")  # fmt: skip
    Variant.objects.create(campaign=campaign, name="A", voice=voice, script=script)
    return campaign


def run_action(admin_client, action: str, campaign: Campaign):
    return admin_client.post(
        admin_url(Campaign, "changelist"), {"action": action, "_selected_action": [campaign.pk]}, follow=True
    )


def test_launch_pause_resume_cancel_through_admin(admin_client, db):
    campaign = launchable_campaign()

    response = run_action(admin_client, "launch", campaign)
    assert "Launch me: launched, 3 calls planned." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.calls.count() == 3

    run_action(admin_client, "pause", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED

    response = run_action(admin_client, "launch", campaign)
    messages = [str(m) for m in response.context["messages"]]
    assert any("not launched" in m and "paused" in m for m in messages)
    assert [m.level_tag for m in response.context["messages"]] == ["error"]

    run_action(admin_client, "resume", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING

    response = run_action(admin_client, "cancel", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert "cancelled; 3 calls not yet dialled were dropped" in response.content.decode()


def test_launch_error_is_shown(admin_client, db):
    campaign = launchable_campaign()
    campaign.variants.all().delete()
    response = run_action(admin_client, "launch", campaign)
    (message,) = list(response.context["messages"])
    assert message.level_tag == "error"
    assert "add at least one variant" in str(message)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_variants_locked_after_launch(admin_client, campaign):
    page = admin_client.get(admin_url(Campaign, "change", campaign.pk)).content.decode()
    assert 'name="variants-0-weight"' not in page  # running: variant inline is read-only


def test_campaign_page_links_to_report(admin_client, campaign):
    page = admin_client.get(admin_url(Campaign, "change", campaign.pk)).content.decode()
    assert reverse("admin:campaigns_campaign_report", args=[campaign.pk]) in page


def test_contact_form_normalises_in_the_lists_region(admin_client, db):
    contacts = ContactList.objects.create(name="London", default_region="GB")
    fields = {"contact_list": contacts.pk, "name": "Ann", "timezone": "Europe/London", "fields": "{}"}
    assert (
        admin_client.post(admin_url(Contact, "add"), {**fields, "phone": "020 7946 0018"}).status_code == 302
    )
    assert Contact.objects.get().phone == "+442079460018"
    duplicate = admin_client.post(admin_url(Contact, "add"), {**fields, "phone": "+44 20 7946 0018"})
    assert duplicate.status_code == 200 and Contact.objects.count() == 1
    bad_zone = admin_client.post(
        admin_url(Contact, "add"), {**fields, "phone": "020 7946 0019", "timezone": "GMT+8"}
    )
    assert "not a time zone" in str(bad_zone.context["adminform"].form.errors["timezone"])


def test_contact_list_pages_link_to_import(admin_client, db):
    contacts = ContactList.objects.create(name="Links")
    import_url = reverse("admin:campaigns_contactlist_import")
    assert import_url in admin_client.get(admin_url(ContactList, "changelist")).content.decode()
    page = admin_client.get(admin_url(ContactList, "change", contacts.pk)).content.decode()
    assert f"{import_url}?contact_list={contacts.pk}" in page


def test_campaign_form_refuses_one_key_with_two_meanings(rf, admin_user, db):
    model_admin = admin.site._registry[Campaign]
    request = rf.get("/")
    request.user = admin_user
    form_class = model_admin.get_form(request, None, fields=["opt_out_digit", "confirm_digit", "reschedule_digit"])
    form = form_class(data={"opt_out_digit": "9", "confirm_digit": "2", "reschedule_digit": "2"})
    assert not form.is_valid()
    assert form.errors["confirm_digit"] == ["key 2 cannot mean both confirm and reschedule: choose different keys"]
    form = form_class(data={"opt_out_digit": "9", "confirm_digit": "1", "reschedule_digit": ""})
    form.is_valid()
    assert "confirm_digit" not in form.errors and "reschedule_digit" not in form.errors
