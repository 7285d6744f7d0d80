"""v2Pro speaker verification against the official reference vectors (random weights, official code)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthesis.gptsovits.checkpoint import CheckpointError
from synthesis.gptsovits.speaker import (
    ERes2NetV2,
    SpeakerEncoder,
    kaldi_fbank,
    read_speaker_state,
    resample_32k_to_16k,
    sinc_resample_kernel,
    speaker_conformance,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits-v2pro"


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(SHARED / "vectors.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return read_speaker_state(SHARED / "sv.ckpt.gz")


@pytest.fixture(scope="module")
def encoder(state) -> SpeakerEncoder:
    return SpeakerEncoder.from_state_dict(state, source="sv.ckpt.gz")


def max_error(actual, expected) -> float:
    return float(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)).max())


def test_resample_kernel_is_torchaudios(vectors):
    kernel = sinc_resample_kernel(32000, 16000)
    assert kernel.dtype == torch.float32 and tuple(kernel.shape) == (1, 1, 28)
    assert max_error(kernel, vectors["sv_resample_kernel"]) <= 1e-7


@pytest.mark.parametrize("suffix", ["", "2"])
def test_references_resample_to_16k(vectors, suffix):
    wav16k = resample_32k_to_16k(torch.from_numpy(vectors[f"ref_wav{suffix}_32k"]))
    expected = vectors[f"ref_wav{suffix}_16k"]
    assert wav16k.shape == expected.shape  # ceil(N / 2)
    assert max_error(wav16k, expected) <= 1e-6


def test_odd_lengths_resample_to_ceil_half():
    assert resample_32k_to_16k(torch.randn(3, 1001)).shape == (3, 501)


@pytest.mark.parametrize("suffix", ["", "2"])
def test_fbank_is_kaldis(vectors, suffix):
    wav16k = torch.from_numpy(vectors[f"ref_wav{suffix}_16k"])  # (1, N)
    expected = vectors[f"sv_fbank{suffix}"]  # (1, 1 + (N - 400) // 160, 80)
    assert max_error(kaldi_fbank(wav16k[0])[None], expected) <= 1e-3
    assert max_error(kaldi_fbank(wav16k), expected) <= 1e-3


def test_model_keys_and_shapes_are_the_official_ones():
    manifest = json.loads((SHARED / "manifest_sv_eres2netv2.json").read_text())["keys"]
    with torch.device("meta"):
        model = ERes2NetV2()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {k: v["shape"] for k, v in manifest.items()}


@pytest.mark.parametrize("suffix", ["", "2"])
def test_embeddings_match_the_official_ones(encoder, vectors, suffix):
    emb = encoder.embed(torch.from_numpy(vectors[f"ref_wav{suffix}_16k"]))
    assert emb.shape == (1, 20480) and emb.dtype == torch.float32
    assert max_error(emb, vectors[f"sv_emb{suffix}"]) <= 1e-4


def test_conformance_from_the_32k_inputs(encoder, vectors):
    inputs = {name: vectors[name] for name in ("ref_wav_32k", "ref_wav2_32k")}
    out = speaker_conformance(encoder, inputs)
    tolerances = {"sv_resample_kernel": 1e-7, "ref_wav_16k": 1e-6, "ref_wav2_16k": 1e-6, "sv_fbank": 1e-3,
                  "sv_fbank2": 1e-3, "sv_emb": 1e-4, "sv_emb2": 1e-4}
    assert set(out) == set(tolerances)
    for name, atol in tolerances.items():
        assert out[name].shape == vectors[name].shape, name
        assert max_error(out[name], vectors[name]) <= atol, name


def test_a_missing_key_is_named(state):
    partial = {k: v for k, v in state.items() if k != "layer3.2.fuse_models.1.local_att.3.bias"}
    with pytest.raises(CheckpointError, match=r"missing: layer3\.2\.fuse_models\.1\.local_att\.3\.bias"):
        SpeakerEncoder.from_state_dict(partial)


def test_a_wrong_shape_is_named(state):
    wrong = dict(state, **{"fuse34.local_att.0.weight": torch.zeros(256, 4096, 1, 1, dtype=torch.half)})
    with pytest.raises(CheckpointError, match=r"wrong shape: fuse34\.local_att\.0\.weight \(256, 4096, 1, 1\) \(model expects \(512, 4096, 1, 1\)\)"):
        SpeakerEncoder.from_state_dict(wrong)


def test_gzip_is_told_by_its_magic_bytes_not_its_name(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "plain.ckpt.gz")
    (tmp_path / "compressed.ckpt").write_bytes(gzip.compress((tmp_path / "plain.ckpt.gz").read_bytes()))
    for name in ("plain.ckpt.gz", "compressed.ckpt"):
        assert list(read_speaker_state(tmp_path / name)) == ["conv1.weight"]
        with pytest.raises(CheckpointError, match=f"{name}: .*missing: bn1.weight"):
            SpeakerEncoder.load(tmp_path / name)


def test_a_gzip_bomb_is_refused(tmp_path):
    bomb = tmp_path / "sv.ckpt"
    with gzip.open(bomb, "wb") as f:
        for _ in range(4):
            f.write(bytes(1 << 20))  # 4 MiB of zeros in a few KB
    assert bomb.stat().st_size < 32 * 1024
    with pytest.raises(CheckpointError, match="decompresses to more than 2097152 bytes"):
        SpeakerEncoder.load(bomb, max_bytes=2 * 2**20)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "cut.ckpt.gz").write_bytes((SHARED / "sv.ckpt.gz").read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="truncated or corrupted gzip"):
        read_speaker_state(tmp_path / "cut.ckpt.gz")
    torch.save({"weight": {}, "config": {}}, tmp_path / "sovits.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_speaker_state(tmp_path / "sovits.pth")
    (tmp_path / "page.ckpt").write_bytes(b"<html>404</html>" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_speaker_state(tmp_path / "page.ckpt")
