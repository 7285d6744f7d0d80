"""bench/gptsovits.py runs, for every version, at a tiny size (its figures are for the README, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("version", ["v2", "v2Pro", "v2ProPlus"])
def test_the_engine_bench_runs_every_version_at_a_tiny_size(version):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gptsovits.py"), "--smoke", "--version", version,
         "--batches", "1,2", "--modes", "fp32,bf16", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["version"] == version and figures["smoke"] is True
    for mode in ("fp32", "bf16"):
        assert [run["batch"] for run in figures[mode]["runs"]] == [1, 2]
        assert all(run["rtf"] > 0 for run in figures[mode]["runs"])
    assert ("speaker" in figures) == (version != "v2")  # the SV model is timed once per Pro voice
