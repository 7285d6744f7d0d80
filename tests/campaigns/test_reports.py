"""Campaign report figures, checked against a campaign whose every call and attempt is written out below."""

from __future__ import annotations

import csv
import importlib
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection

from campaigns import reports
from campaigns.lifecycle import rebuild_call_facts
from campaigns.models import Call, CallAttempt, Campaign, Contact, ContactList, ScriptTemplate, Variant
from telephony.models import TelephonyAccount
from voices.models import Voice

S, Out, A = Call.State, Call.Outcome, CallAttempt.Status


def local(hour: int, minute: int) -> datetime:
    return datetime(2025, 3, 3, hour, minute, tzinfo=ZoneInfo(settings.TIME_ZONE))


# (variant, state, outcome, [(status, answered_by, digits, listened_to_end, placed_at)])
CALLS = [
    # variant A: 5 counted calls, one on the do-not-call list, one invalid
    ("A", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "1", True, local(10, 15))]),
    ("A", S.DONE, Out.MACHINE, [(A.NO_ANSWER, "", "", False, local(10, 40)),
                              (A.COMPLETED, "machine_end_beep", "", True, local(11, 5))]),
    ("A", S.DONE, Out.OPTED_OUT, [(A.COMPLETED, "human", "9", False, local(11, 20))]),
    ("A", S.DONE, Out.BUSY, [(A.BUSY, "", "", False, local(11, 30))]),
    ("A", S.READY, "", []),
    ("A", S.DONE, Out.DO_NOT_CALL, []),
    ("A", S.INVALID, "", []),
    # variant B: 7 counted calls
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "2", False, local(9, 5)),
                               (A.COMPLETED, "", "", True, local(13, 10))]),
    ("B", S.DONE, Out.ANSWERED, [(A.COMPLETED, "human", "1", False, local(9, 10)),
                               (A.COMPLETED, "unknown", "3", False, local(13, 20))]),
    ("B", S.DONE, Out.NO_ANSWER, [(A.NO_ANSWER, "", "", False, local(9, 30)),
                                (A.NO_ANSWER, "", "", False, local(11, 45)),
                                (A.NO_ANSWER, "", "", False, local(13, 50))]),
    ("B", S.FAILED, Out.FAILED, [(A.FAILED, "", "", False, local(9, 40))]),
    ("B", S.IN_PROGRESS, "", [(A.IN_PROGRESS, "", "", False, local(13, 55))]),
    ("B", S.DIALING, "", [(A.CREATED, "", "", False, None)]),
    ("B", S.DONE, Out.MACHINE, [(A.COMPLETED, "fax", "", False, local(13, 58))]),
]  # fmt: skip


def build_report_campaign(
    name: str = "Delivery reminders", status: str = Campaign.Status.RUNNING
) -> Campaign:
    """A campaign with variants A, B (the CALLS above) and C (no calls yet)."""
    voice, _ = Voice.objects.get_or_create(name="Embedded zh", defaults={"engine": Voice.Engine.EMBEDDED})
    account, _ = TelephonyAccount.objects.get_or_create(
        name="Sandbox", defaults={"caller_ids": ["+8613800000000"]}
    )
    contact_list = ContactList.objects.create(name=f"{name} contacts")
    script_a = ScriptTemplate.objects.create(name=f"{name} short", text="您好{name}，您的快递今天送达。")
    script_b = ScriptTemplate.objects.create(
        name=f"{name} long", text="您好{name}，订单{order_id:digits}今天送达。"
    )
    campaign = Campaign.objects.create(
        name=name,
        contact_list=contact_list,
        telephony_account=account,
        caller_id="+8613800000000",
        status=status,
    )
    variants = {
        "A": Variant.objects.create(campaign=campaign, name="A", voice=voice, script=script_a),
        "B": Variant.objects.create(campaign=campaign, name="B", voice=voice, script=script_b),
        "C": Variant.objects.create(campaign=campaign, name="C", voice=voice, script=script_a),
    }
    for i, (variant, state, outcome, attempts) in enumerate(CALLS):
        phone = f"+86139{i:08d}"
        contact = Contact.objects.create(
            contact_list=contact_list, phone=phone, name=f"客户{i}", timezone="Asia/Shanghai"
        )
        call = Call.objects.create(
            campaign=campaign, contact=contact, variant=variants[variant], phone=phone, timezone="Asia/Shanghai",
            state=state, outcome=outcome, attempts_made=len(attempts), text=f"您好客户{i}",
        )  # fmt: skip
        for number, (status_, answered_by, digits, listened, placed_at) in enumerate(attempts, start=1):
            CallAttempt.objects.create(
                call=call, number=number, provider="twilio", status=status_, answered_by=answered_by,
                digits=digits, listened_to_end=listened, placed_at=placed_at,
            )  # fmt: skip
    # The rows above are written directly, not through the webhooks that keep each call's facts.
    rebuild_call_facts(Call.objects.filter(campaign=campaign))
    return campaign


@pytest.fixture
def campaign(db) -> Campaign:
    return build_report_campaign()


def counts(row: reports.ReportRow) -> dict[str, int]:
    names = ["calls", "excluded_dnc", "invalid", "attempts", "dialled", "answered", "human", "machine",
             "listened_to_end", "opted_out", "busy", "no_answer", "failed", "pending", "done"]  # fmt: skip
    return {name: getattr(row, name) for name in names}


def test_variant_rows(campaign):
    report = reports.campaign_report(campaign)
    a, b, c = report.variants

    assert (a.label, a.voice, a.script) == ("A", "Embedded zh", "Delivery reminders short")
    assert counts(a) == dict(calls=5, excluded_dnc=1, invalid=1, attempts=5, dialled=4, answered=3, human=2,
                             machine=1, listened_to_end=1, opted_out=1, busy=1, no_answer=0, failed=0,
                             pending=1, done=4)  # fmt: skip
    assert (a.answer_rate, a.human_rate, a.listen_rate) == (0.75, 0.5, 0.5)
    assert a.digits == {"1": 1, "9": 1}

    # B: the digits of a call are those of its last attempt with digits; an attempt row that was written
    # but not yet placed still makes the call dialled; "unknown" and blank answered_by count as a person.
    assert counts(b) == dict(calls=7, excluded_dnc=0, invalid=0, attempts=11, dialled=7, answered=3, human=2,
                             machine=1, listened_to_end=1, opted_out=0, busy=0, no_answer=1, failed=1,
                             pending=2, done=5)  # fmt: skip
    assert b.answer_rate == pytest.approx(3 / 7)
    assert b.human_rate == pytest.approx(2 / 7)
    assert b.listen_rate == 0.5
    assert b.digits == {"2": 1, "3": 1}

    assert counts(c) == dict.fromkeys(counts(c), 0)
    assert (c.answer_rate, c.human_rate, c.listen_rate) == (None, None, None)
    assert c.digits == {}


def test_campaign_row_is_the_sum(campaign):
    total = reports.campaign_report(campaign).total
    assert total.variant_id is None
    assert counts(total) == dict(calls=12, excluded_dnc=1, invalid=1, attempts=16, dialled=11, answered=6,
                                 human=4, machine=2, listened_to_end=2, opted_out=1, busy=1, no_answer=1,
                                 failed=1, pending=3, done=9)  # fmt: skip
    assert total.answer_rate == pytest.approx(6 / 11)
    assert total.listen_rate == 0.5
    assert total.digits == {"1": 1, "2": 1, "3": 1, "9": 1}
    assert total.calls == total.pending + total.done
    assert total.calls + total.excluded_dnc + total.invalid == Call.objects.filter(campaign=campaign).count()


def test_other_campaigns_do_not_leak_in(campaign):
    build_report_campaign("Appointment confirmations")
    assert reports.campaign_report(campaign).total.calls == 12


def test_nothing_dialled_gives_no_rates(db):
    campaign = build_report_campaign()
    CallAttempt.objects.all().delete()
    Call.objects.update(attempts_made=0)
    rebuild_call_facts(Call.objects.all())
    total = reports.campaign_report(campaign).total
    assert (total.dialled, total.answer_rate, total.human_rate, total.listen_rate) == (0, None, None, None)
    assert reports.format_rate(total.answer_rate) == "—"
    assert total.interval("answer_rate") is None and total.mean_duration is None
    assert reports.heatmap(reports.campaign_attempts(campaign)).cells == {}


def test_progress_counts_every_state(campaign):
    assert reports.progress(campaign) == {
        "invalid": 1, "rendering": 0, "ready": 1, "dialing": 1, "in_progress": 1, "done": 9, "failed": 1,
        "cancelled": 0,
    }  # fmt: skip


def test_heatmap_in_callee_local_time(campaign):
    result = reports.heatmap(reports.campaign_attempts(campaign))
    # 2025-03-03 was a Monday; every callee is in Asia/Shanghai, as the placed_at times above.
    assert result.by_hour() == [(9, 4, 2), (10, 2, 1), (11, 4, 2), (12, 0, 0), (13, 5, 3)]
    assert {day for day, _ in result.cells} == {0}
    assert (result.attempts, result.answered) == (15, 8)


def test_summary_annotations_match_the_report(campaign):
    summary = reports.with_summary(Campaign.objects.filter(pk=campaign.pk)).get()
    assert (summary.summary_calls, summary.summary_done) == (12, 9)
    assert (summary.summary_dialled, summary.summary_answered) == (11, 6)


def test_report_queries_do_not_grow_with_calls(campaign, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        reports.campaign_report(campaign)


def test_csv(campaign):
    text = reports.to_csv(*reports.export_rows(reports.campaign_report(campaign)))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["variant"] for r in rows] == ["", "A", "B", "C"]
    assert all(r["campaign"] == "Delivery reminders" for r in rows)
    total, a, b, c = rows
    assert (total["calls"], total["dialled"], total["answered"], total["human"]) == ("12", "11", "6", "4")
    assert (total["digit_1"], total["digit_2"], total["digit_3"], total["digit_9"]) == ("1", "1", "1", "1")
    assert (a["answer_rate"], a["human_rate"], a["listen_rate"]) == ("0.7500", "0.5000", "0.5000")
    assert (a["voice"], a["script"], a["digit_9"], a["digit_2"]) == (
        "Embedded zh",
        "Delivery reminders short",
        "1",
        "0",
    )
    assert b["answer_rate"] == "0.4286"
    assert (c["calls"], c["answer_rate"], c["listen_rate"]) == ("0", "", "")
    assert text.splitlines()[0].startswith(
        "campaign,variant,voice,script,calls,excluded_dnc,invalid,attempts"
    )


def test_a_stalled_render_queue_is_called_out(db, make_campaign):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.launch import launch_campaign
    from campaigns.reports import stalled_rendering

    campaign = make_campaign(3)
    launch_campaign(campaign)
    assert stalled_rendering(campaign) is None  # just launched
    later = timezone.now() + timedelta(minutes=10)
    message = stalled_rendering(campaign, now=later)
    assert message and "3 calls are waiting for audio" in message and "synthesis worker" in message
    campaign.calls.update(state="ready")
    assert stalled_rendering(campaign, now=later) is None


def test_rebuild_command_repairs_facts_from_the_attempts(campaign):
    from django.core.management import call_command

    before = reports.campaign_report(campaign).total
    Call.objects.update(answered=False, human_answered=False, listened_to_end=False, final_digits="", talk_seconds=0)
    assert reports.campaign_report(campaign).total.answered == 0
    out = io.StringIO()
    call_command("rebuild_call_facts", campaign=[campaign.pk], stdout=out)
    assert out.getvalue().strip() == "14 calls updated"
    after = reports.campaign_report(campaign).total
    assert counts(after) == counts(before) and after.digits == before.digits


def test_decisions_count_further_trials_in_the_metric_s_own_unit():
    a = reports.ReportRow(label="A", dialled=400, answered=200, human=150, listened_to_end=90)
    b = reports.ReportRow(label="B", dialled=400, answered=210, human=160, listened_to_end=100)
    comparisons = reports.compare_variants([a, b], min_effect=0.02)
    assert list(comparisons) == ["answer_rate", "listen_rate", "confirm_rate"]
    (answer,), (listen,), (confirm,) = comparisons.values()
    assert answer.sentence.endswith("more calls per variant.")
    assert listen.sentence.endswith("more calls answered by a person per variant.")
    assert (listen.control_rate, listen.challenger_rate) == (0.6, 0.625)
    assert confirm.control_rate == 0.0


def test_progress_comes_with_the_report(campaign):
    assert reports.campaign_report(campaign).progress == reports.progress(campaign)


def test_decisions_count_finished_calls_only(db):
    """A call waiting for a retry has no final outcome yet: it is in the table, not in the A/B comparison."""
    from tests.campaigns.test_report_pages import build_random_campaign

    campaign = build_random_campaign(calls=0, name="Retries pending")
    a, b = campaign.variants.get(name="A"), campaign.variants.get(name="B")
    campaign.variants.filter(name="C").delete()
    calls = []
    for variant in (a, b):
        for i in range(300):
            phone = f"+86135{variant.pk:02d}{i:06d}"
            contact = Contact.objects.create(contact_list=campaign.contact_list, phone=phone, timezone="Asia/Shanghai")
            # 200 finished (half answered), then 100 that rang out once and wait for their retry.
            finished = i < 200
            calls.append(
                Call(campaign=campaign, contact=contact, variant=variant, phone=phone, timezone="Asia/Shanghai",
                     state=Call.State.DONE if finished else Call.State.READY, attempts_made=1,
                     answered=finished and i % 2 == 0, human_answered=finished and i % 2 == 0)
            )  # fmt: skip
    Call.objects.bulk_create(calls)
    report = reports.campaign_report(campaign)
    assert [(row.dialled, row.answered) for row in report.variants] == [(300, 100), (300, 100)]
    assert [(row.dialled, row.answered) for row in report.settled] == [(200, 100), (200, 100)]
    (answer,) = report.comparisons["answer_rate"]
    assert (answer.control_rate, answer.challenger_rate) == (0.5, 0.5)
    assert report.progress["ready"] == 200 and report.progress["done"] == 400


def test_the_migration_that_added_the_facts_fills_them_as_the_app_computes_them(campaign):
    """Migration 0005 carries its own SQL (a migration must not import live code): on this database it gives
    every call the facts campaigns.lifecycle.rebuild_call_facts gives it."""
    facts = ["answered", "human_answered", "listened_to_end", "final_digits", "timed_attempts", "talk_seconds"]
    expected = sorted(Call.objects.values_list("pk", *facts))
    assert any(row[1] for row in expected) and any(row[4] for row in expected)  # the fixture has answered calls
    Call.objects.update(answered=False, human_answered=False, listened_to_end=False, final_digits="",
                        timed_attempts=0, talk_seconds=0)
    migration = importlib.import_module("campaigns.migrations.0005_ab_reports")
    with connection.cursor() as cursor:
        cursor.execute(migration.FILL_CALL_FACTS)

    assert sorted(Call.objects.values_list("pk", *facts)) == expected
