"""`make demo` as a user runs it: its own processes, a worker killed under it, SIGTERM.

The demo runs on its own embedded setup (SQLite and the filesystem broker under a var directory of its own),
not on the test database, so these run once, on the SQLite pass.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.wait import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_of(var_dir: Path) -> dict[int, str]:
    """pid → command line of every process running with this HERALD_VAR_DIR (the demo and all it started)."""
    marker = f"HERALD_VAR_DIR={var_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


class Demo:
    def __init__(self, tmp_path: Path, contacts: int) -> None:
        self.var_dir = tmp_path / "var"
        self.out = tmp_path / "demo.out"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        env.update(DJANGO_SETTINGS_MODULE="herald.settings", HERALD_VAR_DIR=str(self.var_dir),
                   HERALD_DEMO_PORT=str(_free_port()), PYTHONUNBUFFERED="1",
                   HERALD_WORKER_HEARTBEAT_SECONDS="1", HERALD_WORKER_DEAD_SECONDS="3")
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "demo", "--contacts", str(contacts), "--timeout", "240"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 120) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"the demo exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            return False

        wait_until(seen, lambda: f"{text!r} in the demo's output:\n{self.output()[-3000:]}", timeout=timeout,
                   interval=0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for pid in _processes_of(self.var_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def demo(tmp_path):
    started: list[Demo] = []

    def start(contacts: int) -> Demo:
        run = Demo(tmp_path, contacts)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


def test_sigterm_stops_every_process_the_demo_started(demo):
    run = demo(20)
    run.wait_for("launched")
    started = _processes_of(run.var_dir)
    kinds = " ".join(started.values())
    assert all(k in kinds for k in ("sandbox.twilio", "gunicorn", "synthesis@", "telephony@", " beat")), kinds
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) != 0
    wait_until(lambda: not _processes_of(run.var_dir), lambda: f"every demo process to exit: {_processes_of(run.var_dir)}",
               timeout=30, interval=0.2)


def test_the_demo_finishes_when_its_telephony_worker_is_killed(demo):
    run = demo(40)
    run.wait_for("launched")

    def telephony_worker() -> int | None:
        for pid, cmd in _processes_of(run.var_dir).items():
            if "telephony@" in cmd and "worker" in cmd:
                return pid
        return None

    pid = wait_until(telephony_worker, "the telephony worker", timeout=30)
    web_log = run.var_dir / "demo-logs" / "web.log"  # gunicorn's access log: the carrier's status callbacks
    wait_until(lambda: web_log.exists() and web_log.read_text(errors="replace").count("POST /telephony/") >= 3,
               "the first calls to be dialled", timeout=120, interval=0.1)
    os.kill(pid, signal.SIGKILL)  # mid-campaign: calls were dialled, more are due
    killed_at = time.monotonic()
    assert run.proc.wait(timeout=240) == 0, run.output()[-3000:]
    out = run.output()
    assert "telephony-worker exited with -9; starting it again" in out
    assert "40/40 calls finished" in out, out[-2000:]
    # The campaign runs the demo's call flow, and the report prints its funnel.
    assert "Call flow '送达提醒 按键菜单': answered by a person → reached the menu → how it ended" in out, out[-2000:]
    funnel = out.split("how it ended\n")[1].splitlines()
    assert funnel[0].split() == ["human", "menu", "confirmed", "rescheduled", "opted-out", "transferred", "refused",
                                 "no-input", "hung-up"]
    assert [line.split()[0] for line in funnel[1:4]] == ["All", "A", "B"]
    # Every call that reached the menu ended with a final action the webhooks recorded, most of them confirmed.
    human, menu, *counts = [int(cell) for cell in funnel[1].split()[2:] if not cell.endswith("%")]
    assert 0 < menu <= human and sum(counts) == menu and counts[0] > 0, funnel
    print(f"\ndemo finished {time.monotonic() - killed_at:.1f} s after its telephony worker was killed")
