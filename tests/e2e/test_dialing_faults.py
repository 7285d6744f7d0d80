"""The dial ledger under faults: real Redis, real Celery worker processes, the sandbox carrier.

Each scenario runs a short campaign to completion while something goes wrong, then checks the sandbox's own
record of the calls it was asked to create against Herald's:

- every callee was dialled at most once per attempt (per (To, attempt number), at most one created call;
  each created call names its attempt in its status callback URL),
- no outcome was lost: every created call's final status, answering machine verdict, digits and duration are
  on its attempt, and attempts that created no call failed before dialling,
- attempts never moved backwards, attempt numbers run 1..n within max attempts, the campaign completed.

What beat would do (the sweep, and housekeeping's requeue and settle) runs here in the test process, with the
stale limits shortened so that a scenario takes seconds; the workers' visibility timeout is seconds too, so the
tasks a dead worker held are delivered again. Each test has its own redis-server, so that one can restart it;
the shared Redis is never touched.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import redis
from django.db import connection

from campaigns.dialer import sweep
from campaigns.launch import launch_campaign
from campaigns.lifecycle import release_stale_claims
from campaigns.models import Call, CallAttempt, Campaign, Worker
from campaigns.workers import recover_dead_workers
from herald.celery import app as celery_app
from sandbox.twilio import TwilioSandbox
from synthesis.models import RenderedAudio
from telephony import actions as telephony_actions
from telephony.actions import set_auth_token, settle_silent_attempts
from telephony.models import ProviderEvent
from telephony.outcomes import RANK
from tests.conftest import worker_database_url
from tests.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
S = CallAttempt.Status
ATTEMPT_IN_URL = re.compile(r"/telephony/twilio/(\d+)/status$")
TEXT = "您好，您的快递明天送达，确认请按1。"  # one clip per voice: the scenarios are about dialling
CALLEES = {"answer": 0.5, "busy": 0.2, "no_answer": 0.15, "machine": 0.1, "failed": 0.05}
# Worker heartbeats in these scenarios (production: 10 s, dead after 30 s); HERALD_FAULT_HEARTBEAT overrides it
# to measure the recovery the README states with the production figures.
HEARTBEAT = float(os.environ.get("HERALD_FAULT_HEARTBEAT", "2"))
DEAD = 3 * HEARTBEAT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, with nothing on disk: a restart loses every key, as a crash would."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        proc = self.proc

        def answers() -> bool:
            try:
                return client.ping()
            except redis.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}") from None
                return False

        wait_until(answers, lambda: f"redis-server to start: {self.log_path.read_text()[-2000:]}", timeout=10,
                   interval=0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(settings) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(Path(settings.VAR_DIR))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(settings, redis_server) -> Iterator[str]:
    """This process publishes to (and paces through) the test's own Redis."""
    old_url = celery_app.conf.broker_url
    settings.CELERY_BROKER_URL = settings.PACING_REDIS_URL = redis_server.url
    celery_app.conf.broker_url = redis_server.url

    def fresh_pools() -> None:
        # The app keeps its connection pools; drop them so that publishing uses the new URL.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    fresh_pools()
    yield redis_server.url
    celery_app.conf.broker_url = old_url
    fresh_pools()


class Workers:
    """`celery worker` processes on the test database and the test's Redis, under a supervisor's rule: one that
    exits is started again (production runs them with `restart: unless-stopped`)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[subprocess.Popen] = []
        self.restarted: list[tuple[str, int]] = []  # (queues, exit status) of each worker that had to be replaced

    def start(self, queues: str = "telephony", concurrency: int = 2) -> subprocess.Popen:
        name = f"{queues.split(',')[0]}-{secrets.token_hex(3)}"
        node = f"{name}@{socket.gethostname()}"
        log_path = self.log_dir / f"worker-{name}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "herald", "worker", "-Q", queues, "-c", str(concurrency),
                 "--pool", "threads", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", node, "--loglevel", "INFO"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        proc.log_path, proc.queues, proc.node = log_path, queues, node  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def wait_ready(self) -> None:
        for proc in self.procs:
            wait_until(partial(self._ready, proc), f"worker {proc.pid} to start ({proc.log_path})", timeout=60,
                       interval=0.1)

    @staticmethod
    def _ready(proc: subprocess.Popen) -> bool:
        log = proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
        if proc.poll() is not None:
            raise RuntimeError(f"worker did not start:\n{log[-3000:]}")
        return "ready." in log

    def supervise(self) -> None:
        for proc in list(self.procs):
            if proc.poll() is not None:
                self.procs.remove(proc)
                self.restarted.append((proc.queues, proc.returncode))
                self.start(proc.queues)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(request, live_server, settings, broker) -> Iterator[Workers]:
    settings.PUBLIC_URL = live_server.url  # where the carrier's webhooks land, and what their signatures cover
    # Tasks of a dead worker come back from Redis within seconds, unless the test is about real timeouts:
    # then only the workers' heartbeats can bring them back soon.
    real = request.node.get_closest_marker("real_timeouts") is not None
    settings.WORKER_HEARTBEAT_SECONDS, settings.WORKER_DEAD_SECONDS = HEARTBEAT, DEAD
    settings.MAX_CALLS_PER_NUMBER_24H = 100  # some scenarios call the same numbers in several campaigns
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings" if real else "tests.e2e.fault_worker_settings",
        "HERALD_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "HERALD_WORKER_DEAD_SECONDS": str(DEAD),
        "HERALD_MAX_CALLS_PER_NUMBER_24H": "100",
        "DATABASE_URL": worker_database_url(),
        "HERALD_TEST_BROKER_URL": broker,
        "HERALD_PACING_REDIS_URL": broker,
        "HERALD_PUBLIC_URL": live_server.url,
        "HERALD_VAR_DIR": str(settings.VAR_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    pool = Workers(env, Path(settings.VAR_DIR))
    yield pool
    pool.stop()


@pytest.fixture
def quick_housekeeping(request, settings, monkeypatch) -> None:
    """Stale limits of seconds, not minutes: what a dead worker or a lost message leaves is found quickly."""
    if request.node.get_closest_marker("real_timeouts") is not None:
        return  # the production limits: 300 s stale claims
    settings.DIAL_STALE_SECONDS = 6
    monkeypatch.setattr(telephony_actions, "UNKNOWN_LOOKUP_AFTER", timedelta(seconds=2))
    monkeypatch.setattr(telephony_actions, "LOOKUP_CONFIRM", timedelta(seconds=1))


@pytest.fixture
def carrier(account, workers, quick_housekeeping) -> Iterator[Callable[..., TwilioSandbox]]:
    started: list[TwilioSandbox] = []

    def make(**kwargs) -> TwilioSandbox:
        token = secrets.token_hex(16)
        sandbox = TwilioSandbox(
            {account.account_sid: token},
            **{"seed": 17, "time_scale": 0.002, "hangup_early": 0.1, "digits": {"1": 0.5, "2": 0.2, "9": 0.1},
               **CALLEES, **kwargs},
        ).start()
        started.append(sandbox)
        account.api_base_url = sandbox.url
        account.save(update_fields=["api_base_url"])
        set_auth_token(account, token)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def campaign(make_campaign) -> Callable[[int], Campaign]:
    def make(contacts: int) -> Campaign:
        return make_campaign(
            contacts, text=TEXT, max_attempts=3, retry_delay=timedelta(seconds=1), calls_per_second=10,
            max_concurrent_calls=8, breaker_window=0,
        )

    return make


def run_to_completion(
    campaign: Campaign, sandbox: TwilioSandbox, workers: Workers, *, during=None, timeout: float = 90
) -> list[str]:
    """Do beat's and the supervisor's work until the campaign completes; `during()` is called each round.

    Returns the errors beat's steps met (Redis down, say): like beat's tasks, they are run again next round.
    """
    errors: list[str] = []

    def completed() -> bool:
        workers.supervise()
        for step in (sweep, release_stale_claims, settle_silent_attempts, recover_dead_workers):
            try:
                step()
            except Exception as exc:  # Redis down: beat's task would fail the same way, and run again
                errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
        campaign.refresh_from_db()
        if campaign.status == Campaign.Status.COMPLETED:
            return True
        if during is not None:
            during()
        return False

    def states() -> str:
        states = Counter(campaign.calls.values_list("state", flat=True))
        attempts = Counter(CallAttempt.objects.filter(call__campaign=campaign).values_list("status", flat=True))
        return f"the campaign to complete: calls {dict(states)}, attempts {dict(attempts)}\n{errors[-5:]}"

    wait_until(completed, states, timeout=timeout, interval=0.25)  # one round of beat's work per poll
    assert sandbox.wait_idle(20)  # every callback posted, and answered
    return errors


def run_through(sandbox: TwilioSandbox, campaign: Campaign, workers: Workers) -> tuple[Campaign, dict[str, int]]:
    """The plain scenario: a synthesis and a telephony worker, launch, run to completion, check the ledger."""
    workers.start("synthesis,default")
    workers.start("telephony")
    workers.wait_ready()
    launch_campaign(campaign)
    run_to_completion(campaign, sandbox, workers)
    return campaign, assert_ledger_holds(campaign, sandbox)


def assert_ledger_holds(campaign: Campaign, sandbox: TwilioSandbox) -> dict[str, int]:
    """The invariants of every scenario; returns a few counts for the scenario's own checks."""
    dialled = sandbox.calls()
    attempts = {a.pk: a for a in CallAttempt.objects.filter(call__campaign=campaign).select_related("call")}
    owner: dict[str, CallAttempt] = {}
    for d in dialled:
        match = ATTEMPT_IN_URL.search(d["status_callback"])
        assert match, d["status_callback"]
        owner[d["sid"]] = attempts[int(match[1])]

    # Dialled at most once per attempt: per attempt row, and per (callee, attempt number).
    per_attempt = Counter(a.pk for a in owner.values())
    assert max(per_attempt.values()) == 1, [a for a, n in per_attempt.items() if n > 1]
    per_number = Counter((a.call.phone, a.number) for a in owner.values())
    assert max(per_number.values()) == 1

    # No outcome lost: what the carrier did is what the attempt says.
    for d in dialled:
        attempt = owner[d["sid"]]
        assert attempt.provider_call_id == d["sid"], (attempt, d["sid"])
        assert attempt.status == d["status"], (attempt, d["status"])
        assert (attempt.answered_by or None) == d["answered_by"], attempt
        assert (attempt.digits or None) == d["digits"], attempt
        if d["status"] == "completed":
            assert attempt.duration == d["duration"], attempt
    # An attempt with no call at the carrier failed before dialling (or was found never placed).
    for attempt in set(attempts.values()) - set(owner.values()):
        assert attempt.status == S.FAILED and not attempt.provider_call_id, attempt

    # Attempts only moved forward; numbering and limits hold; every call ended.
    for attempt in attempts.values():
        ranks = [RANK[status] for status, _ in attempt.timeline if status in RANK]
        assert ranks == sorted(ranks), attempt.timeline
    for call in campaign.calls.all():
        numbers = sorted(a.number for a in attempts.values() if a.call_id == call.pk)
        assert numbers, f"call {call.pk} ended {call.state}/{call.outcome} without an attempt: {call.error}"
        assert numbers == list(range(1, call.attempts_made + 1)), call
        assert call.attempts_made <= campaign.max_attempts
        assert call.state in (Call.State.DONE, Call.State.FAILED) and call.outcome, call
        last = max((a for a in attempts.values() if a.call_id == call.pk), key=lambda a: a.number)
        if last.digits == "9":
            assert call.outcome == Call.Outcome.OPTED_OUT
        elif last.status == S.COMPLETED:
            assert call.outcome in (Call.Outcome.ANSWERED, Call.Outcome.MACHINE)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert not ProviderEvent.objects.filter(signature_valid=False).exists()
    return {
        "calls": campaign.calls.count(),
        "attempts": len(attempts),
        "dialled": len(dialled),
        "never_placed": sum(a.error_code == "never-placed" for a in attempts.values()),
    }


def test_a_telephony_worker_killed_mid_campaign(carrier, campaign, workers, broker):
    sandbox = carrier(create_latency=0.4)  # each create takes a while: the kill finds some in flight
    workers.start("synthesis,default")
    doomed = workers.start("telephony")
    workers.start("telephony")
    workers.wait_ready()
    run = campaign(24)
    launch_campaign(run)
    killed: dict[str, int] = {}

    def kill_when_dialling() -> None:
        if killed or CallAttempt.objects.filter(call__campaign=run).count() < 8:
            return
        os.kill(doomed.pid, signal.SIGKILL)  # the supervisor starts its replacement
        doomed.wait(10)
        killed["attempts_unconfirmed"] = CallAttempt.objects.filter(call__campaign=run, status=S.CREATED).count()
        killed["claims_held"] = run.calls.filter(state=Call.State.DIALING).count()

    run_to_completion(run, sandbox, workers, during=kill_when_dialling)
    # The tasks the dead worker held come back once their visibility timeout has passed (kombu looks every
    # 10 s): they must find their calls taken, and dial nobody.
    queue = redis.Redis.from_url(broker)
    wait_until(lambda: queue.hlen("unacked") == 0, "the dead worker's tasks to be delivered again", timeout=40,
               interval=0.5)
    assert queue.llen("telephony") == 0
    assert sandbox.wait_idle(10)

    assert killed, "the campaign ended before the worker could be killed"
    assert workers.restarted == [("telephony", -signal.SIGKILL)]
    counts = assert_ledger_holds(run, sandbox)
    redelivered = sum(
        len(re.findall(r"succeeded in [\d.]+s: '(?:not claimed|campaign over)'", p.log_path.read_text()))
        for p in workers.procs
    )
    print(f"\nkill -9: at the kill {killed}; {redelivered} late tasks found their call taken; {counts}")


def test_redis_restarted_mid_campaign(carrier, campaign, workers, redis_server):
    sandbox = carrier(create_latency=0.2)
    workers.start("synthesis,default")
    workers.start("telephony")
    workers.start("telephony")
    workers.wait_ready()
    run = campaign(24)
    launch_campaign(run)
    restarted: dict[str, float] = {}

    def restart_when_dialling() -> None:
        if "stopped" not in restarted:
            if CallAttempt.objects.filter(call__campaign=run).count() >= 8:
                restarted["claims_held"] = run.calls.filter(state=Call.State.DIALING).count()
                redis_server.stop()  # every queued task and every pacing key: gone
                restarted["stopped"] = time.monotonic()
        elif "started" not in restarted and time.monotonic() - restarted["stopped"] > 2:
            redis_server.start()  # beat ran twice meanwhile, and could not publish
            restarted["started"] = time.monotonic()

    errors = run_to_completion(run, sandbox, workers, during=restart_when_dialling)

    assert "started" in restarted, "the campaign ended before Redis could be restarted"
    assert errors, "beat should have failed while Redis was down"
    counts = assert_ledger_holds(run, sandbox)
    # Workers holding unacknowledged tasks when the connection drops exit (kombu fails restoring them without a
    # connection); the supervisor starts them again. Herald's guarantees must not depend on which ones do.
    print(f"\nredis restart: {restarted['claims_held']} claims held, {len(errors)} beat errors, "
          f"workers restarted {workers.restarted}; {counts}")


def test_every_callback_delivered_twice(carrier, campaign, workers):
    sandbox = carrier(duplicate_callbacks=1.0)
    run, counts = run_through(sandbox, campaign(16), workers)
    # Status callbacks and the asynchronous answering-machine reports (stored as status events too).
    delivered = sum(len(d["callbacks"]) + len(d["amd_callbacks"]) for d in sandbox.calls())
    events = ProviderEvent.objects.filter(attempt__call__campaign=run, kind=ProviderEvent.Kind.STATUS)
    assert events.count() == delivered  # every delivery is stored
    assert events.filter(applied=True).count() <= delivered // 2  # a duplicate is never applied
    for d in sandbox.calls():
        sequence = Counter(p["SequenceNumber"] for _, p, _ in d["callbacks"])
        assert set(sequence.values()) == {2}
    print(f"\nduplicated callbacks: {delivered} delivered; {counts}")


def test_callbacks_delivered_out_of_order(carrier, campaign, workers):
    sandbox = carrier(reorder_callbacks=0.6)
    run, counts = run_through(sandbox, campaign(16), workers)
    reordered = 0
    for d in sandbox.calls():
        sequence = [int(p["SequenceNumber"]) for _, p, _ in d["callbacks"]]
        reordered += sequence != sorted(sequence)
    late = ProviderEvent.objects.filter(attempt__call__campaign=run, kind=ProviderEvent.Kind.STATUS, applied=False)
    assert reordered > 0 and late.exists()  # it did happen: late events were stored, and not applied
    print(f"\nreordered callbacks: {reordered} calls out of order, {late.count()} late events; {counts}")


def test_ambiguous_creates_are_looked_up_not_redialled(carrier, campaign, workers):
    """Creates that time out or get a 500, after or before Twilio acted, and 20429s, with real workers."""
    sandbox = carrier(
        create_faults={"timeout": 0.1, "500-after": 0.1, "500-before": 0.15, "20429": 0.1},
        create_hang_seconds=0.5,
    )
    run, counts = run_through(sandbox, campaign(24), workers)
    faults = Counter(r["fault"] for r in sandbox.create_requests())
    assert faults["500-before"] and faults["500-after"] + faults["timeout"]
    # A create refused before Twilio acted left no call: each such attempt was found never placed.
    assert counts["never_placed"] == faults["500-before"]
    assert not CallAttempt.objects.filter(call__campaign=run, status=S.UNKNOWN).exists()
    print(f"\nambiguous creates: {dict(faults)}; {counts}")


PERSONAL = "您好{name}，您的订单{order_id}明天送达，确认请按1。"  # a clip per callee: rendering takes a while


@pytest.mark.real_timeouts
def test_each_worker_kind_killed_mid_campaign_costs_less_than_90_seconds(
    carrier, make_campaign, workers, settings
):
    """On production broker and stale limits, so that only the heartbeats can hand on a dead worker's work:
    an undisturbed run, then the same campaign with its telephony worker, then its synthesis worker, killed
    (kill -9) mid-campaign. Each finishes within 90 s of the undisturbed run, every call accounted for, none
    dialled twice."""
    settings.RENDER_BATCH_SIZE = 1  # many small render tasks: the synthesis worker is killed holding some
    for queues in ("synthesis,default", "telephony", "telephony"):
        workers.start(queues)
    workers.wait_ready()

    runs = iter(range(1, 10))

    def new_campaign() -> Campaign:
        run_no = next(runs)  # order numbers of its own: no clip of an earlier run is reused
        return make_campaign(
            40, text=PERSONAL, fields=lambda i: {"order_id": f"SF{run_no}{i:09d}"}, max_attempts=2, retry_delay=timedelta(seconds=1), calls_per_second=10,
            max_concurrent_calls=8, breaker_window=0,
        )

    def node_of(queues: str) -> subprocess.Popen:
        return next(p for p in workers.procs if p.queues == queues)

    def held_args(proc: subprocess.Popen, task: str) -> list:
        row = Worker.objects.filter(name=proc.node, recovered_at=None).order_by("-started_at").first()
        return [h[2][0] for h in row.held if h[1] == task and h[2]] if row is not None else []

    def timed(kill: Callable[[Campaign], int | None]) -> tuple[float, dict[str, int], int]:
        # Nobody opts out (9): the next run calls the same numbers, and must dial them all.
        sandbox = carrier(create_latency=0.2, digits={"1": 0.5, "2": 0.2})
        run = new_campaign()
        started = time.monotonic()
        stranded: list[int] = []
        stop = threading.Event()

        def keep_looking() -> None:
            # Looks from before the launch, beside the sweep (which runs in this test's thread), until it kills or
            # the campaign is over: a look once a sweep round missed its moment on a fast machine (twice in CI).
            try:
                while not stop.is_set() and not stranded:
                    if (killed := kill(run)) is not None:
                        stranded.append(killed)
                    time.sleep(0.005)
            finally:
                connection.close()  # this thread's own connection

        watcher = threading.Thread(target=keep_looking, name="kill-watch", daemon=True)
        watcher.start()
        launch_campaign(run)
        try:
            run_to_completion(run, sandbox, workers, timeout=240)
        finally:
            stop.set()
            watcher.join(30)
        return time.monotonic() - started, assert_ledger_holds(run, sandbox), stranded[0] if stranded else 0

    # Each kill returns what the worker held at the moment of the kill (read just before it): after it, the
    # carrier's callbacks can still finish a call whose create had gone out, so a count after the kill can be 0.

    def kill_telephony(run: Campaign) -> int | None:
        """Killed when it holds dials it has not finished: those calls stay claimed until recovery."""
        if CallAttempt.objects.filter(call__campaign=run).count() < 8:
            return None  # not yet: mid-campaign
        doomed = node_of("telephony")
        held = list(run.calls.filter(state=Call.State.DIALING, pk__in=held_args(doomed, "telephony.tasks.place_call"))
                    .values_list("pk", flat=True))
        if not held:
            return None
        os.kill(doomed.pid, signal.SIGKILL)  # the supervisor starts its replacement
        doomed.wait(10)
        return len(held)

    def kill_synthesis(run: Campaign) -> int | None:
        """Killed when it holds batches whose audio is not made yet: those calls wait until recovery."""
        doomed = node_of("synthesis,default")
        keys = [k for batch in held_args(doomed, "synthesis.tasks.render_batch") for k in batch]
        pending = RenderedAudio.objects.filter(render_key__in=keys).exclude(state="ready").count()
        if not pending:
            return None
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        return pending

    baseline, counts, _ = timed(lambda run: None)
    results = {"undisturbed": (baseline, counts, 0)}
    for kind, kill in (("telephony", kill_telephony), ("synthesis", kill_synthesis)):
        took, counts, stranded = timed(kill)
        assert stranded, f"the {kind} worker could not be killed holding work the campaign needs"
        results[kind] = (took, counts, stranded)
        assert took <= baseline + 90, (kind, took, baseline)
    assert sorted(q for q, _ in workers.restarted) == ["synthesis,default", "telephony"]
    recovered = Worker.objects.exclude(recovered_at=None).filter(stopped_at=None)
    assert recovered.count() == 2  # both dead workers were found by their silence and handed on
    summary = {k: f"{t:.1f} s, {n} stranded at the kill, {c}" for k, (t, c, n) in results.items()}
    print(f"\nworker kills (heartbeat {HEARTBEAT:.0f} s, dead after {DEAD:.0f} s): {summary}")
