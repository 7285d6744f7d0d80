"""`make demo`: seed a delivery-reminder campaign and run it to completion against the local sandbox."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns import lifecycle
from campaigns.demo import DEMO_KEYS, DEMO_MENU_HANGUP, seed_demo
from campaigns.launch import launch_campaign
from campaigns.models import Call, Campaign
from campaigns.reports import FUNNEL_ACTIONS, METRICS, CampaignReport, campaign_report, progress
from synthesis.models import RenderedAudio

ROOT = Path(settings.BASE_DIR)


MAX_RESTARTS = 3  # per process: a worker that dies more often than this has a problem to read in its log


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through handle(), which stops every process it started


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Command(BaseCommand):
    help = "Run the demo campaign end to end (sandbox carrier, embedded voice, real workers)."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=200)
        parser.add_argument("--port", type=int, default=int(os.environ.get("HERALD_DEMO_PORT", "8000")))
        parser.add_argument("--serve", action="store_true", help="leave the admin running afterwards")
        parser.add_argument("--timeout", type=int, default=900, help="seconds before giving up")

    def handle(self, *args, **opts):
        self.procs: list[subprocess.Popen] = []
        self.restarts: dict[str, int] = {}
        self.logs = Path(settings.VAR_DIR) / "demo-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # SIGTERM (a process manager, `kill`) stops everything the demo started, as Ctrl-C does.
        signal.signal(signal.SIGTERM, _terminated)
        try:
            self._run(opts)
        except BaseException:
            self._stop_all()
            raise
        if not opts["serve"]:
            self._stop_all()

    def _run(self, opts) -> None:
        port = opts["port"]
        if not _port_free(port):
            raise CommandError(f"port {port} is in use; run with HERALD_DEMO_PORT=<free port>")
        public_url = f"http://127.0.0.1:{port}"
        self.stdout.write("• migrating the database")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", verbosity=0, interactive=False)
        password = self._admin_user()

        sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        sandbox_port = _free_port()
        env = {**os.environ, "HERALD_PUBLIC_URL": public_url, "HERALD_SWEEP_INTERVAL": "1",
               "HERALD_TWILIO_SANDBOX": "1", "PYTHONUNBUFFERED": "1"}
        self.stdout.write("• starting the Twilio sandbox, web server, synthesis + telephony workers and beat")
        self._start("sandbox", [sys.executable, "-m", "sandbox.twilio", "--port", str(sandbox_port),
                                "--account", f"{sid}:{token}", "--seed", "2026", "--time-scale", "0.02",
                                "--digits", DEMO_KEYS, "--menu-hangup", DEMO_MENU_HANGUP], env)
        self._start("web", [sys.executable, "-m", "gunicorn", "herald.wsgi", "-b", f"127.0.0.1:{port}",
                            "--workers", "2", "--threads", "8", "--access-logfile", "-"], env)
        celery = [sys.executable, "-m", "celery", "-A", "herald"]
        self._start("synthesis-worker", [*celery, "worker", "-Q", "synthesis", "-c", "1", "-n", "synthesis@%h",
                                         "--without-gossip", "--without-mingle"], env)
        self._start("telephony-worker", [*celery, "worker", "-Q", "telephony,default", "-c", "8", "--pool",
                                         "threads", "-n", "telephony@%h", "--without-gossip", "--without-mingle"], env)
        self._start("beat", [*celery, "beat", "--loglevel", "INFO"], env)
        self._wait_for_port(port, "web server")
        self._wait_for_port(sandbox_port, "sandbox")

        demo = seed_demo(
            contacts=opts["contacts"], api_base_url=f"http://127.0.0.1:{sandbox_port}", account_sid=sid, auth_token=token,
            call_flow=True,
        )
        planned = launch_campaign(demo.campaign)
        self.stdout.write(f"• launched '{demo.campaign.name}': {planned} calls planned, rendering audio")
        self._follow(demo.campaign, opts["timeout"])
        self._print_report(demo.campaign)
        if opts["serve"]:
            self.stdout.write(self.style.SUCCESS(
                f"\nAdmin: {public_url}/admin/  login: admin / {password}\n"
                f"Report: {public_url}/admin/campaigns/campaign/{demo.campaign.pk}/report/\n"
                "Workers keep running; press Ctrl-C to stop everything."
            ))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            self._stop_all()

    def _admin_user(self) -> str:
        password_file = Path(settings.VAR_DIR) / "demo-admin-password"
        if not password_file.exists():
            password_file.touch(mode=0o600)
            password_file.write_text(secrets.token_urlsafe(12))
        password = password_file.read_text().strip()
        User = get_user_model()
        user, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _start(self, name: str, cmd: list[str], env: dict) -> None:
        log = (self.logs / f"{name}.log").open("a" if name in self.restarts else "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.demo_name, proc.demo_env = name, env  # type: ignore[attr-defined]
        self.procs.append(proc)

    def _wait_for_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            self._check_alive()
            time.sleep(0.2)
        raise CommandError(f"the {what} did not start; see {self.logs}")

    def _check_alive(self) -> None:
        """A process that exited is started again, as `restart: unless-stopped` does in production; the
        workers' heartbeats hand on what a dead one held. One that keeps exiting stops the demo."""
        for proc in list(self.procs):
            if proc.poll() is None:
                continue
            name = proc.demo_name  # type: ignore[attr-defined]
            if self.restarts.get(name, 0) >= MAX_RESTARTS:
                raise CommandError(f"{name} exited with {proc.returncode} {MAX_RESTARTS + 1} times; logs in {self.logs}")
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.procs.remove(proc)
            if _group_alive(proc.pid):  # what it started (gunicorn's or the pool's children) goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            self.stdout.write(self.style.WARNING(f"  {name} exited with {proc.returncode}; starting it again"))
            self._start(name, list(proc.args), proc.demo_env)  # type: ignore[attr-defined]

    def _follow(self, campaign: Campaign, timeout: int) -> None:
        total = campaign.calls.count()
        deadline = time.monotonic() + timeout
        last_line, last_print = "", 0.0
        while True:
            campaign.refresh_from_db()
            states = progress(campaign)
            finished = sum(n for s, n in states.items() if s in ("done", "failed", "cancelled", "invalid"))
            rendered = RenderedAudio.objects.filter(calls__campaign=campaign, state="ready").distinct().count()
            line = (
                f"{finished}/{total} calls finished, {rendered} clips rendered, "
                f"{states.get('in_progress', 0) + states.get('dialing', 0)} on the line"
            )
            if sys.stdout.isatty():
                width = 40
                filled = int(width * finished / total) if total else width
                sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {line}  ")
                sys.stdout.flush()
            elif line != last_line and (time.monotonic() - last_print > 5 or campaign.status == "completed"):
                self.stdout.write(f"  {line}")
                last_print = time.monotonic()
            last_line = line
            held = self._held_by_the_cap(campaign)
            if campaign.status == Campaign.Status.COMPLETED or held:
                if sys.stdout.isatty():
                    sys.stdout.write("\n")
                else:
                    self.stdout.write(f"  {line}")
                if held:
                    # A demo run again within 24 hours calls the same numbers: the cap holds them back.
                    self.stdout.write(self.style.WARNING(
                        f"  {held} calls wait for the per-number cap ({settings.MAX_CALLS_PER_NUMBER_24H} calls in 24 "
                        "hours: these numbers were called by an earlier demo); the report shows the calls made so far"
                    ))
                return
            if time.monotonic() > deadline:
                raise CommandError(f"\nthe campaign did not finish within {timeout} s; logs in {self.logs}")
            self._check_alive()
            time.sleep(0.5)

    @staticmethod
    def _held_by_the_cap(campaign: Campaign) -> int:
        """How many calls are left, when every call still open is one the per-number cap holds back (0 else)."""
        still_open = campaign.calls.filter(state__in=lifecycle.OPEN)
        held = still_open.filter(state=Call.State.READY, hold=Call.Hold.NUMBER_CAP, next_attempt_at__gt=timezone.now())
        left = still_open.count()
        return left if left and held.count() == left else 0

    def _print_report(self, campaign: Campaign) -> None:
        report = campaign_report(campaign)
        self.stdout.write(self.style.SUCCESS(f"\nReport for '{campaign.name}'"))
        # With a flow, a call's keys are its way through the menus: the funnel below says how calls ended.
        keys = not report.has_flow
        header = f"{'':<14}{'calls':>7}{'attempts':>10}{'answered':>10}{'rate':>8}{'human':>7}{'machine':>9}{'listened':>10}{'opt-out':>9}"
        self.stdout.write(header + ("  digits" if keys else ""))
        for row in [report.total, *report.variants]:
            rate = "—" if row.answer_rate is None else f"{row.answer_rate:.0%}"
            digits = " ".join(f"{d}:{n}" for d, n in sorted(row.digits.items())) or "-"
            self.stdout.write(
                f"{row.label:<14}{row.calls:>7}{row.attempts:>10}{row.answered:>10}{rate:>8}{row.human:>7}"
                f"{row.machine:>9}{row.listened_to_end:>10}{row.opted_out:>9}" + (f"  {digits}" if keys else "")
            )
        if report.has_flow:
            self._print_funnel(report)
        for key, comparisons in report.comparisons.items():
            self.stdout.write(f"{METRICS[key].label}: " + " ".join(c.sentence for c in comparisons))
        sample = RenderedAudio.objects.filter(calls__campaign=campaign, state="ready").first()
        media = Path(settings.MEDIA_ROOT)
        self.stdout.write(f"\nAudio cache: {media / 'audio'}")
        if sample:
            self.stdout.write(f"  e.g. {media / sample.telephony_file}  ({sample.duration:.1f} s, 8 kHz μ-law)")
            self.stdout.write(f"       {media / sample.original_file}  (engine rate {sample.original_sample_rate} Hz)")
        failed = Call.objects.filter(campaign=campaign, state="failed").count()
        if failed:
            self.stdout.write(self.style.WARNING(f"{failed} calls failed; see the admin for reasons"))
        self.stdout.write(f"Worker and sandbox logs: {self.logs}")

    def _print_funnel(self, report: CampaignReport) -> None:
        """Answered by a person -> reached the menu -> how each call ended (transfers only where the flow has one)."""
        has_transfer = report.campaign.flow.nodes.filter(action="transfer").exists()
        shown = [a for a in FUNNEL_ACTIONS if has_transfer or a not in ("transferred", "transfer_refused")]
        heads = {"confirmed": "confirmed", "rescheduled": "rescheduled", "opted_out": "opted-out",
                 "transferred": "transferred", "transfer_refused": "refused", "no_input": "no-input",
                 "hung_up": "hung-up"}  # fmt: skip
        self.stdout.write(f"\nCall flow '{report.campaign.flow}': answered by a person → reached the menu → how it ended")
        self.stdout.write(f"{'':<14}{'human':>7}{'menu':>7}" + "".join(f"{heads[a]:>13}" for a in shown))
        for row in report.rows:
            steps = {step.action: step for step in row.funnel}
            cells = []
            for action in shown:
                step = steps[action]
                share = "" if step.share is None else f" {step.share:>4.0%}"
                cells.append(f"{step.calls}{share}".rjust(13))
            self.stdout.write(f"{row.label:<14}{row.human:>7}{row.listened_to_end:>7}" + "".join(cells))

    def _stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()
