"""Benchmark: plan a 100,000-contact campaign on PostgreSQL and print contacts per second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/plan.py

The database must exist and be migrated (`manage.py migrate`). The bench creates its own contact list,
voices, script, account and campaign under a unique `bench-plan-<hex>` name, times `launch_campaign`
(validation + planning + commit), and deletes everything it created at the end (`--keep` leaves it).

Render tasks are sent on commit. The bench forces CELERY_BROKER_URL=memory:// so they go to an in-process
throwaway broker (no worker ever renders 100,000 clips), and times that enqueue as its own figure.

Where the time goes: every statement Django runs (and every psycopg COPY block) is timed and grouped into
phases (read contacts, insert RenderedAudio, insert Call, follow-up queries); the rest of the launch is
Python; COMMIT is mostly PostgreSQL checking the deferred foreign keys of every new row. The Python work
per contact (the planner's own loop: variant pick, template render with reading marks, render key, row
tuples) is also timed on its own over the same contacts. CPU seconds of the bench process and of its
PostgreSQL backend (read from /proc when the server runs on this machine) are printed too: on a shared
machine they move less than wall time.

The last line of output is one JSON object with the figures. Target: >= 20,000 contacts/s, so a
million-contact campaign plans in under a minute. The figures move with whatever else the machine is
doing, so the 1-minute load average is reported with them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time as clock_time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 20_000  # contacts per second
SCRIPT = "您好{name}，您的订单{order_id}将于明天送达，确认请按1。"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def _setup_django() -> str:
    """Configure Django for the bench; returns the database vendor. Exits with a message on SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        sys.exit(
            "bench/plan.py measures planning on PostgreSQL; set DATABASE_URL, e.g.\n"
            "  createdb -h 127.0.0.1 -U postgres herald_bench\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python manage.py migrate\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/plan.py\n"
            f"(DATABASE_URL is {url or 'unset, which means SQLite'})"
        )
    # Forced, not defaulted: a real broker here would have workers render 100,000 clips.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # memory:// has no hostname, as meant
    return connection.vendor


# --- where the time goes ---------------------------------------------------------------------------

_TABLE = re.compile(r'\b(?:INTO|FROM|UPDATE|COPY|TABLE)\s+"?(\w+)"?', re.IGNORECASE)


def _statement_kind(sql: str) -> str:
    """'INSERT synthesis_renderedaudio', 'SELECT COUNT campaigns_call', … from the statement text."""
    text = sql.lstrip()
    verb = text.split(None, 1)[0].upper() if text else "?"
    if verb == "SELECT" and text[:40].upper().startswith("SELECT COUNT("):
        verb = "SELECT COUNT"
    # The statement's own table, not one named in a subquery: the first match outside parentheses.
    for match in _TABLE.finditer(text):
        if text.count("(", 0, match.start()) == text.count(")", 0, match.start()):
            return f"{verb} {match.group(1)}"
    return f"{verb} -"


class StatementTimer:
    """Wall time and count per statement kind, for everything Django executes on the connection."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def __call__(self, execute, sql, params, many, context):  # noqa: ANN001 - Django's wrapper signature
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = _statement_kind(sql)
            self.seconds[kind] += time.perf_counter() - start
            self.count[kind] += 1

    @contextmanager
    def copies(self) -> Iterator[None]:
        """Also time psycopg COPY blocks, which bypass Django's execute wrappers."""
        from django.db.backends.postgresql.base import Cursor

        original = Cursor.copy
        timer = self

        @contextmanager
        def timed_copy(cursor, statement, *args, **kwargs):  # noqa: ANN001
            start = time.perf_counter()
            with original(cursor, statement, *args, **kwargs) as copy:
                yield copy
            kind = _statement_kind(statement if isinstance(statement, str) else statement.as_string(cursor))
            timer.seconds[kind] += time.perf_counter() - start
            timer.count[kind] += 1

        Cursor.copy = timed_copy
        try:
            yield
        finally:
            Cursor.copy = original


# Statement kinds grouped into the phases of planning.
PHASES = (
    ("read contacts + do-not-call", re.compile(r"^SELECT (campaigns_contact|campaigns_donotcall)$")),
    ("insert RenderedAudio", re.compile(r"^(INSERT|COPY|CREATE|DROP) (synthesis_renderedaudio|plan_audio)$")),
    ("insert Call", re.compile(r"^(INSERT|COPY|CREATE|DROP) (campaigns_call|plan_call)$")),
    ("insert flow clips", re.compile(r"^(INSERT|COPY|CREATE|DROP|SELECT|UPDATE) (campaigns_callclip|plan_clip|"
                                     r"campaigns_variantclip|campaigns_callflow|campaigns_flownode)$")),
    ("follow-up UPDATE/SELECT (planned, cached, pending)",
     re.compile(r"^(UPDATE campaigns_call|SELECT COUNT campaigns_call|SELECT synthesis_renderedaudio)$")),
)


def _phases(statements: dict[str, float]) -> dict[str, float]:
    phases: dict[str, float] = defaultdict(float)
    for kind, seconds in statements.items():
        name = next((name for name, pattern in PHASES if pattern.match(kind)), "other SQL (validation, savepoints)")
        phases[name] += seconds
    return phases


# --- fixtures --------------------------------------------------------------------------------------


def _create_flow(tag: str):
    """The demo's kind of flow: confirm, reschedule with two slots (per callee: their date), opt-out, repeat."""
    from campaigns.models import CallFlow, FlowNode

    A = FlowNode.Action
    flow = CallFlow.objects.create(name=tag, menu_text="确认请按1，改期请按2，重听请按星号。")
    FlowNode.objects.create(flow=flow, key="1", action=A.CONFIRM, text="感谢您的确认，我们会准时送达。")
    reschedule = FlowNode.objects.create(flow=flow, key="2", action=A.RESCHEDULE, text="明天上午请按1，明天下午请按2。")
    for key, label in (("1", "上午"), ("2", "下午")):
        FlowNode.objects.create(flow=flow, parent=reschedule, key=key, action=A.SLOT, text="好的，已为您改到{slot}送达。",
                                slot_days=1, slot_label=label)
    FlowNode.objects.create(flow=flow, key="9", action=A.OPT_OUT, text="好的，我们不会再给您打电话。")
    FlowNode.objects.create(flow=flow, key="*", action=A.REPEAT)
    return flow


def _create_fixtures(tag: str, n: int, *, dnc_every: int, invalid_every: int, flow: bool = False):
    """A contact list of `n` generated contacts, two embedded voices, a script, an account, a campaign (with a
    call flow when `flow`)."""
    from django.db import transaction

    from campaigns.models import Campaign, Contact, ContactList, DoNotCall, ScriptTemplate, Variant
    from telephony.actions import set_auth_token
    from telephony.models import TelephonyAccount
    from voices.models import Voice

    rng = random.Random(2026)
    base = rng.randrange(10**7) * 100  # a block of numbers unlikely to meet other data's
    with transaction.atomic():
        contact_list = ContactList.objects.create(name=tag)
        contacts = []
        for i in range(n):
            fields = {} if invalid_every and i % invalid_every == 7 else {"order_id": f"SF{rng.randrange(10**10):010d}"}
            contacts.append(
                Contact(
                    contact_list=contact_list,
                    phone=f"+86139{(base + i) % 10**8:08d}",
                    name=rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2)))),
                    timezone="Asia/Shanghai",
                    fields=fields,
                    source_line=i + 2,
                )
            )
        Contact.objects.bulk_create(contacts, batch_size=5000)
        if dnc_every:
            DoNotCall.objects.bulk_create(
                [DoNotCall(phone=c.phone, source=tag) for c in contacts[3::dnc_every]], ignore_conflicts=True
            )
        voices = [
            Voice.objects.create(name=f"{tag}-{label}", engine="embedded", parameters={"voice": "cmn", "pitch": pitch})
            for label, pitch in (("high", 60), ("low", 35))
        ]
        script = ScriptTemplate.objects.create(name=tag, text=SCRIPT)
        account = TelephonyAccount.objects.create(
            name=tag, account_sid="AC" + secrets.token_hex(16), caller_ids=["+862161234567"],
            calls_per_second=100, max_concurrent_calls=100,
        )
        set_auth_token(account, secrets.token_hex(16))
        campaign = Campaign.objects.create(
            name=tag, contact_list=contact_list, telephony_account=account, caller_id="+862161234567",
            window_start=clock_time(9, 0), window_end=clock_time(20, 0), calls_per_second=100,
            max_concurrent_calls=100, flow=_create_flow(tag) if flow else None,
        )
        for voice, name in zip(voices, "AB", strict=True):
            Variant.objects.create(campaign=campaign, name=name, voice=voice, script=script, weight=1)
    return campaign


def _cleanup(tag: str) -> None:
    """Delete what the bench created. Raw DELETEs: the ORM's cascade collector would load 100,000 calls."""
    from django.db import connection, transaction

    from campaigns.models import (
        Call,
        CallAttempt,
        CallClip,
        CallFlow,
        Campaign,
        Contact,
        ContactList,
        DoNotCall,
        ScriptTemplate,
        Variant,
    )
    from synthesis.models import RenderedAudio
    from telephony.models import TelephonyAccount
    from voices.models import Voice

    campaign = Campaign.objects.filter(name=tag).first()
    voice_ids = list(Voice.objects.filter(name__startswith=f"{tag}-").values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        if campaign:
            cursor.execute(
                f"DELETE FROM {CallAttempt._meta.db_table} WHERE call_id IN "
                f"(SELECT id FROM {Call._meta.db_table} WHERE campaign_id = %s)", [campaign.pk]
            )
            cursor.execute(
                f"DELETE FROM {CallClip._meta.db_table} WHERE call_id IN "
                f"(SELECT id FROM {Call._meta.db_table} WHERE campaign_id = %s)", [campaign.pk]
            )
            cursor.execute(f"DELETE FROM {Call._meta.db_table} WHERE campaign_id = %s", [campaign.pk])
            Variant.objects.filter(campaign=campaign).delete()  # and their flow clips
            campaign.delete()
        CallFlow.objects.filter(name=tag).delete()
        if voice_ids:
            # Only renders nobody else's calls point at (they are all the bench's: its voices are its own).
            cursor.execute(
                f"DELETE FROM {RenderedAudio._meta.db_table} r WHERE r.voice_id = ANY(%s) AND NOT EXISTS "
                f"(SELECT 1 FROM {Call._meta.db_table} c WHERE c.render_key = r.render_key)", [voice_ids]
            )
        contact_list = ContactList.objects.filter(name=tag).first()
        if contact_list:
            cursor.execute(f"DELETE FROM {Contact._meta.db_table} WHERE contact_list_id = %s", [contact_list.pk])
            contact_list.delete()
        DoNotCall.objects.filter(source=tag).delete()
        ScriptTemplate.objects.filter(name=tag).delete()
        Voice.objects.filter(pk__in=voice_ids).delete()
        TelephonyAccount.objects.filter(name=tag).delete()
    # 300,000 dead rows and their index entries would slow the next run down (autovacuum may be off or late).
    _vacuum(Call, RenderedAudio, Contact)


def _vacuum(*models) -> None:  # noqa: ANN002
    """What autovacuum does some time after a large import: statistics, visibility map, hint bits."""
    from django.db import connection

    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


# --- the Python work per contact, alone -------------------------------------------------------------


def _python_per_contact(campaign) -> tuple[int, float]:  # noqa: ANN001
    """The planner's own per-contact work (variant pick, template render with its reading marks, normalise,
    render key, the row tuples) over every contact, chunk by chunk as planning does; no database writes."""
    from campaigns import templating
    from campaigns.planning import (
        PLAN_CHUNK,
        PlanResult,
        _plan_chunk,
        _PreparedVariant,
        assignment_of,
        variant_order,
    )

    variants = campaign.variants.select_related("voice", "script").order_by(*variant_order(campaign))
    prepared = [_PreparedVariant(v, campaign.disclosure_text) for v in variants]
    cumulative, total = [], 0
    for p in prepared:
        total += p.variant.weight
        cumulative.append(total)
    rows = list(
        campaign.contact_list.contacts.order_by("pk").values_list(
            "pk", "phone", "name", "timezone", "fields", "pk", "consent_basis"
        )
    )
    rows = [(*row[:5], False, row[6]) for row in rows]  # nobody on the do-not-call list: every contact rendered
    templating._mark_name.cache_clear()  # as cold as the launch found it
    start = time.perf_counter()
    for i in range(0, len(rows), PLAN_CHUNK):
        _plan_chunk(assignment_of(campaign), rows[i : i + PLAN_CHUNK], prepared, cumulative, PlanResult())
    return len(rows), time.perf_counter() - start


def _backend_cpu_seconds() -> float | None:
    """CPU seconds the PostgreSQL backend serving this connection has used, when it runs on this machine."""
    from django.db import connection

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # another machine, or not Linux
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--dnc-every", type=int, default=200, help="one contact in N is on the do-not-call list")
    parser.add_argument("--invalid-every", type=int, default=100, help="one contact in N lacks {order_id}")
    parser.add_argument("--keep", action="store_true", help="leave the campaign and its rows in the database")
    parser.add_argument("--flow", action="store_true",
                        help="the campaign has a call flow (two slot clips per callee, five clips per voice)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # keep the order with log lines on stderr: JSON comes last

    vendor = _setup_django()
    from django.db import connection, transaction

    from campaigns.launch import launch_campaign
    from campaigns.models import Call, CallClip, Contact
    from synthesis.models import RenderedAudio

    tag = f"bench-plan-{secrets.token_hex(4)}"
    print(f"database: {vendor} {connection.settings_dict['NAME']}; run tag {tag}")
    start = time.perf_counter()
    campaign = _create_fixtures(
        tag, args.contacts, dnc_every=args.dnc_every, invalid_every=args.invalid_every, flow=args.flow
    )
    _vacuum(Contact, Call, RenderedAudio)
    print(f"setup: {args.contacts:,} contacts in {time.perf_counter() - start:.1f} s")

    try:
        timer = StatementTimer()
        with connection.execute_wrapper(timer), timer.copies():
            # The outer atomic lets the bench take the on-commit render enqueue out of the pending hooks
            # (Django's own list, as its captureOnCommitCallbacks reads it) and time it on its own.
            load = os.getloadavg()[0]  # other work on the machine shows in the figures
            backend_before = _backend_cpu_seconds()
            cpu_before = time.process_time()
            began = time.perf_counter()
            with transaction.atomic():
                pending = len(connection.run_on_commit)
                planned = launch_campaign(campaign)
                callbacks = [hook[1] for hook in connection.run_on_commit[pending:]]
                del connection.run_on_commit[pending:]
                launched = time.perf_counter()
            committed = time.perf_counter()
            cpu = time.process_time() - cpu_before
            backend_after = _backend_cpu_seconds()
        planning = committed - began
        # CPU seconds move less than wall time when other work shares the cores: both are printed.
        backend = None if backend_before is None or backend_after is None else backend_after - backend_before
        start = time.perf_counter()
        for callback in callbacks:
            callback()
        enqueue = time.perf_counter() - start

        calls = Call.objects.filter(campaign=campaign).count()
        renders = RenderedAudio.objects.filter(voice__name__startswith=f"{tag}-").count()
        checked, python_alone = _python_per_contact(campaign)

        statements = dict(sorted(timer.seconds.items(), key=lambda kv: -kv[1]))
        phases = _phases(statements)
        phases["python: planning, row decoding, COPY rows, server-cursor fetches"] = (
            launched - began - sum(statements.values())
        )
        phases["COMMIT (deferred foreign-key checks)"] = committed - launched
        phases = {name: round(seconds, 3) for name, seconds in phases.items()}
        rate = args.contacts / planning
        clips = CallClip.objects.filter(call__campaign=campaign).count()
        print(f"launch_campaign ({'with' if args.flow else 'no'} call flow, {clips:,} per-callee clips): {planned:,} planned of {args.contacts:,} contacts ({calls:,} calls, "
              f"{renders:,} renders) in {planning:.2f} s = {rate:,.0f} contacts/s (target {TARGET:,}; "
              f"load average {load:.2f} on {os.cpu_count()} CPUs)")
        print("phases:")
        for name, seconds in phases.items():
            print(f"  {seconds:8.3f} s  {name}")
        print("statements:")
        for kind, seconds in statements.items():
            print(f"  {seconds:8.3f} s  {kind} ({timer.count[kind]})")
        print(f"CPU during the launch: this process {cpu:.2f} s, PostgreSQL backend "
              + (f"{backend:.2f} s" if backend is not None else "unknown (not on this machine)"))
        print(f"python per contact, alone (the planner's pick + render + marks + normalise + key + rows): "
              f"{python_alone / checked * 1e6:.1f} µs ({checked / python_alone:,.0f} contacts/s)")
        print(f"render enqueue on commit (memory:// broker, not in the figure above): {enqueue:.2f} s")
        result = {
            "contacts": args.contacts,
            "planned": planned,
            "calls": calls,
            "renders": renders,
            "seconds": round(planning, 3),
            "contacts_per_second": round(rate),
            "target_contacts_per_second": TARGET,
            "meets_target": rate >= TARGET,
            "enqueue_seconds": round(enqueue, 3),
            "python_us_per_contact": round(python_alone / checked * 1e6, 2),
            "cpu_seconds": {"bench_process": round(cpu, 3), "postgresql_backend": backend and round(backend, 3)},
            "phases_seconds": phases,
            "statements_seconds": {kind: round(seconds, 3) for kind, seconds in statements.items()},
            "load_average_1m": round(load, 2),
            "database": vendor,
            "tag": tag,
            "flow": args.flow,
            "callee_clips": clips,
            "kept": args.keep,
        }
    finally:
        if not args.keep:
            start = time.perf_counter()
            _cleanup(tag)
            print(f"cleanup: deleted {tag} in {time.perf_counter() - start:.1f} s")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
