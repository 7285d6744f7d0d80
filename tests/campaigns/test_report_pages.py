"""The report pages and downloads as staff use them, every number checked against hand-written SQL over the
attempt rows (tests/campaigns/direct_sql.py), on a seeded campaign with callees in four time zones."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import openpyxl
import pytest
from django.urls import reverse

from campaigns import exports, reports
from campaigns.lifecycle import rebuild_call_facts
from campaigns.models import Call, CallAttempt, Campaign, Contact, ContactList, ScriptTemplate, Variant
from telephony.models import TelephonyAccount
from tests.campaigns.direct_sql import heatmap_counts, variant_counts
from voices.models import Voice

pytestmark = pytest.mark.django_db

# A half-hour zone, one that left daylight saving inside the campaign (1 Nov 2026), one without it.
ZONES = ["Asia/Shanghai", "Asia/Kolkata", "America/New_York", "Europe/London"]
STATUSES = ["completed", "completed", "completed", "no-answer", "busy", "failed"]
ANSWERED_BY = ["human", "human", "unknown", "machine_start", "machine_end_beep", "fax", ""]


def build_random_campaign(seed: int = 7, calls: int = 300, name: str = "Random reminders") -> Campaign:
    """A campaign whose calls and attempts are drawn at random (seeded), written as the webhooks leave them."""
    rng = random.Random(seed)
    voices = [
        Voice.objects.get_or_create(name=n, defaults={"engine": Voice.Engine.EMBEDDED})[0] for n in ("晓晓", "Ava")
    ]
    account, _ = TelephonyAccount.objects.get_or_create(name="Sandbox", defaults={"caller_ids": ["+8613800000000"]})
    script = ScriptTemplate.objects.create(name=f"{name} script", text="您好{name}，确认请按1，改期请按2。")
    contact_list = ContactList.objects.create(name=f"{name} list")
    campaign = Campaign.objects.create(
        name=name, contact_list=contact_list, telephony_account=account, caller_id="+8613800000000",
        status=Campaign.Status.RUNNING, confirm_digit="1", reschedule_digit="2",
    )  # fmt: skip
    variants = [
        Variant.objects.create(campaign=campaign, name=label, voice=voice, script=script)
        for label, voice in (("A", voices[0]), ("B", voices[0]), ("C", voices[1]))
    ]
    start = datetime(2026, 10, 28, 0, 0, tzinfo=UTC)
    for i in range(calls):
        phone = f"+86137{seed:02d}{i:06d}"
        zone = rng.choice(ZONES)
        contact = Contact.objects.create(contact_list=contact_list, phone=phone, name=f"客户{i}", timezone=zone)
        state, outcome = rng.choice(
            [(Call.State.DONE, Call.Outcome.ANSWERED), (Call.State.DONE, Call.Outcome.OPTED_OUT),
             (Call.State.DONE, Call.Outcome.DO_NOT_CALL), (Call.State.INVALID, ""), (Call.State.READY, ""),
             (Call.State.DONE, Call.Outcome.NO_ANSWER), (Call.State.FAILED, Call.Outcome.FAILED)]
        )  # fmt: skip
        attempts = 0 if state in (Call.State.INVALID,) else rng.choice([0, 1, 1, 2, 3])
        call = Call.objects.create(
            campaign=campaign, contact=contact, variant=rng.choice(variants), phone=phone, timezone=zone,
            state=state, outcome=outcome, attempts_made=attempts,
        )  # fmt: skip
        for number in range(1, attempts + 1):
            status = rng.choice(STATUSES)
            answered = status == "completed"
            CallAttempt.objects.create(
                call=call, number=number, provider="twilio", status=status,
                answered_by=rng.choice(ANSWERED_BY) if answered else "",
                digits=rng.choice(["", "", "1", "2", "9", "3"]) if answered else "",
                listened_to_end=answered and rng.random() < 0.6,
                duration=rng.randint(3, 60) if answered else None,
                placed_at=start + timedelta(minutes=rng.randint(0, 14 * 24 * 60)) if rng.random() < 0.95 else None,
            )  # fmt: skip
    rebuild_call_facts(Call.objects.filter(campaign=campaign))
    return campaign


@pytest.fixture
def campaign() -> Campaign:
    return build_random_campaign()


class _Tables(HTMLParser):
    """Cells of the table with the given id: {row label: {heading: text}}, the rate's interval left out."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.in_cell, self.skip = table_id, False, False, 0
        self.headings: list[str] = []
        self.rows: list[list[str]] = []
        self.attrs: list[dict] = []
        self.current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs_d = dict(attrs)
        if tag == "table" and attrs_d.get("id") == self.table_id:
            self.inside = True
        if not self.inside:
            return
        if tag == "tr":
            self.current = []
            self.attrs.append(attrs_d)
        elif tag in ("td", "th"):
            self.in_cell = True
            self.current.append("")
        elif tag == "span" and "ci" in (attrs_d.get("class") or ""):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if not self.inside:
            return
        if tag == "span" and self.skip:
            self.skip -= 1
        elif tag in ("td", "th"):
            self.in_cell = False
        elif tag == "tr" and self.current is not None:
            self.rows.append([c.strip() for c in self.current])
            self.current = None
        elif tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.in_cell and not self.skip and self.current is not None:
            self.current[-1] += data

    @property
    def columns(self) -> list[list[str]]:
        """The rows below the column-group heading row (when the table has one)."""
        return [row for row, attrs in zip(self.rows, self.attrs, strict=True) if attrs.get("class") != "groups"]

    def by_label(self) -> dict[str, dict[str, str]]:
        head, *body = self.columns
        return {row[0]: dict(zip(head, row, strict=True)) for row in body}


def parse_table(html: str, table_id: str) -> _Tables:
    parser = _Tables(table_id)
    parser.feed(html)
    return parser


def _int(text: str) -> int:
    return int(text.replace(",", ""))


COUNTS = ["calls", "attempts", "dialled", "answered", "human", "listened_to_end", "opted_out", "confirmed",
          "rescheduled"]  # fmt: skip
HEADINGS = {"calls": "Calls", "attempts": "Attempts", "dialled": "Dialled", "answered": "Answered", "human": "Human",
            "listened_to_end": "Listened to end", "opted_out": "Opted out", "confirmed": "Confirmed",
            "rescheduled": "Rescheduled"}  # fmt: skip


def test_report_page_numbers_equal_direct_sql(admin_client, campaign):
    expected = variant_counts(campaign.pk)
    html = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    table = parse_table(html, "report").by_label()
    assert set(table) == {"All variants", "A", "B", "C"}
    for name, counts in expected.items():
        shown = table[name]
        assert {key: _int(shown[HEADINGS[key]]) for key in COUNTS} == {key: counts[key] for key in COUNTS}, name
        timed_attempts = counts["timed_attempts"]
        mean = f"{counts['talk_seconds'] / timed_attempts:.1f} s" if timed_attempts else "—"
        assert shown["Mean duration"] == mean
        assert shown["Answer rate"] == (f"{100 * counts['answered'] / counts['dialled']:.1f}%" if counts["dialled"] else "—")
    for key in COUNTS:
        assert _int(table["All variants"][HEADINGS[key]]) == sum(c[key] for c in expected.values())
    digits = parse_table(html, "digits").by_label()
    for name, counts in expected.items():
        assert {d: _int(v) for d, v in digits[name].items() if d != "Variant" and v != "0"} == counts["digits"]


def test_csv_and_excel_downloads_equal_direct_sql(admin_client, campaign):
    from openpyxl import load_workbook

    expected = variant_counts(campaign.pk)
    response = admin_client.get(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8-sig")
    csv_rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(text))}

    response = admin_client.get(reverse("admin:campaigns_campaign_report_xlsx", args=[campaign.pk]))
    assert response["Content-Type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert "random-reminders-report.xlsx" in response["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    assert book.sheetnames == ["Variants", "Decisions", "Hours (callee-local)"]
    header, *rows = list(book["Variants"].values)
    xlsx_rows = {row[1] or "": dict(zip(header, row, strict=True)) for row in rows}

    for name, counts in expected.items():
        for key in COUNTS:
            assert int(csv_rows[name][key]) == counts[key], (name, key)
            assert xlsx_rows[name][key] == counts[key], (name, key)
        for digit, calls in counts["digits"].items():
            assert int(csv_rows[name][f"digit_{digit}"]) == calls
        rate = counts["answered"] / counts["dialled"]
        assert float(csv_rows[name]["answer_rate"]) == pytest.approx(rate, abs=5e-5)
        assert xlsx_rows[name]["answer_rate"] == pytest.approx(rate)
        assert xlsx_rows[name]["answer_rate_low"] < rate < xlsx_rows[name]["answer_rate_high"]

    heat_header, *heat = list(book["Hours (callee-local)"].values)
    direct = heatmap_counts(campaign.pk)
    days = reports.WEEKDAYS
    assert {(r[0], r[2]): (r[3], r[4]) for r in heat} == direct
    assert all(days[r[0]] == r[1] for r in heat)
    assert heat_header[:5] == ("weekday_number", "weekday", "hour", "attempts", "answered")


def test_heatmap_page_equals_each_attempt_converted_to_local_time(admin_client, campaign):
    direct = heatmap_counts(campaign.pk)
    assert len({hour for _, hour in direct}) > 12  # four zones spread the calls over the day
    html = admin_client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk])).content.decode()
    table = parse_table(html, "heatmap")
    hours = [int(h) for h in table.rows[0][1:-1]]
    shown: dict[tuple[int, int], tuple[int, int]] = {}
    import re

    for match in re.finditer(r'<tr data-day="(\w+)">(.*?)</tr>', html, re.S):
        day = reports.WEEKDAYS.index(match.group(1))
        cells = re.findall(r"<td([^>]*)>", match.group(2))[: len(hours)]
        for hour, attrs in zip(hours, cells, strict=True):
            found = re.search(r'data-attempts="(\d+)" data-answered="(\d+)"', attrs)
            if found:
                shown[(day, hour)] = (int(found.group(1)), int(found.group(2)))
    assert shown == direct

    one = admin_client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]) + "?variant=B")
    assert one.status_code == 200 and "(variant B)" in one.content.decode()
    assert admin_client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]) + "?variant=Z").status_code == 404
    download = admin_client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]) + "?format=csv")
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert sum(int(r["attempts"]) for r in rows) == sum(a for a, _ in direct.values())
    # The same table in Excel, as the README promises; and the page names its rate for what it counts.
    excel = admin_client.get(reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]) + "?format=xlsx")
    assert excel["Content-Type"] == exports.XLSX_TYPE and "hours.xlsx" in excel["Content-Disposition"]
    header, *cells = list(openpyxl.load_workbook(io.BytesIO(excel.content))["Hours (callee-local)"].values)
    assert {(r[0], r[2]): (r[3], r[4]) for r in cells} == direct and header[3:5] == ("attempts", "answered")
    assert "Attempt answer rate by weekday and hour" in html and "counts each dialled call once" in html


def test_heatmap_follows_daylight_saving_and_half_hour_zones(db):
    campaign = build_random_campaign(calls=0, name="Zones")
    variant = campaign.variants.get(name="A")
    cases = [
        # New York left daylight saving on Sunday 1 November 2026 at 06:00 UTC.
        ("America/New_York", datetime(2026, 10, 30, 13, 30, tzinfo=UTC), (4, 9)),  # Fri 09:30 EDT
        ("America/New_York", datetime(2026, 11, 2, 13, 30, tzinfo=UTC), (0, 8)),  # Mon 08:30 EST
        ("Asia/Kolkata", datetime(2026, 11, 2, 3, 40, tzinfo=UTC), (0, 9)),  # 09:10 IST
        ("Asia/Kolkata", datetime(2026, 11, 2, 3, 20, tzinfo=UTC), (0, 8)),  # 08:50 IST
        ("Asia/Kathmandu", datetime(2026, 11, 2, 3, 10, tzinfo=UTC), (0, 8)),  # 08:55 NPT (+05:45)
        ("Asia/Kathmandu", datetime(2026, 11, 2, 3, 20, tzinfo=UTC), (0, 9)),  # 09:05 NPT
        ("Asia/Shanghai", datetime(2026, 11, 1, 16, 5, tzinfo=UTC), (0, 0)),  # Mon 00:05 CST
    ]
    for i, (zone, placed_at, _) in enumerate(cases):
        contact = Contact.objects.create(contact_list=campaign.contact_list, phone=f"+8613900{i:06d}", timezone=zone)
        call = Call.objects.create(
            campaign=campaign, contact=contact, variant=variant, phone=contact.phone, timezone=zone, attempts_made=1
        )
        CallAttempt.objects.create(call=call, number=1, provider="twilio", status="completed", placed_at=placed_at)
    result = reports.heatmap(reports.campaign_attempts(campaign))
    expected: dict[tuple[int, int], tuple[int, int]] = {}
    for _, _, cell in cases:
        attempts, answered = expected.get(cell, (0, 0))
        expected[cell] = (attempts + 1, answered + 1)
    assert result.cells == expected == heatmap_counts(campaign.pk)


def test_voices_page_sums_every_campaign(admin_client, campaign):
    other = build_random_campaign(seed=8, calls=120, name="Other campaign")
    by_voice: dict[str, dict[str, int]] = {}
    for camp in (campaign, other):
        voice_of = dict(camp.variants.values_list("name", "voice__name"))
        for name, counts in variant_counts(camp.pk).items():
            total = by_voice.setdefault(voice_of[name], dict.fromkeys(COUNTS, 0))
            for key in COUNTS:
                total[key] += counts[key]
    response = admin_client.get(reverse("admin:voices_voice_report"))
    table = parse_table(response.content.decode(), "report").by_label()
    assert set(table) == {"晓晓", "Ava"}
    for voice, counts in by_voice.items():
        assert {key: _int(table[voice][HEADINGS[key]]) for key in COUNTS} == counts, voice
        assert table[voice]["Campaigns"] == "2"
    xlsx = admin_client.get(reverse("admin:voices_voice_report") + "?format=xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    voice = Voice.objects.get(name="Ava")
    page = admin_client.get(reverse("admin:voices_voice_heatmap", args=[voice.pk]))
    assert page.status_code == 200 and 'id="heatmap"' in page.content.decode()
    hours = admin_client.get(reverse("admin:voices_voice_heatmap", args=[voice.pk]) + "?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(hours.content))["Hours (callee-local)"]
    assert sum(row[3] for row in list(sheet.values)[1:]) == CallAttempt.objects.filter(call__variant__voice=voice, placed_at__isnull=False).count()


def test_decision_box_reads_as_sentences(admin_client, db):
    campaign = build_random_campaign(calls=0, name="Big test")
    a, b = campaign.variants.get(name="A"), campaign.variants.get(name="B")
    campaign.variants.filter(name="C").delete()
    # A: 400 of 1000 dialled answered; B: 520 of 1000 (12 points more).
    calls = []
    for variant, answered in ((a, 400), (b, 520)):
        for i in range(1000):
            phone = f"+86138{variant.pk:02d}{i:06d}"
            contact = Contact(contact_list=campaign.contact_list, phone=phone, timezone="Asia/Shanghai")
            contact.save()
            calls.append(
                Call(
                    campaign=campaign, contact=contact, variant=variant, phone=phone, timezone="Asia/Shanghai",
                    state=Call.State.DONE, attempts_made=1, answered=i < answered, human_answered=i < answered,
                )
            )  # fmt: skip
    Call.objects.bulk_create(calls)
    html = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    assert "B answers 12.0 points more than A (95% CI" in html and ": B wins." in html
    assert 'data-verdict="wins"' in html
    # Nobody listened to the end in either variant: no difference worth acting on (within 2 points).
    assert 'data-metric="listen-through" data-verdict="no_difference"' in html
    assert "split-warning" not in html  # 1000 / 1000 with equal weights


def test_a_lopsided_split_is_called_out(admin_client, db):
    campaign = build_random_campaign(calls=0, name="Lopsided")
    a, b = campaign.variants.get(name="A"), campaign.variants.get(name="B")
    campaign.variants.filter(name="C").delete()
    for variant, n in ((a, 700), (b, 500)):
        for i in range(n):
            phone = f"+86136{variant.pk:02d}{i:06d}"
            contact = Contact.objects.create(contact_list=campaign.contact_list, phone=phone, timezone="Asia/Shanghai")
            Call.objects.create(campaign=campaign, contact=contact, variant=variant, phone=phone, timezone="Asia/Shanghai")
    html = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    assert 'id="split-warning"' in html


def test_reports_need_a_login(client, campaign):
    for url in (
        reverse("admin:campaigns_campaign_report", args=[campaign.pk]),
        reverse("admin:campaigns_campaign_report_xlsx", args=[campaign.pk]),
        reverse("admin:campaigns_campaign_heatmap", args=[campaign.pk]),
        reverse("admin:voices_voice_report"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


def test_the_decision_box_shows_the_finished_calls_it_compares(admin_client, campaign):
    html = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    report = reports.campaign_report(campaign)
    assert report.comparisons, "the random campaign has enough calls for decisions"
    settled = {row.label: row for row in report.settled}
    tables = re.findall(r'<table class="decision-counts" data-metric="([^"]+)">(.*?)</table>', html, re.S)
    assert [label for label, _ in tables] == [reports.METRICS[k].label for k in report.comparisons]
    answer = dict(tables)["Answer rate"]
    assert "Of finished dialled calls" in answer and "<th class=\"num\">Answered</th>" in answer
    for label, row in settled.items():
        cells = re.search(rf'<tr data-row="{label}">.*?<td class="num">(\d+)</td><td class="num">(\d+)</td>', answer, re.S)
        assert (int(cells.group(1)), int(cells.group(2))) == (row.answered, row.dialled), label
    listen = dict(tables)["Listen-through"]
    assert "Of finished calls answered by a person" in listen and "Listened to end" in listen


def test_the_results_columns_are_grouped_and_the_groups_span_them_all(admin_client, campaign):
    html = admin_client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk])).content.decode()
    groups = re.search(r'<tr class="groups">(.*?)</tr>', html, re.S).group(1)
    spans = [(label, int(span)) for span, label in re.findall(r'<th colspan="(\d+)" scope="colgroup" class="group">([^<]*)</th>', groups)]
    assert [label for label, _ in spans] == ["Calls", "Reached", "After the message", "Not reached", "Not called", "Time"]
    head = parse_table(html, "report").columns[0]
    assert head[:3] == ["Variant", "Voice", "Script"] and 3 + sum(span for _, span in spans) == len(head)
    reached = head[3 + 3 : 3 + 3 + dict(spans)["Reached"]]
    assert reached == ["Attempts", "Dialled", "Answered", "Answer rate", "Human", "Human-answer rate", "Machine"]
