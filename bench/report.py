"""Benchmark: the campaign report pages over a campaign with 1,000,000 calls and 1,500,000 attempts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/report.py

The database must exist and be migrated (`manage.py migrate`). The first run generates the campaign inside
PostgreSQL (INSERT … SELECT over generate_series, seeded, about a minute) under the name `bench-report-<calls>`
and keeps it, so later runs time the pages at once; `--regenerate` drops and builds it again.

Each page is fetched through Django's test client as a logged-in staff user (the whole view: queries,
statistics, template or file), once to warm PostgreSQL's buffers and then `--repeat` times; the median
is reported. Target: under 2 s per page. The last line of output is one JSON object with the figures.

The data: three variants (A and B in one voice, C in another, weights 2:2:1), callees in four time zones
(one with a half-hour offset), every other call dialled twice, answer, machine, keypress and listen-through
rates that differ a little by variant, attempts spread over two weeks of calling hours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 2.0


def _setup_django() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        sys.exit(
            "bench/report.py measures the report on PostgreSQL; set DATABASE_URL, e.g.\n"
            "  createdb -h 127.0.0.1 -U postgres herald_bench\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python manage.py migrate\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/report.py\n"
            f"(DATABASE_URL is {url or 'unset, which means SQLite'})"
        )
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# Per-call draws come from one seeded random() stream; the thresholds make the variants differ a little.
ZONES = ["Asia/Shanghai", "Asia/Shanghai", "Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata"]

CALLS_SQL = """
INSERT INTO campaigns_call (phone, timezone, text, state, outcome, error, attempts_made, updated_at,
                            campaign_id, contact_id, variant_id, used_fallback, hold, answered, human_answered,
                            listened_to_end, final_digits, final_action, timed_attempts, talk_seconds)
SELECT c.phone, c.timezone, '', 'done', '', '', 1 + (c.id %% 2), now(), %(campaign)s, c.id,
       (ARRAY[%(a)s, %(a)s, %(b)s, %(b)s, %(c)s])[1 + (c.id %% 5)], false, '', false, false, false, '', '', 0, 0
FROM campaigns_contact c WHERE c.contact_list_id = %(list)s ORDER BY c.id
"""

# One row per attempt: every call has attempt 1, odd-numbered contacts also attempt 2. r is one uniform draw
# per attempt; the variant shifts the answer threshold by a point or two.
ATTEMPTS_SQL = """
INSERT INTO campaigns_callattempt (number, provider, provider_call_id, status, answered_by, duration, digits,
                                   listened_to_end, path, action, action_detail, error_code, error_message,
                                   timeline, created_at, placed_at, answered_at, ended_at, call_id)
SELECT n, 'twilio', NULL,
       CASE WHEN r < answer THEN 'completed' WHEN r < answer + 0.30 THEN 'no-answer'
            WHEN r < answer + 0.40 THEN 'busy' ELSE 'failed' END,
       CASE WHEN r < answer * 0.15 THEN 'machine_end_beep' WHEN r < answer THEN 'human' ELSE '' END,
       CASE WHEN r < answer THEN 5 + (r * 1000)::int %% 40 ELSE NULL END,
       CASE WHEN r >= answer * 0.15 AND r < answer * 0.55 THEN '1' WHEN r >= answer * 0.55 AND r < answer * 0.65
            THEN '2' WHEN r >= answer * 0.65 AND r < answer * 0.68 THEN '9' ELSE '' END,
       r >= answer * 0.15 AND r < answer * 0.80,
       '[]'::jsonb, '', '', '', '', '[]'::jsonb, placed, placed,
       CASE WHEN r < answer THEN placed + interval '8 seconds' ELSE NULL END,
       placed + interval '40 seconds', id
FROM (
    SELECT call.id, n, random() AS r,
           0.42 + CASE WHEN call.variant_id = %(b)s THEN 0.015 WHEN call.variant_id = %(c)s THEN -0.01 ELSE 0 END
               AS answer,
           %(start)s::timestamptz + make_interval(days => (call.id %% 14)::int, hours => (call.id %% 12)::int,
                                                  mins => (call.id * 7 %% 60)::int)
               + CASE WHEN n = 2 THEN interval '1 day 2 hours' ELSE interval '0' END AS placed
    FROM campaigns_call call
    CROSS JOIN LATERAL generate_series(1, 1 + (call.contact_id %% 2)::int) AS n
    WHERE call.campaign_id = %(campaign)s
) AS draws
"""


def generate(name: str, calls: int) -> int:
    """Build the bench campaign; returns its id."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from campaigns.lifecycle import rebuild_call_facts
    from campaigns.models import Call, Campaign, ContactList, ScriptTemplate, Variant
    from telephony.models import TelephonyAccount
    from voices.models import Voice

    started = time.perf_counter()
    with transaction.atomic():
        voices = [
            Voice.objects.get_or_create(name=f"bench voice {i}", defaults={"engine": Voice.Engine.EMBEDDED})[0]
            for i in (1, 2)
        ]
        account, _ = TelephonyAccount.objects.get_or_create(
            name="bench-report", defaults={"caller_ids": ["+8613800000000"]}
        )
        script, _ = ScriptTemplate.objects.get_or_create(
            name="bench-report", defaults={"text": "您好{name}，您的订单{order_id:digits}明天送达，确认请按1。"}
        )
        contact_list = ContactList.objects.create(name=name)
        campaign = Campaign.objects.create(
            name=name, contact_list=contact_list, telephony_account=account, caller_id="+8613800000000",
            status=Campaign.Status.COMPLETED,
        )  # fmt: skip
        variants = [
            Variant.objects.create(campaign=campaign, name=label, voice=voice, script=script, weight=weight)
            for label, voice, weight in (("A", voices[0], 2), ("B", voices[0], 2), ("C", voices[1], 1))
        ]
        get_user_model().objects.filter(username="bench-report").exists() or get_user_model().objects.create_superuser(
            "bench-report", "bench@example.com", None
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(0.42)")
            cursor.execute(
                """
                INSERT INTO campaigns_contact (phone, external_id, name, timezone, fields, source_line, contact_list_id,
                                               consent_basis, consent_source)
                SELECT '+86139' || lpad(i::text, 8, '0'), '', '客户' || i, (%(zones)s::text[])[1 + i %% %(nzones)s],
                       '{}'::jsonb, i, %(list)s, '', ''
                FROM generate_series(1, %(calls)s) AS i
                """,
                {"zones": ZONES, "nzones": len(ZONES), "list": contact_list.pk, "calls": calls},
            )
            ids = {"a": variants[0].pk, "b": variants[1].pk, "c": variants[2].pk}
            cursor.execute(CALLS_SQL, {"campaign": campaign.pk, "list": contact_list.pk, **ids})
            cursor.execute(ATTEMPTS_SQL, {"campaign": campaign.pk, "start": "2026-11-02T01:00:00Z", **ids})
            # Call outcomes follow the last attempt, as the state machine leaves them.
            cursor.execute(
                """
                UPDATE campaigns_call call SET outcome = CASE
                    WHEN a.digits = '9' THEN 'opted_out' WHEN a.status = 'completed' AND a.answered_by LIKE 'machine%%'
                    THEN 'machine' WHEN a.status = 'completed' THEN 'answered' WHEN a.status = 'busy' THEN 'busy'
                    WHEN a.status = 'no-answer' THEN 'no_answer' ELSE 'failed' END
                FROM campaigns_callattempt a
                WHERE a.call_id = call.id AND a.number = call.attempts_made AND call.campaign_id = %(campaign)s
                """,
                {"campaign": campaign.pk},
            )
    # The rows above bypassed the webhooks that keep each call's report facts: roll them up as a repair would.
    rebuild_call_facts(Call.objects.filter(campaign_id=campaign.pk))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_call; ANALYZE campaigns_callattempt; ANALYZE campaigns_contact")
    print(f"generated {calls:,} calls in {time.perf_counter() - started:.1f} s", flush=True)
    return campaign.pk


PAGES = [
    # (name, URL pattern name, needs the campaign id, query string)
    ("report page", "admin:campaigns_campaign_report", True, ""),
    ("report CSV", "admin:campaigns_campaign_report_csv", True, ""),
    ("report Excel", "admin:campaigns_campaign_report_xlsx", True, ""),
    ("hours heatmap page", "admin:campaigns_campaign_heatmap", True, ""),
    ("hours heatmap, one variant", "admin:campaigns_campaign_heatmap", True, "?variant=B"),
    ("voices page", "admin:voices_voice_report", False, ""),
    ("campaign list", "admin:campaigns_campaign_changelist", False, ""),
    ("API report", "api:campaign-report", True, ""),
    ("API heatmap", "api:campaign-heatmap", True, ""),
]


def time_pages(campaign_id: int, repeat: int) -> dict[str, float]:
    """Median seconds per page over `repeat` fetches after one warm-up fetch."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-report"))
    figures: dict[str, float] = {}
    for name, pattern, with_id, query in PAGES:
        try:
            url = reverse(pattern, args=[campaign_id] if with_id else []) + query
        except NoReverseMatch:
            print(f"{name:28s} (no such page)", flush=True)
            continue
        response = client.get(url)
        if response.status_code != 200:
            sys.exit(f"{name}: {url} answered {response.status_code}")
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            _ = response.content
            seconds.append(time.perf_counter() - started)
        figures[name] = statistics.median(seconds)
        verdict = "ok" if figures[name] < TARGET_SECONDS else "OVER TARGET"
        print(f"{name:28s} {figures[name]:6.3f} s  ({len(response.content):,} bytes)  {verdict}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    _setup_django()
    from django.db import connection

    from campaigns.models import Call, CallAttempt, Campaign

    name = f"bench-report-{args.calls}"
    existing = Campaign.objects.filter(name=name).first()
    if existing and args.regenerate:
        drop(existing)
        existing = None
    campaign_id = existing.pk if existing else generate(name, args.calls)
    calls = Call.objects.filter(campaign_id=campaign_id).count()
    attempts = CallAttempt.objects.filter(call__campaign_id=campaign_id).count()
    print(f"campaign {name}: {calls:,} calls, {attempts:,} attempts; PostgreSQL "
          f"{connection.cursor().connection.info.server_version}", flush=True)  # fmt: skip
    figures = time_pages(campaign_id, args.repeat)
    slowest = max(figures.values())
    baseline, facts = compare_with_attempts(campaign_id)
    print(
        json.dumps(
            {
                "bench": "report",
                "calls": calls,
                "attempts": attempts,
                "seconds_per_page": {k: round(v, 3) for k, v in figures.items()},
                "slowest_seconds": round(slowest, 3),
                "target_seconds": TARGET_SECONDS,
                "meets_target": slowest < TARGET_SECONDS,
                "variant_counts_from_attempts_seconds": round(baseline, 3),
                "variant_counts_from_call_facts_seconds": round(facts, 3),
                "speedup": round(baseline / facts, 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


def compare_with_attempts(campaign_id: int) -> tuple[float, float]:
    """Baseline, in this process on the same data: the variant counts grouped from the attempt rows (the
    tests' hand-written SQL, as the report did before the per-call facts) against campaign_report; the two
    must agree."""
    from campaigns import reports
    from campaigns.models import Campaign
    from tests.campaigns.direct_sql import variant_counts

    campaign = Campaign.objects.get(pk=campaign_id)
    started = time.perf_counter()
    direct = variant_counts(campaign_id)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    report = reports.campaign_report(campaign)
    facts = time.perf_counter() - started
    for row in report.variants:
        for name in ("calls", "attempts", "dialled", "answered", "human", "listened_to_end", "confirmed"):
            if getattr(row, name) != direct[row.label][name]:
                sys.exit(f"variant {row.label}: report {name} {getattr(row, name)} != attempts {direct[row.label][name]}")
    print(
        f"variant counts grouped from the attempts {baseline:.3f} s, from the per-call facts {facts:.3f} s "
        f"({baseline / facts:.1f}x), equal",
        flush=True,
    )
    return baseline, facts


def drop(campaign) -> None:  # noqa: ANN001
    """Delete the bench campaign with plain SQL (the ORM would collect a million rows first)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        ids = {"campaign": campaign.pk, "list": campaign.contact_list_id}
        cursor.execute(
            "DELETE FROM campaigns_callattempt WHERE call_id IN "
            "(SELECT id FROM campaigns_call WHERE campaign_id = %(campaign)s)",
            ids,
        )
        cursor.execute("DELETE FROM campaigns_call WHERE campaign_id = %(campaign)s", ids)
        cursor.execute("DELETE FROM campaigns_variant WHERE campaign_id = %(campaign)s", ids)
        cursor.execute("DELETE FROM campaigns_campaign WHERE id = %(campaign)s", ids)
        cursor.execute("DELETE FROM campaigns_contact WHERE contact_list_id = %(list)s", ids)
        cursor.execute("DELETE FROM campaigns_contactlist WHERE id = %(list)s", ids)


if __name__ == "__main__":
    main()
