"""The SIP benches run against sipp at a tiny size (their figures are for the README, never asserted: the tests
beside this one check what the user agent does, bench/sip_timers.py and bench/sip_load.py how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.sipp import sipp_binary

ROOT = Path(__file__).resolve().parents[3]


def bench(name: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_sip_timers_bench_runs_at_a_tiny_size():
    sipp_binary()  # fails, never skips, without sipp
    figures = bench("sip_timers.py", "--smoke")

    assert figures["smoke"] is True and figures["repeat"] == 1
    rows = figures["rows"]
    assert set(rows) == {"answered", "digit_timeout", "max_digits", "remote_bye", "ring_timeout", "retry_after",
                         "give_up"}
    assert all(row["calls"] == 1 and row["p50_s"] is not None for row in rows.values()), rows


def test_the_sip_load_bench_runs_at_a_tiny_size():
    sipp_binary()
    figures = bench("sip_load.py", "--calls", "2", "--seconds", "0.2", "--ramp", "0")

    assert (figures["calls"], figures["clip_seconds"]) == (2, 0.2)
    assert {"answered", "lost", "send_error_p50_ms", "send_error_p99_ms", "send_error_max_ms"} <= set(figures)
