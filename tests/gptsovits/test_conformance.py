"""The conformance tool: passes on the shared reference set, and fails loudly when it should."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthesis.gptsovits.conformance import INPUTS, PRO_INPUTS, compare

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "gptsovits"
PRO = ROOT.parent / "shared" / "gptsovits-v2pro"


def _run(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthesis.gptsovits.conformance", str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def copied(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    for name in ("gpt.ckpt", "sovits.pth"):
        shutil.copy(SHARED / name, folder / name)
    return folder


def test_the_shared_reference_set_conforms():
    """Every output array, and the WebUI-format copy of the SoVITS weights gives every SoVITS array again."""
    result = _run(SHARED)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "reference set: GPT-SoVITS v2 (gpt.ckpt, sovits.pth, sovits_webui.pth)"
    with np.load(SHARED / "vectors.npz") as data:
        outputs = [n for n in data.files if n not in INPUTS]
    ok = [line.split()[1] for line in lines if line.startswith("ok")]
    webui = [name for name in ok if name.startswith("sovits_webui.pth:")]
    assert sorted(set(ok) - set(webui)) == sorted(outputs)
    assert {"sovits_webui.pth:wav_A", "sovits_webui.pth:wav_E", "sovits_webui.pth:prompt_semantic"} <= set(webui)
    assert lines[-1] == f"{len(outputs) + len(webui)} passed, 0 failed"


def test_the_shared_v2pro_set_conforms():
    result = _run(PRO)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "reference set: GPT-SoVITS v2Pro (sovits.pth, sv.ckpt.gz)"
    with np.load(PRO / "vectors.npz") as data:
        outputs = [n for n in data.files if n not in PRO_INPUTS]
    assert sorted(line.split()[1] for line in lines if line.startswith("ok")) == sorted(outputs)
    assert {"sv_emb", "sv_fbank", "A_ge", "D_ge512", "wav_E"} <= set(outputs)
    assert lines[-1] == f"{len(outputs)} passed, 0 failed"


def test_a_v2pro_set_whose_speaker_embedding_is_off_fails(tmp_path):
    for name in ("sovits.pth", "sv.ckpt.gz"):
        shutil.copy(PRO / name, tmp_path / name)
    with np.load(PRO / "vectors.npz") as data:
        arrays = {n: data[n] for n in data.files}
    arrays["sv_emb"] = arrays["sv_emb"] + 1e-3
    arrays["wav_A"] = arrays["wav_A"] * 1.001  # 1e-3 of the peak: ten times the tolerance
    np.savez(tmp_path / "vectors.npz", **arrays)
    result = _run(tmp_path)
    assert result.returncode == 1
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == ["sv_emb", "wav_A"], result.stdout


def test_an_array_the_tool_does_not_know_fails_it(copied):
    with np.load(SHARED / "vectors.npz") as data:
        arrays = {n: data[n] for n in data.files}
    arrays["mystery_output"] = np.zeros(3, dtype=np.float32)
    np.savez(copied / "vectors.npz", **arrays)
    result = _run(copied)
    assert result.returncode == 1
    assert "FAIL mystery_output" in result.stdout and "unknown array" in result.stdout


def test_an_array_outside_tolerance_fails_it(copied):
    with np.load(SHARED / "vectors.npz") as data:
        arrays = {n: data[n] for n in data.files}
    arrays["wav_A"] = arrays["wav_A"] + 1e-3
    arrays["gpt_tokens_naive"] = arrays["gpt_tokens_naive"].copy()
    arrays["gpt_tokens_naive"][7] += 1
    np.savez(copied / "vectors.npz", **arrays)
    result = _run(copied)
    assert result.returncode == 1
    assert any(line.startswith("FAIL wav_A") for line in result.stdout.splitlines())
    assert "first mismatch at 7" in result.stdout


def test_missing_files_are_named(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 2 and "lacks sovits.pth, vectors.npz" in result.stderr
    shutil.copy(PRO / "sovits.pth", tmp_path / "sovits.pth")
    shutil.copy(PRO / "vectors.npz", tmp_path / "vectors.npz")
    result = _run(tmp_path)
    assert result.returncode == 2 and "lacks sv.ckpt or sv.ckpt.gz" in result.stderr


def test_compare_rules():
    ints = np.arange(5)
    assert compare("x_tokens", ints, ints).ok
    assert not compare("x_tokens", ints, ints[::-1]).ok
    floats = np.array([[1.0, np.nan]], dtype=np.float32)
    assert compare("batch_logits_raw", floats, floats + 5e-5).ok
    assert not compare("batch_logits_raw", floats, np.array([[1.0, 2.0]])).ok  # NaN pattern
    assert not compare("wav_A", floats, floats + 2e-5).ok  # waveforms: 1e-5
    assert compare("refer_spec", np.array([1000.0]), np.array([1000.005])).ok  # relative
    # Spectrograms: 1e-5 relative plus 1e-6 of the peak, so a quiet bin may be off by float32 FFT noise only.
    spec = np.array([10.0, 0.006])
    assert compare("refer_spec", spec, spec + [0.0, 5e-6]).ok
    assert not compare("refer_spec", spec, spec + [0.0, 2e-5]).ok
    assert not compare("refer_spec", spec, spec * 1.001).ok  # a wrong scale is far outside
    assert not compare("x", floats, floats[:, :1]).ok  # shape


TRAIN = ROOT.parent / "shared" / "gptsovits-train"


def test_the_shared_training_set_conforms():
    """The tool recognises a training set: one official SoVITS iteration and two GPT steps, every array."""
    result = _run(TRAIN)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training set: GPT-SoVITS v2 fine-tuning")
    names = {line.split()[1] + " " + line.split()[2] for line in lines if line.startswith("ok")}
    assert {"s2: loss_gen_all", "s2: gstep_dec_conv_pre_weight", "s2: d2_g_5", "s1: loss_step1",
            "s1: param_after_step1_ar_predict_layer_weight", "s1: sched_last_lr_after_step1"} <= names
    assert lines[-1].endswith(" passed, 0 failed") and int(lines[-1].split()[0]) >= 180


def test_a_training_set_whose_official_numbers_differ_fails(tmp_path):
    """Tampered reference numbers are reported by name, with the exit status CI reads."""
    folder = tmp_path / "train"
    folder.mkdir()
    shutil.copy(TRAIN / "s2G_enc_q.pth", folder / "s2G_enc_q.pth")
    with np.load(TRAIN / "s2_vectors.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["loss_mel"] = arrays["loss_mel"] * np.float32(1.01)
    np.savez(folder / "s2_vectors.npz", **arrays)
    result = subprocess.run(
        [sys.executable, "-m", "synthesis.gptsovits.conformance", str(folder), "--weights", str(SHARED)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert any(line.startswith("FAIL s2: loss_mel") for line in result.stdout.splitlines())
    missing = _run(folder)  # no --weights and no inference set beside it
    assert missing.returncode == 2 and "starting weights" in missing.stderr
