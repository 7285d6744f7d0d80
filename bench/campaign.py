"""Benchmark: one campaign end to end through real processes, dialled at the account's pacing limit.

    .venv/bin/python bench/campaign.py                                # 2,000 callees, PostgreSQL + Redis, 50 CPS
    .venv/bin/python bench/campaign.py --callees 20000
    .venv/bin/python bench/campaign.py --setup embedded --callees 500 # SQLite + the herald-fs broker
    .venv/bin/python bench/campaign.py --cps 20 --conn-max-age 0      # a lower limit; a connection per request

What runs, each as its own process, as in production: the Twilio sandbox (`python -m sandbox.twilio`,
answering at once: every callee a person, simulated seconds slept at --time-scale, no create latency), gunicorn
web processes (`herald.gunicorn_conf`, --web-workers × --web-threads), --telephony-workers `celery worker -Q
telephony` processes (threads pool), one `-Q synthesis,default` worker (renders, and runs beat's sweep), and
`celery beat` (the dialer sweep every HERALD_SWEEP_INTERVAL, --sweep-interval here). DATABASE_CONN_MAX_AGE is
--conn-max-age (60, as docker-compose.yml sets it). This process seeds the campaign, launches it, watches it and
stops everything afterwards (after --timeout it stops anyway and reports what happened: "completed": false).

PostgreSQL + Redis: a database of its own, `herald_bench_campaign_<hex>` on --pg-server, created, migrated and
dropped at the end (--keep leaves it, and the logs), and a redis-server of its own on a free port (the shared
Redis's queues are never read or written). Embedded: SQLite, the herald-fs broker and the file pacing store in a
fresh var folder. Either way the account and the campaign both allow --cps calls per second, with --channels
concurrent calls (high enough not to bind).

The script's one variable takes five values, so the campaign renders five clips whatever its size: rendering
is not what is measured. A callee presses 1 (50%), 2 (20%) or 9 (2%, an opt-out), or nothing.

Figures:
- wall time (launch to completion), dial phase (first to last create at the sandbox);
- sustained calls/s: creates by the sandbox's own timestamps over the steady part (the 5th to the 95th
  percentile of dials), its ratio to --cps, the average over the whole dial phase, and the most creates in any
  one-second window as the sandbox stamped them (its own queueing can bunch requests the limiter spaced:
  bench/pacing.py measures the limiter itself);
- webhook latency per web process: p50/p99 of the status, gather and AMD callbacks, from gunicorn's access log
  with the worker's pid and the request time (%(p)s, %(L)s). This is the time inside the worker: a request that
  waited for a free thread or in the listen backlog waited longer at the carrier. Audio fetches separately;
- database rows and bytes per 1,000 calls, by table: counted before launch and after completion
  (PostgreSQL: count(*) and pg_total_relation_size; SQLite: count(*) and dbstat, or the file size);
- lost and doubled, checked against the sandbox's own record (GET /sandbox/calls.json): doubled = a created
  call beyond the first for one attempt, or for one (callee, attempt number); lost = a finished call at the
  sandbox whose final status, answering-machine verdict, digits or duration its attempt does not show, a call
  that ended without an outcome, or an attempt with no call at the sandbox that did not fail before dialling.
  Both must be 0. Callbacks the sandbox gave up on (a timeout, an error status) are counted apart: an outcome
  they carried is lost only if the attempt does not show it in the end;
- attempts by status (an overloaded web answers the carrier's audio fetch too late: the call fails, 11200, and
  is retried), and the calls left unfinished when the run stopped;
- CPU seconds per process role over the run, and per call (from /proc: the sandbox, web, telephony workers,
  the default worker, beat, this process, redis, every postgres process on the machine with the backends that
  exited, and the whole machine), to see what saturates;
- the load average at the start, the highest 1-minute value seen during the run, and at the end. The figures
  move with whatever else the machine runs.

The last line is one JSON object with the figures. Target: >= 95% of the 50 CPS limit at 20,000 callees,
nothing lost or doubled ("meets_target").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

from pacing import max_in_window  # bench/ is the script's directory: the pacing bench's own count

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "您好，这里是顺达快递。您的包裹将于{时间}送达，确认请按1，改期请按2，如不想再接到此类电话请按9。"
DELIVERY_TIMES = ("上午10点", "中午12点", "下午3点", "下午4点半", "晚上7点")  # five clips, however many callees
CALLER_ID = "+862161234567"
WEBHOOK_PATH = re.compile(r"^/telephony/twilio/(\d+)/(status|gather|amd)$")
ATTEMPT_IN_URL = re.compile(r"/telephony/twilio/(\d+)/status$")
# The worker's pid, seconds in the worker, status, method, path. Seconds as a decimal (%(L)s): herald.logmask
# masks any run of eight or more digits and spaces in gunicorn's lines, which µs followed by the status can be.
ACCESS_LOG_FORMAT = "%(p)s t=%(L)s s=%(s)s %(m)s %(U)s"
STEADY = (0.05, 0.95)  # the part of the dial phase the sustained rate is measured over


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- processes ---------------------------------------------------------------------------------------


class Processes:
    """The run's child processes, each in a session of its own (its pid is the session id of everything it
    starts, which is how CPU time is attributed to a role), logging to files under `log_dir`."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        with (self.log_dir / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def wait_for_port(self, port: int, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            self.check_alive()
            time.sleep(0.1)
        raise RuntimeError(f"the {what} did not open port {port} within {timeout:g} s")

    def wait_for_line(self, name: str, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not say {text!r} within {timeout:g} s:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def cpu_seconds_by_session() -> tuple[dict[int, float], float]:
    """CPU seconds (user + system) of every live process by session id, and of every postgres process."""
    tick = os.sysconf("SC_CLK_TCK")
    sessions: dict[int, float] = defaultdict(float)
    postgres = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
        sessions[int(fields[3])] += seconds
        if comm.startswith("postgres"):
            # Backends come and go (a connection per request): the postmaster's cutime and cstime keep the
            # time of those that exited; the postmaster is the one whose parent is not postgres.
            postgres += seconds
            if fields[1] not in postgres_pids():
                postgres += (int(fields[13]) + int(fields[14])) / tick
    return sessions, postgres


_POSTGRES_PIDS: set[str] = set()


def postgres_pids() -> set[str]:
    """Pids of postgres processes (found once; the postmaster's children are told apart by their parent)."""
    if not _POSTGRES_PIDS:
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and Path(entry.path, "comm").read_text().startswith("postgres"):
                    _POSTGRES_PIDS.add(entry.name)
            except OSError:
                continue
    return _POSTGRES_PIDS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all but idle and iowait), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per role between `start()` and `stop()`: a role is the sessions of the processes named for it."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.before: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        sessions, postgres = cpu_seconds_by_session()
        roles: dict[str, float] = defaultdict(float)
        for name, proc in self.processes.procs.items():
            roles[re.sub(r"-\d+$", "", name)] += sessions.get(proc.pid, 0.0)
        own = os.times()
        roles["bench (this process)"] = own.user + own.system
        roles["postgres (every backend on the machine)"] = postgres
        roles["machine (everything)"] = machine_busy_seconds()
        return roles

    def start(self) -> None:
        self.before, self.wall = self._sample(), time.monotonic()

    def stop(self) -> dict:
        after, wall = self._sample(), time.monotonic() - self.wall
        used = {role: round(after[role] - self.before.get(role, 0.0), 1) for role in after}
        return {"seconds": used, "wall_seconds": round(wall, 1),
                "cores": {role: round(s / wall, 2) for role, s in used.items()} if wall else {}}


# --- the database's size --------------------------------------------------------------------------------


def table_sizes() -> dict[str, tuple[int, int]]:
    """Rows and bytes (with indexes and TOAST) of every table of the app's database."""
    from django.db import connection

    sizes: dict[str, tuple[int, int]] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
            tables = dict(cursor.fetchall())
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            tables = dict.fromkeys((name for (name,) in cursor.fetchall()), 0)
            try:
                cursor.execute(
                    "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_master m ON m.name = s.name "
                    "GROUP BY m.tbl_name"
                )
                tables.update({name: size for name, size in cursor.fetchall() if name in tables})
            except Exception:  # SQLite built without dbstat: the whole file, below
                pass
        for table in tables:
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
            sizes[table] = (cursor.fetchone()[0], int(tables[table]))
    return sizes


def database_bytes_total() -> int | None:
    """SQLite built without dbstat: the database file with its WAL; else None (tables are measured one by one)."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT COUNT(*) FROM dbstat")
            return None
        except Exception:  # no dbstat in this SQLite
            pass
    path = Path(connection.settings_dict["NAME"])
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def growth_per_1000(before: dict, after: dict, calls: int) -> dict:
    """Rows and bytes added per 1,000 calls, by table (tables that did not change are left out)."""
    per: dict[str, dict[str, float]] = {}
    for table, (rows, size) in sorted(after.items()):
        rows0, size0 = before.get(table, (0, 0))
        if rows != rows0 or size != size0:
            per[table] = {"rows": round((rows - rows0) * 1000 / calls, 1),
                          "bytes": round((size - size0) * 1000 / calls)}
    return per


# --- the sandbox's record against Herald's --------------------------------------------------------------


def sandbox_calls(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/sandbox/calls.json", timeout=300) as response:
        return json.loads(response.read())


def check_ledger(campaign, dialled: list[dict]) -> dict:
    """Lost and doubled outcomes, counted (not asserted) against the sandbox's own record of what it did."""
    from campaigns.models import Call, CallAttempt

    S = CallAttempt.Status
    attempts = {
        a["pk"]: a
        for a in CallAttempt.objects.filter(call__campaign=campaign).values(
            "pk", "call_id", "call__phone", "number", "status", "provider_call_id", "answered_by", "digits", "duration",
            "error_code",
        )
    }
    problems: Counter = Counter()
    per_attempt: Counter = Counter()
    per_number: Counter = Counter()
    dialled_attempts: set[int] = set()
    in_flight = 0
    callbacks_failed: Counter = Counter()  # the carrier gave up on these: timed out or answered with an error
    for d in dialled:
        match = ATTEMPT_IN_URL.search(d.get("status_callback") or "")
        attempt = attempts.get(int(match[1])) if match else None
        if attempt is None:
            problems["lost: a created call names no attempt of the campaign"] += 1
            continue
        dialled_attempts.add(attempt["pk"])
        per_attempt[attempt["pk"]] += 1
        per_number[(attempt["call__phone"], attempt["number"])] += 1
        if not d["done"]:  # still on the line when a timed-out run stopped: nothing to compare yet
            in_flight += 1
            continue
        if attempt["provider_call_id"] != d["sid"]:
            problems["lost: the attempt does not name its call"] += 1
        if attempt["status"] != d["status"]:
            problems["lost: final status differs"] += 1
        if (attempt["answered_by"] or None) != d["answered_by"]:
            problems["lost: answered_by differs"] += 1
        if (attempt["digits"] or None) != d["digits"]:
            problems["lost: digits differ"] += 1
        if d["status"] == "completed" and attempt["duration"] != d["duration"]:
            problems["lost: duration differs"] += 1
        for _, _, status in [*d["callbacks"], *d["amd_callbacks"]]:
            if not (isinstance(status, int) and 200 <= status < 300):  # an HTTP status, or the error's text
                callbacks_failed[str(status).split(":")[0][:40]] += 1
    for pk, attempt in attempts.items():
        if pk not in dialled_attempts and not (attempt["status"] == S.FAILED and not attempt["provider_call_id"]):
            if attempt["provider_call_id"] or attempt["status"] != S.CREATED or campaign.status == "completed":
                problems["lost: an attempt with no call at the carrier that did not fail before dialling"] += 1
    ended = campaign.calls.filter(state__in=[Call.State.DONE, Call.State.FAILED])
    problems["lost: a call that ended without an outcome"] += ended.filter(outcome="").count()
    doubled = sum(n - 1 for n in per_attempt.values() if n > 1) + sum(n - 1 for n in per_number.values() if n > 1)
    lost = sum(n for key, n in problems.items() if key.startswith("lost"))
    statuses = Counter(f"{a['status']} {a['error_code']}".strip() for a in attempts.values())
    return {
        "dialled": len(dialled),
        "in_flight_at_the_end": in_flight,
        "unfinished_calls": campaign.calls.exclude(state__in=[Call.State.DONE, Call.State.FAILED]).count(),
        "attempts": len(attempts),
        "attempts_by_status": dict(statuses.most_common()),
        "failed_before_dialling": sum(pk not in dialled_attempts for pk in attempts),
        "lost": lost,
        "doubled": doubled,
        "problems": {key: n for key, n in problems.items() if n},
        "callbacks_failed_at_the_carrier": dict(callbacks_failed),
    }


def dial_rate(dialled: list[dict], cps: float) -> dict:
    """Creates per second by the sandbox's own timestamps."""
    times = sorted(datetime.fromisoformat(d["date_created"]).timestamp() for d in dialled)
    if len(times) < 2:
        return {"dial_phase_seconds": 0.0, "sustained_cps": None, "ratio_to_limit": None, "average_cps": None,
                "max_in_any_1s_window": len(times)}
    first, last = (round(q * (len(times) - 1)) for q in STEADY)
    steady = (last - first) / (times[last] - times[first]) if times[last] > times[first] else None
    phase = times[-1] - times[0]
    return {
        "dial_phase_seconds": round(phase, 1),
        "sustained_cps": round(steady, 2) if steady else None,
        "ratio_to_limit": round(steady / cps, 4) if steady else None,
        "average_cps": round((len(times) - 1) / phase, 2) if phase else None,
        "max_in_any_1s_window": max_in_window(times),
    }


def webhook_latency(access_log: Path) -> dict:
    """p50/p99 of the carrier's callbacks per web process (gunicorn worker pid), in ms; audio fetches apart."""
    per_pid: dict[str, list[float]] = defaultdict(list)
    audio: list[float] = []
    errors: Counter = Counter()
    for line in access_log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 5 or not parts[1].startswith("t="):
            continue
        pid, seconds, status, _, path = parts
        pid, ms, status = pid.strip("<>"), float(seconds[2:]) * 1000, status[2:]
        if WEBHOOK_PATH.match(path):
            per_pid[pid].append(ms)
            if not status.startswith("2"):
                errors[status] += 1
        elif path.startswith("/audio/"):
            audio.append(ms)
    every = [ms for values in per_pid.values() for ms in values]

    def summary(values: list[float]) -> dict:
        return {"requests": len(values), "p50_ms": _ms(percentile(values, 0.5)), "p99_ms": _ms(percentile(values, 0.99))}

    return {
        "per_process": {pid: summary(values) for pid, values in sorted(per_pid.items())},
        "all": summary(every),
        "audio_fetches": summary(audio),
        "error_statuses": dict(errors),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- the run -------------------------------------------------------------------------------------------


def setup_environment(args: argparse.Namespace, var_dir: Path) -> dict[str, str]:
    """The environment every process of the run gets (this one too, before Django starts)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
                                                           "HERALD_PACING_REDIS_URL")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "herald.settings",
        "HERALD_VAR_DIR": str(var_dir),
        "HERALD_PUBLIC_URL": f"http://127.0.0.1:{args.web_port}",
        "HERALD_TWILIO_SANDBOX": "1",  # the account's api_base_url is the sandbox, on http://127.0.0.1
        "HERALD_SWEEP_INTERVAL": str(args.sweep_interval),
        "PYTHONUNBUFFERED": "1",
    })
    if args.setup == "postgres":
        env.update({"DATABASE_URL": args.database_url, "CELERY_BROKER_URL": args.redis_url,
                    "HERALD_PACING_REDIS_URL": args.redis_url})
    env["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)
    return env


def seed(args: argparse.Namespace, sandbox_url: str, sid: str, token: str):
    """The account, voice, script, contacts and draft campaign, all at --cps with --channels."""
    from django.utils import timezone

    from campaigns.demo import daytime_zone
    from campaigns.models import Campaign, Contact, ContactList, ScriptTemplate, Variant
    from telephony.actions import set_auth_token
    from telephony.models import TelephonyAccount
    from voices.models import Voice

    tag = secrets.token_hex(3)
    account = TelephonyAccount.objects.create(
        name=f"bench-campaign-{tag}", kind=TelephonyAccount.Kind.TWILIO, account_sid=sid, api_base_url=sandbox_url,
        caller_ids=[CALLER_ID], calls_per_second=args.cps, max_concurrent_calls=args.channels,
    )
    set_auth_token(account, token)
    voice = Voice.objects.create(name=f"bench-campaign-{tag}", language="zh", parameters={"voice": "cmn", "pitch": 50})
    script = ScriptTemplate.objects.create(name=f"bench-campaign-{tag}", text=SCRIPT)
    zone = daytime_zone(timezone.now())
    contacts = ContactList.objects.create(name=f"bench-campaign-{tag}", default_region="CN")
    rng = random.Random(args.callees)
    Contact.objects.bulk_create(
        (Contact(contact_list=contacts, phone=f"+86138{i:08d}", name=f"张{i}号", timezone=zone,
                 fields={"时间": rng.choice(DELIVERY_TIMES)}) for i in range(args.callees)),
        batch_size=2000,
    )
    campaign = Campaign.objects.create(
        name=f"bench-campaign-{tag}", contact_list=contacts, telephony_account=account, caller_id=CALLER_ID,
        window_start=clock_time(8, 0), window_end=clock_time(21, 0), max_attempts=3,
        retry_delay=timedelta(seconds=5), calls_per_second=args.cps, max_concurrent_calls=args.channels,
        breaker_window=0,
    )
    Variant.objects.create(campaign=campaign, name="A", voice=voice, script=script, weight=1)
    return campaign


def run(args: argparse.Namespace, var_dir: Path) -> dict:
    """Start everything, run the campaign to completion, measure, check; return the figures."""
    log_dir = var_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = setup_environment(args, var_dir)
    os.environ.update(env)
    for gone in set(os.environ) - set(env):
        del os.environ[gone]
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from campaigns.launch import launch_campaign
    from campaigns.models import CallAttempt, Campaign

    call_command("migrate", verbosity=0)
    processes = Processes(env, log_dir)
    if args.setup == "postgres" and args.own_redis:
        redis_port = int(args.redis_url.rsplit(":", 1)[1].split("/")[0])
        processes.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"])
        processes.wait_for_port(redis_port, "redis-server")
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    sandbox_port = free_port()
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "herald"]
    processes.start("sandbox", [
        python, "-m", "sandbox.twilio", "--port", str(sandbox_port), "--account", f"{sid}:{token}", "--seed", "17",
        "--answer", "1", "--busy", "0", "--no-answer", "0", "--machine", "0", "--failed", "0",
        "--digits", "1:0.5,2:0.2,9:0.02", "--hangup-early", "0.05", "--time-scale", str(args.time_scale),
        "--create-latency", "0",
    ])
    processes.start("web", [
        python, "-m", "gunicorn", "-c", "python:herald.gunicorn_conf", "herald.wsgi",
        "-b", f"127.0.0.1:{args.web_port}", "--workers", str(args.web_workers), "--threads", str(args.web_threads),
        "--access-logfile", str(log_dir / "access.log"), "--access-logformat", ACCESS_LOG_FORMAT,
    ])
    for i in range(args.telephony_workers):
        processes.start(f"telephony-{i}", [
            *celery, "worker", "-Q", "telephony", "--pool", "threads", "-c", str(args.telephony_threads),
            "-n", f"telephony{i}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ])
    processes.start("default", [
        *celery, "worker", "-Q", "synthesis,default", "-c", "1", "-n", "default@%h", "--without-gossip",
        "--without-mingle", "--loglevel", "INFO",
    ])
    processes.start("beat", [*celery, "beat", "--loglevel", "INFO"])
    try:
        processes.wait_for_port(sandbox_port, "sandbox")
        processes.wait_for_port(args.web_port, "web server")
        for name in processes.procs:
            if name.startswith(("telephony-", "default")):
                processes.wait_for_line(name, "ready.")
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        campaign = seed(args, sandbox_url, sid, token)
        before, before_total = table_sizes(), database_bytes_total()
        meter = CpuMeter(processes)
        load_start = os.getloadavg()
        loads = [load_start[0]]
        meter.start()
        started = time.monotonic()
        planned = launch_campaign(campaign)
        print(f"launched: {planned} calls planned", flush=True)
        timeout = args.timeout or (args.callees / args.cps * 4 + 180)
        last_print = 0.0
        while True:
            campaign.refresh_from_db()
            if campaign.status == Campaign.Status.COMPLETED:
                break
            processes.check_alive()
            elapsed = time.monotonic() - started
            if elapsed > timeout:  # overloaded: stop here and report what happened so far
                print(f"the campaign did not complete within {timeout:.0f} s; stopping", flush=True)
                break
            loads.append(os.getloadavg()[0])
            if elapsed - last_print >= args.progress:
                attempts = CallAttempt.objects.filter(call__campaign=campaign).count()
                ended = campaign.calls.filter(state__in=["done", "failed"]).count()
                print(f"  {elapsed:6.0f} s: {attempts} attempts, {ended}/{planned} calls ended, "
                      f"load {loads[-1]:.2f}", flush=True)
                last_print = elapsed
            time.sleep(1.0)
        wall = time.monotonic() - started
        cpu = meter.stop()
        dialled = sandbox_calls(sandbox_url)
        completed = campaign.status == Campaign.Status.COMPLETED
        deadline = time.monotonic() + (30 if completed else 0)
        while not all(d["done"] for d in dialled) and time.monotonic() < deadline:
            time.sleep(1.0)  # the last calls' threads are posting their final callbacks
            dialled = sandbox_calls(sandbox_url)
        after, after_total = table_sizes(), database_bytes_total()
        ledger = check_ledger(campaign, dialled)
    finally:
        processes.stop()
    calls = campaign.calls.count()
    load_end = os.getloadavg()
    figures = {
        "bench": "campaign",
        "setup": "postgresql+redis" if args.setup == "postgres" else "sqlite+herald-fs",
        "callees": args.callees,
        "calls": calls,
        "cps_limit": args.cps,
        "telephony_workers": args.telephony_workers,
        "web_workers": args.web_workers,
        "sweep_interval": args.sweep_interval,
        "completed": completed,
        "wall_seconds": round(wall, 1),
        **dial_rate(dialled, args.cps),
        "webhook_latency": webhook_latency(log_dir / "access.log"),
        "db_per_1000_calls": growth_per_1000(before, after, calls),
        "db_rows_per_1000_calls": round(
            sum(r - before.get(t, (0, 0))[0] for t, (r, _) in after.items()) * 1000 / calls, 1),
        "db_bytes_per_1000_calls": round(
            ((after_total - before_total) if before_total is not None
             else sum(b - before.get(t, (0, 0))[1] for t, (_, b) in after.items())) * 1000 / calls),
        **ledger,
        "cpu": cpu,
        "cpu_ms_per_call": {role: round(1000 * seconds / calls, 1) for role, seconds in cpu["seconds"].items()},
        "load_average": {"start": round(load_start[0], 2), "max_1min": round(max(loads), 2),
                         "end": [round(x, 2) for x in load_end]},
        "cpu_count": os.cpu_count(),
    }
    figures["meets_target"] = bool(
        completed and figures["ratio_to_limit"] and figures["ratio_to_limit"] >= 0.95 and not ledger["lost"]
        and not ledger["doubled"]
    )
    return figures


def report(figures: dict) -> None:
    """The figures in words, before the JSON line."""
    print(f"{figures['callees']} callees on {figures['setup']}: {figures['wall_seconds']} s launch to completion, "
          f"dial phase {figures['dial_phase_seconds']} s")
    print(f"sustained {figures['sustained_cps']} calls/s = {figures['ratio_to_limit']:.1%} of the "
          f"{figures['cps_limit']:g} CPS limit (average {figures['average_cps']}/s, most in any 1 s window "
          f"{figures['max_in_any_1s_window']})" if figures["ratio_to_limit"] else "too few dials for a rate")
    latency = figures["webhook_latency"]
    for pid, row in latency["per_process"].items():
        print(f"  web process {pid}: {row['requests']} callbacks, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
    print(f"  audio fetches: {latency['audio_fetches']}")
    print(f"database per 1,000 calls: {figures['db_rows_per_1000_calls']} rows, "
          f"{figures['db_bytes_per_1000_calls'] / 1e6:.2f} MB")
    for table, row in figures["db_per_1000_calls"].items():
        print(f"  {table}: {row['rows']} rows, {row['bytes'] / 1e3:.0f} kB")
    print(f"{'completed' if figures['completed'] else 'NOT COMPLETED'}: dialled {figures['dialled']}, attempts "
          f"{figures['attempts']} {figures['attempts_by_status']}, unfinished calls {figures['unfinished_calls']}")
    print(f"lost {figures['lost']}, doubled {figures['doubled']} {figures['problems'] or ''}; callbacks the carrier "
          f"gave up on: {figures['callbacks_failed_at_the_carrier'] or 'none'}")
    print("CPU cores used over the run: " + ", ".join(f"{role} {cores}" for role, cores in figures["cpu"]["cores"].items()))
    print("CPU ms per call: " + ", ".join(f"{role} {ms}" for role, ms in figures["cpu_ms_per_call"].items()))
    print(f"load average: {figures['load_average']} on {figures['cpu_count']} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callees", type=int, default=2000)
    parser.add_argument("--setup", choices=["postgres", "embedded"], default="postgres")
    parser.add_argument("--cps", type=float, default=50.0, help="calls per second of the account and the campaign")
    parser.add_argument("--channels", type=int, default=1000, help="concurrent calls allowed (not to bind)")
    parser.add_argument("--telephony-workers", type=int, default=4)
    parser.add_argument("--telephony-threads", type=int, default=8, help="threads per telephony worker")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--sweep-interval", type=float, default=2.0, help="HERALD_SWEEP_INTERVAL for beat")
    parser.add_argument("--time-scale", type=float, default=0.001, help="real seconds per simulated second")
    parser.add_argument("--conn-max-age", type=int, default=60,
                        help="DATABASE_CONN_MAX_AGE, as docker-compose.yml sets it (0: a connection per request)")
    parser.add_argument("--pg-server", default=os.environ.get("HERALD_BENCH_PG_SERVER",
                                                              "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument("--timeout", type=float, default=None, help="seconds (default: from callees and cps)")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--keep", action="store_true", help="keep the database and the var folder (logs)")
    args = parser.parse_args()
    args.web_port = free_port()
    args.own_redis = args.setup == "postgres" and args.redis_url is None
    if args.own_redis:
        if not shutil.which("redis-server"):
            sys.exit("bench/campaign.py --setup postgres starts a redis-server of its own: install redis-server, "
                     "or pass --redis-url")
        args.redis_url = f"redis://127.0.0.1:{free_port()}/0"
    var_dir = Path(tempfile.mkdtemp(prefix="herald-bench-campaign-"))
    database = f"herald_bench_campaign_{secrets.token_hex(4)}"
    args.database_url = f"{args.pg_server.rstrip('/')}/{database}"
    if args.setup == "postgres":
        import psycopg

        with psycopg.connect(f"{args.pg_server.rstrip('/')}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
    print(f"campaign bench: {args.callees} callees, {args.setup}, {args.cps:g} CPS, {args.telephony_workers} "
          f"telephony workers, {args.web_workers} web processes; load {os.getloadavg()[0]:.2f}; var {var_dir}",
          flush=True)
    failed = True
    try:
        figures = run(args, var_dir)
        failed = False
    finally:
        if args.setup == "postgres" and not args.keep:
            from django.conf import settings
            from django.db import connections

            if settings.configured:  # Django may not have started: the run failed before
                connections.close_all()
            import psycopg

            with psycopg.connect(f"{args.pg_server.rstrip('/')}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if not args.keep and not failed:
            shutil.rmtree(var_dir, ignore_errors=True)
        elif failed:
            print(f"logs kept in {var_dir / 'logs'}", file=sys.stderr)
    report(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
