"""bench/plan.py, bench/report.py, bench/webhooks.py, bench/frontend.py, bench/campaign.py, bench/api.py and
bench/announce.py run at a tiny size (their figures go to the README, never into an assert). plan and report need
PostgreSQL: they get a database of their own, as `make bench` does; campaign makes (and drops) its own database and
starts its own redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("HERALD_BENCH_SMOKE_SERVER", "postgres://postgres@127.0.0.1:5432")
DATABASE = "herald_bench_smoke"

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def figures(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bench_database(tmp_path_factory) -> dict[str, str]:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    env = {"DATABASE_URL": f"{SERVER}/{DATABASE}", "HERALD_VAR_DIR": str(tmp_path_factory.mktemp("bench-var")),
           "DJANGO_SETTINGS_MODULE": "herald.settings"}
    run("manage.py", "migrate", "--verbosity", "0", env=env)
    yield env
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def test_the_planning_bench_runs_at_a_tiny_size(bench_database):
    got = figures(run("bench/plan.py", "--contacts", "300", env=bench_database))

    # Some contacts are on the do-not-call list and some lack a variable: every one gets a call row, those
    # are not planned, and each planned call has its own text to render.
    assert (got["contacts"], got["calls"], got["database"], got["kept"]) == (300, 300, "postgresql", False)
    assert 0 < got["planned"] < 300 and got["renders"] == got["planned"]
    assert got["contacts_per_second"] > 0 and "meets_target" in got


def test_the_planning_bench_runs_with_a_call_flow(bench_database):
    got = figures(run("bench/plan.py", "--contacts", "300", "--flow", env=bench_database))

    # Two slot clips per planned callee; every callee is in one time zone, so they are four renders (two slots,
    # two voices), and the flow's seven clips without variables are rendered once per voice.
    assert (got["calls"], got["flow"]) == (300, True)
    assert got["callee_clips"] == 2 * got["planned"]
    assert got["renders"] == got["planned"] + 4 + 2 * 7


def test_the_report_bench_runs_at_a_tiny_size(bench_database):
    got = figures(run("bench/report.py", "--calls", "1000", "--regenerate", "--repeat", "1", env=bench_database))

    assert (got["bench"], got["calls"]) == ("report", 1000)
    assert got["attempts"] > got["calls"]  # every call has attempt 1, half of them attempt 2
    assert set(got["seconds_per_page"]) >= {"report page", "report CSV", "API report"}


def test_the_webhooks_bench_runs_at_a_tiny_size(bench_database):
    got = figures(run("bench/webhooks.py", "--deliveries", "40", "--threads", "2", env=bench_database))

    # Every delivery posted once to the README's receiver, which verified each signature and handled each event.
    assert (got["database"], got["deliveries"], got["delivered"], got["handled_by_receiver"]) == ("postgresql", 40, 40, 40)
    assert got["verdicts"] == {"delivered": 40} and got["deliveries_per_second"] > 0


def test_the_frontend_bench_runs():
    got = figures(run("bench/frontend.py"))

    assert got["sentences"] > 0 and got["mean_ms"] > 0 and got["target_ms"] == 5.0


@pytest.mark.parametrize("setup", ["embedded", "postgres"])
def test_the_campaign_bench_runs_at_a_tiny_size(setup, tmp_path):
    got = figures(run("bench/campaign.py", "--setup", setup, "--callees", "30", "--pg-server", SERVER,
                      env={"TMPDIR": str(tmp_path)}))

    assert (got["bench"], got["callees"], got["calls"], got["completed"]) == ("campaign", 30, 30, True)
    assert got["setup"] == {"embedded": "sqlite+herald-fs", "postgres": "postgresql+redis"}[setup]
    # Every callee answers at once: one attempt and one call at the sandbox each, and nothing lost or doubled.
    assert got["dialled"] == got["attempts"] == 30
    assert (got["lost"], got["doubled"], got["problems"]) == (0, 0, {})
    assert got["sustained_cps"] > 0 and got["max_in_any_1s_window"] <= got["cps_limit"] == 50
    latency = got["webhook_latency"]
    assert latency["all"]["requests"] >= 4 * 30 and latency["error_statuses"] == {}  # 4 status callbacks a call
    assert sum(row["requests"] for row in latency["per_process"].values()) == latency["all"]["requests"]
    assert latency["audio_fetches"]["requests"] >= 30
    db = got["db_per_1000_calls"]
    assert db["campaigns_call"]["rows"] == db["campaigns_callattempt"]["rows"] == 1000
    assert db["telephony_providerevent"]["rows"] >= 4000
    assert {"web", "telephony", "sandbox", "machine (everything)"} <= set(got["cpu_ms_per_call"])
    assert got["unfinished_calls"] == 0 and "meets_target" in got
    assert {"start", "max_1min", "end"} <= set(got["load_average"])


def test_the_api_bench_runs_at_a_tiny_size(bench_database):
    got = figures(run("bench/api.py", "--contacts", "300", "--batch", "120", env=bench_database))

    # Three passes over the same contacts through the API: all new, all changed, all unchanged (the bench
    # asserts each answer's counts itself).
    assert (got["contacts"], got["batch"], got["database"]) == (300, 120, "postgresql")
    assert all(got[f"{k}_per_second"] > 0 for k in ("created", "updated", "unchanged")) and "meets_target" in got


def test_the_announcement_bench_runs_at_a_tiny_size():
    got = figures(run("bench/announce.py", "--smoke"))

    # Twelve held-out examples through both detectors: every example lands in the confusion table once.
    assert (got["bench"], got["set"], got["examples"], got["smoke"]) == ("announce", "held-out", 12, True)
    labels = {"invalid_number", "suspended", "powered_off", "unreachable", "busy", "none"}
    assert set(got["confusion"]) == labels and all(set(row) == labels for row in got["confusion"].values())
    assert sum(sum(row.values()) for row in got["confusion"].values()) == 12
    assert got["references"] == 15 and got["us_per_packet"]["announcement"] > 0 and got["us_per_packet"]["sit"] > 0


def test_the_machine_detection_bench_runs_at_a_tiny_size():
    got = figures(run("bench/amd.py", "--smoke"))

    # Six held-out examples: every one is in the confusion table once, and the packets cost something.
    assert got["examples"] == 6 and sum(got["confusion"].values()) == 6
    assert set(key.split("->")[0] for key in got["confusion"]) <= {"human", "silent", "machine"}
    assert 0.0 <= got["accuracy"] <= 1.0 and got["us_per_packet"] > 0
