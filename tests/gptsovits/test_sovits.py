"""SoVITS synthesizer: the official outputs from the official file, strict keys, folded weight norm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthesis.gptsovits.conformance import SPECTROGRAM_PEAK_SHARE  # noqa: E402
from synthesis.gptsovits.sovits import (  # noqa: E402
    SoVITSConfig,
    SynthesizerTrn,
    sovits_conformance,
    spectrogram,
)
from synthesis.gptsovits.sovits_modules import MultiHeadAttention  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"

SOVITS_ARRAYS = [
    "prompt_semantic",
    "refer_spec",
    "refer_spec2",
    "sovits_codes",
    "wav_A",
    "A_ge",
    "A_m_p",
    "A_logs_p",
    "A_y_mask",
    "A_z",
    "wav_B",
    "B_m_p",
    "B_logs_p",
    "B_y_mask",
    "B_z",
    "wav_C",
    "wav_D",
    "D_ge",
    "E_codes",
    "E_phones",
    "wav_E",
    "E_frag_end",
]
BF16_VOCODER_ATOL = 1e-2  # the stated tolerance of decode(vocoder_bf16=True) against fp32


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    return torch.load(SHARED / "sovits.pth", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(SHARED / "vectors.npz", allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def build(checkpoint: dict) -> SynthesizerTrn:
    model = SynthesizerTrn(SoVITSConfig.from_checkpoint(checkpoint["config"])).eval()
    model.load_state_dict({k: v.float() for k, v in checkpoint["weight"].items()}, strict=True)
    return model


@pytest.fixture(scope="module")
def model(checkpoint) -> SynthesizerTrn:
    return build(checkpoint)


@pytest.fixture(scope="module")
def computed(model, vectors) -> dict[str, np.ndarray]:
    return sovits_conformance(model, vectors)


def decode_c(model: SynthesizerTrn, vectors: dict[str, np.ndarray], **kwargs) -> np.ndarray:
    """Decode C of the reference run: noise 0.5 with the stored noise, speed 1."""
    spec = spectrogram(torch.from_numpy(vectors["ref_wav_32k"]))
    codes = torch.from_numpy(vectors["sovits_codes"])[None, None]
    phones = torch.from_numpy(vectors["text_phones_0"])[None]
    noise = torch.from_numpy(vectors["noise_C"])
    return model.decode(codes, phones, [spec], noise_scale=0.5, noise=noise, **kwargs).numpy()


def test_conformance_computes_exactly_the_sovits_arrays(computed):
    assert sorted(computed) == sorted(SOVITS_ARRAYS)


@pytest.mark.parametrize("name", SOVITS_ARRAYS)
def test_matches_the_official_output(name, computed, vectors):
    expected, actual = vectors[name], computed[name]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if expected.dtype.kind in "iub":
        np.testing.assert_array_equal(actual, expected)
    elif name.startswith("refer_spec"):
        # Relative 1e-5 plus 1e-6 of the peak: the reference's own float32 FFT error (see conformance.tolerance).
        peak = float(np.abs(expected).max())
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=SPECTROGRAM_PEAK_SHARE * peak)
    elif name.startswith("wav_"):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_decoded_length_follows_codes_and_speed(model, vectors):
    spec = spectrogram(torch.from_numpy(vectors["ref_wav_32k"]))
    codes = torch.from_numpy(vectors["sovits_codes"][:10])[None, None]
    phones = torch.from_numpy(vectors["text_phones_0"][:12])[None]
    assert model.decode(codes, phones, [spec]).shape == (1, 1, 10 * model.config.samples_per_code)
    assert model.decode(codes, phones, [spec], speed=0.8).shape == (1, 1, 640 * (int(20 / 0.8) + 1))


def test_strict_load_names_a_missing_key(checkpoint):
    state = {k: v.float() for k, v in checkpoint["weight"].items() if k != "dec.ups.0.weight_g"}
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "dec\.ups\.0\.weight_g"'):
        SynthesizerTrn(SoVITSConfig.from_checkpoint(checkpoint["config"])).load_state_dict(state, strict=True)


def test_strict_load_names_an_extra_key(checkpoint):
    state = {k: v.float() for k, v in checkpoint["weight"].items()}
    state["flow.flows.8.pre.weight"] = torch.zeros(192, 48, 1)
    with pytest.raises(
        RuntimeError, match=r'Unexpected key\(s\) in state_dict: "flow\.flows\.8\.pre\.weight"'
    ):
        SynthesizerTrn(SoVITSConfig.from_checkpoint(checkpoint["config"])).load_state_dict(state, strict=True)


def test_strict_load_names_a_misshaped_key(checkpoint):
    state = {k: v.float() for k, v in checkpoint["weight"].items()}
    state["enc_p.text_embedding.weight"] = torch.zeros(322, 192)  # a v1 text table in a v2 model
    with pytest.raises(RuntimeError, match=r"size mismatch for enc_p\.text_embedding\.weight.*\[322, 192\]"):
        SynthesizerTrn(SoVITSConfig.from_checkpoint(checkpoint["config"])).load_state_dict(state, strict=True)


def test_fused_weight_norm_gives_the_same_waveform(checkpoint, vectors):
    model = build(checkpoint).fuse_weight_norm()
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys) and "dec.ups.0.weight" in keys
    np.testing.assert_allclose(decode_c(model, vectors), vectors["wav_C"], rtol=0, atol=1e-5)


def test_bf16_vocoder_stays_within_its_stated_tolerance(model, vectors):
    wav = decode_c(model, vectors, vocoder_bf16=True)
    assert wav.dtype == np.float32
    np.testing.assert_allclose(wav, vectors["wav_C"], rtol=0, atol=BF16_VOCODER_ATOL)


def test_full_size_model_has_the_official_keys_and_shapes():
    manifest = json.loads((SHARED / "manifest_v2_sovits.json").read_text())
    expected = {k: tuple(spec["shape"]) for k, spec in manifest["keys"].items() if not k.startswith("enc_q.")}
    with torch.device("meta"):  # shapes only, nothing allocated
        state = SynthesizerTrn(SoVITSConfig()).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(v.numel() for v in state.values()) == manifest["num_elements_without_enc_q"]


def test_config_from_the_full_size_hps_is_the_default():
    manifest = json.loads((SHARED / "manifest_v2_sovits.json").read_text())
    data = {
        "sampling_rate": 32000,
        "filter_length": 2048,
        "hop_length": 640,
        "win_length": 2048,
        "n_speakers": 300,
        "max_wav_value": 32768.0,
        "n_mel_channels": 128,
    }
    config = SoVITSConfig.from_checkpoint(
        {"data": data, "model": manifest["hps_model"], "train": {"segment_size": 20480}}
    )
    assert config == SoVITSConfig()
    assert config.spec_channels == 1025 and config.samples_per_code == 1280


def test_config_reads_the_small_reference_file(checkpoint):
    config = SoVITSConfig.from_checkpoint(checkpoint["config"])
    assert (
        config.inter_channels,
        config.filter_channels,
        config.n_layers,
        config.upsample_initial_channel,
    ) == (96, 96, 2, 64)
    assert config.resblock_dilation_sizes == ((1, 3, 5), (1, 3, 5), (1, 3, 5))


@pytest.mark.parametrize("length", [1, 3, 12])
def test_relative_attention_follows_its_definition(length):
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, n_heads=2, window_size=2)
    x = torch.randn(1, 8, length)
    q = attn.conv_q(x).view(2, 4, length).transpose(1, 2) / 2.0  # (heads, T, 4), scaled by 1/sqrt(4)
    k = attn.conv_k(x).view(2, 4, length).transpose(1, 2)
    v = attn.conv_v(x).view(2, 4, length).transpose(1, 2)
    rel_k, rel_v = attn.emb_rel_k[0], attn.emb_rel_v[0]  # (2w+1, 4), offsets -2..2
    out = torch.zeros(2, length, 4)
    for h in range(2):
        for i in range(length):
            scores = torch.stack(
                [
                    q[h, i] @ k[h, j] + (q[h, i] @ rel_k[j - i + 2] if abs(j - i) <= 2 else 0)
                    for j in range(length)
                ]
            )
            p = scores.softmax(0)
            for j in range(length):
                out[h, i] += p[j] * (v[h, j] + (rel_v[j - i + 2] if abs(j - i) <= 2 else 0))
    expected = attn.conv_o(out.transpose(1, 2).reshape(1, 8, length))
    torch.testing.assert_close(attn(x, x), expected, rtol=0, atol=1e-5)


def test_flow_reverse_inverts_forward(model):
    torch.manual_seed(0)
    x, ge = torch.randn(1, model.config.inter_channels, 20), torch.randn(1, model.config.gin_channels, 1)
    with torch.inference_mode():
        torch.testing.assert_close(model.flow(model.flow(x, ge), ge, reverse=True), x, rtol=0, atol=1e-5)
