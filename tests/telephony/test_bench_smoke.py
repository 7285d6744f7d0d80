"""bench/pacing.py runs, in both of its modes and on both stores, at a tiny size (its figures are for the issue
and the README, never asserted: a test asserts what the limiter does, the bench measures how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(settings, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pacing.py"), "--redis-url", settings.CELERY_BROKER_URL, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("store", ["redis", "file"])
def test_the_pacing_bench_runs_at_a_tiny_size(store, settings):
    figures = bench(settings, "--store", store, "--workers", "4", "--cps", "10", "--seconds", "1")

    assert (figures["store"], figures["workers"], figures["seconds"]) == (store, 4, 1.0)
    assert len(figures["dials_per_worker"]) == 4 and figures["dials"] == sum(figures["dials_per_worker"]) > 0
    assert {"max_in_any_1s_window", "average_cps", "ratio_to_target", "min_gap_ms", "never_exceeds"} <= set(figures)


@pytest.mark.parametrize("store", ["redis", "file"])
def test_the_lease_recovery_bench_runs_at_a_tiny_size(store, settings):
    figures = bench(settings, "--store", store, "--lease-recovery", "--lease", "0.3", "--hold", "0.6")

    assert (figures["mode"], figures["store"], figures["lease_seconds"]) == ("lease_recovery", store, 0.3)
    assert figures["refused_while_held"] + figures["granted_while_held"] > 0
    assert figures["back_after_kill_ms"] > 0 and "within_one_lease" in figures
