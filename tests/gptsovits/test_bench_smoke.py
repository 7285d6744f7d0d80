"""bench/gptsovits.py, bench/gpt_step.py and bench/train.py run at a tiny size (their figures are for the README,
not asserted)."""

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
         "--batches", "1,2", "--modes", "fp32,bf16,int8", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["version"] == version and figures["smoke"] is True
    for mode in ("fp32", "bf16", "int8"):
        assert [run["batch"] for run in figures[mode]["runs"]] == [1, 2]
        assert all(run["rtf"] > 0 for run in figures[mode]["runs"])
        stream = figures[mode]["stream"]
        assert stream["chunks"] >= 2 and 0 < stream["first_audio_ms"] < 1000 * stream["stream_rtf"] * stream["audio_seconds"]
    assert ("speaker" in figures) == (version != "v2")  # the SV model is timed once per Pro voice


def test_the_training_bench_runs_at_a_tiny_size():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "train.py"), "--smoke", "--device", "cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert (figures["bench"], figures["weights"], figures["sovits_epochs"], figures["gpt_epochs"]) == (
        "train", "small shared", 1, 1)
    assert set(figures["stages"]) == {"sovits", "gpt"}
    assert all(stage["steps"] > 0 and stage["seconds"] > 0 for stage in figures["stages"].values())
    assert figures["peak_rss_mb"] > 0 and figures["exported_mb"]["sovits_mb"] > 0


def test_the_step_bench_runs_at_a_tiny_size():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpt_step.py"), "--tiny", "--batches", "1,8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["tiny"] is True and figures["layers"] == 2
    for mode in ("fp32", "bf16", "int8"):
        assert [row["batch"] for row in figures[mode]] == [1, 8]
        assert all(row["eager_ms"] > 0 and row["step_ms"] > 0 and row["ratio"] > 0 for row in figures[mode])


def test_the_gpu_bench_script_dry_runs_on_the_cpu(tmp_path):
    """bench/gpu.sh --device cpu --tiny: every stage of the GPU run, on the CPU at tiny sizes."""
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"step", "engine", "engine_pro", "train"} and all(summary.values())
    assert summary["engine"]["smoke"] and summary["engine_pro"]["version"] == "v2ProPlus"
    assert "best aggregate" in result.stdout
    refused = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "tpu"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--device must be" in refused.stderr
