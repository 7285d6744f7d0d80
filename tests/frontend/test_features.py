"""GPT-SoVITS feature extraction on tiny random BERT/HuBERT models saved to disk and loaded like real ones."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from synthesis.frontend.features import (  # noqa: E402
    MAX_REFERENCE_SAMPLES,
    PROMPT_TAIL_SAMPLES,
    BertFeatures,
    HubertFeatures,
    ModelDirectoryError,
    PromptCache,
    ReferenceClipError,
    hubert_input,
    load_reference,
    peak_normalise,
    prepare_reference,
    prompt_semantic,
    reference_spectrogram,
)
from synthesis.gptsovits.sovits import spectrogram  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("您好，快递到了。请取件")
TEXT = "您好，快递到了。"
WORD2PH = [2, 2, 1, 2, 2, 2, 2, 1]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub, no network: any socket connection during a test fails it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("a feature test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-roberta")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + CHARS) + "\n", encoding="utf-8")
    transformers.BertTokenizer(str(vocab)).save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(SPECIALS) + len(CHARS),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    transformers.BertForMaskedLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory) -> Path:
    """768 wide (what SoVITS extract_latent takes) but one layer and narrow convolutions, so it stays fast."""
    directory = tmp_path_factory.mktemp("tiny-hubert")
    torch.manual_seed(0)
    config = transformers.HubertConfig(
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),  # the real layout: 320 samples per frame, 50 Hz at 16 kHz
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
    )
    transformers.HubertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def bert(bert_dir) -> BertFeatures:
    return BertFeatures(bert_dir)


@pytest.fixture(scope="module")
def hubert(hubert_dir) -> HubertFeatures:
    return HubertFeatures(hubert_dir)


@pytest.fixture(scope="module")
def sovits():
    if not (SHARED / "sovits.pth").exists():
        pytest.skip(f"shared SoVITS checkpoint not found under {SHARED}")
    from synthesis.gptsovits.loading import load_sovits

    return load_sovits(SHARED / "sovits.pth")


def _write_clip(
    path: Path, seconds: float, rate: int = 44_100, channels: int = 1, amplitude: float = 0.5
) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    tone = (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    data = np.stack([tone] + [np.zeros_like(tone)] * (channels - 1), axis=1)  # (N, C)
    sf.write(path, data, rate, subtype="FLOAT")
    return path


def test_bert_features_repeat_third_from_last_layer_per_phone(bert):
    feats = bert.features(TEXT, WORD2PH)

    assert feats.shape == (32, sum(WORD2PH))
    assert bert.hidden_size == 32
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    ids = torch.tensor([[vocab["[CLS]"]] + [vocab[c] for c in TEXT] + [vocab["[SEP]"]]])
    with torch.no_grad():
        hidden = bert.model(input_ids=ids, output_hidden_states=True).hidden_states
    expected = hidden[-3][0, 1:-1]  # (chars, 32)
    assert not torch.allclose(hidden[-3], hidden[-1])
    column = 0
    for i, count in enumerate(WORD2PH):
        for _ in range(count):
            torch.testing.assert_close(feats[:, column], expected[i])
            column += 1


def test_bert_word2ph_mismatch_is_a_clear_error(bert):
    with pytest.raises(ValueError, match="word2ph has 3 entries for 8 characters"):
        bert.features(TEXT, [2, 2, 2])


def test_bert_text_not_one_token_per_character_is_a_clear_error(bert):
    # The tokenizer folds the Latin run "ab" into one [UNK]: 3 characters, 2 tokens.
    with pytest.raises(ValueError, match="2 tokens, not one per character"):
        bert.features("您ab", [2, 1, 1])


def test_bert_zeros_for_non_chinese_segments(bert):
    zeros = bert.zeros(7)

    assert zeros.shape == (32, 7)
    assert not zeros.any()


def test_hubert_features_are_last_hidden_state_at_50_hz(hubert):
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(16_000)).astype(np.float32)

    feats = hubert.features(wav)

    assert feats.shape[:2] == (1, 768)
    assert abs(feats.shape[2] - len(wav) / 320) <= 1
    with torch.no_grad():
        direct = hubert.model(torch.from_numpy(wav)[None]).last_hidden_state.transpose(1, 2)
    torch.testing.assert_close(feats, direct)  # raw waveform in, unnormalised, as the official inference


def test_load_reference_mixes_to_mono_and_resamples(tmp_path):
    clip = _write_clip(tmp_path / "voice.wav", 4.0, rate=44_100, channels=2, amplitude=0.8)

    wav16k, wav32k = load_reference(clip)

    assert wav16k.dtype == np.float32 and wav32k.dtype == np.float32
    assert wav16k.ndim == 1 and wav32k.ndim == 1
    assert abs(len(wav16k) - 64_000) <= 1
    assert abs(len(wav32k) - 128_000) <= 1
    assert np.abs(wav32k).max() == pytest.approx(0.4, abs=0.01)  # tone in one channel, silence in the other


@pytest.mark.parametrize("seconds", [2.5, 10.5])
def test_reference_outside_3_to_10_seconds_is_refused(tmp_path, seconds):
    clip = _write_clip(tmp_path / "voice.wav", seconds, rate=16_000)

    with pytest.raises(ReferenceClipError, match=f"{seconds:.2f} s long") as excinfo:
        load_reference(clip)
    assert "voice.wav" in str(excinfo.value)


@pytest.mark.parametrize("seconds", [3.0, 10.0])
def test_reference_bounds_are_inclusive(tmp_path, seconds):
    wav16k, _ = load_reference(_write_clip(tmp_path / "voice.wav", seconds, rate=16_000))

    assert len(wav16k) == int(seconds * 16_000) <= MAX_REFERENCE_SAMPLES


def test_unreadable_reference_names_the_file(tmp_path):
    clip = tmp_path / "broken.wav"
    clip.write_bytes(b"not audio at all")

    with pytest.raises(ReferenceClipError, match="broken.wav"):
        load_reference(clip)
    with pytest.raises(ReferenceClipError, match="missing.wav"):
        load_reference(tmp_path / "missing.wav")


def test_peak_normalisation_follows_get_ref_spec():
    quiet = np.array([0.5, -0.8, 0.2], np.float32)
    hot = np.array([0.5, -1.5, 0.2], np.float32)
    clipped = np.array([0.5, 3.0, -0.2], np.float32)

    np.testing.assert_array_equal(peak_normalise(quiet), quiet)
    np.testing.assert_allclose(peak_normalise(hot), hot / 1.5)
    np.testing.assert_allclose(peak_normalise(clipped), clipped / 2.0)  # at most halved: peak stays 1.5


def test_reference_spectrogram_is_sovits_spectrogram_of_normalised_audio():
    rng = np.random.default_rng(1)
    wav32k = (1.6 * rng.uniform(-1, 1, 32_000)).astype(np.float32)

    spec = reference_spectrogram(wav32k)

    assert spec.shape == (1, 1025, 50)
    torch.testing.assert_close(spec, spectrogram(torch.from_numpy(wav32k / np.abs(wav32k).max())[None]))


def test_prompt_semantic_through_sovits_extract_latent(tmp_path, hubert, sovits):
    wav16k, _ = load_reference(_write_clip(tmp_path / "voice.wav", 3.2, rate=16_000))
    padded = hubert_input(wav16k)
    feats = hubert.features(padded)  # (1, 768, T50)

    codes = prompt_semantic(sovits, feats)

    assert len(padded) == len(wav16k) + PROMPT_TAIL_SAMPLES
    assert codes.dtype == torch.int64
    assert codes.shape == (feats.shape[2] // 2,)
    assert 0 <= int(codes.min()) and int(codes.max()) < 1024
    torch.testing.assert_close(codes, sovits.extract_latent(feats)[0, 0])


def test_prepare_reference_and_cache_compute_once_per_clip_version(tmp_path, hubert, sovits):
    clip = _write_clip(tmp_path / "voice.wav", 3.5, rate=22_050)
    cache = PromptCache()

    first = cache.get(clip, hubert, sovits)
    again = cache.get(str(clip), hubert, sovits)

    assert again is first
    assert len(cache) == 1
    assert first.refer_spec.shape[:2] == (1, 1025)
    torch.testing.assert_close(first.prompt_semantic, prepare_reference(clip, hubert, sovits).prompt_semantic)
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a re-uploaded clip
    assert cache.get(clip, hubert, sovits) is not first
    assert len(cache) == 2


def test_model_directories_load_from_disk_only(tmp_path, bert_dir):
    hub_name = "hfl/chinese-roberta-wwm-ext-large"
    with pytest.raises(ModelDirectoryError, match=f"{hub_name} does not exist"):
        BertFeatures(hub_name)
    with pytest.raises(ModelDirectoryError, match=f"{tmp_path / 'absent'} does not exist"):
        HubertFeatures(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelDirectoryError, match=f"{empty} has no config.json"):
        HubertFeatures(empty)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((bert_dir / "config.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_weights / name).write_text((bert_dir / name).read_text())
    with pytest.raises(ModelDirectoryError, match=f"{no_weights} cannot be loaded"):
        BertFeatures(no_weights)
