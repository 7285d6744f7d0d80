"""SoVITS fine-tuning: the official training iteration reproduced, training that learns, resume, export."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from synthesis.gptsovits.checkpoint import read_checkpoint, sovits_state
from synthesis.gptsovits.discriminator import MultiPeriodDiscriminator, discriminator_width
from synthesis.gptsovits.loading import load_sovits
from synthesis.gptsovits.sovits import SoVITSConfig
from synthesis.gptsovits.sovits_train import (
    SoVITSItem,
    SoVITSTrainer,
    SynthesizerTrain,
    TrainConfig,
    collate,
    save_sovits_weights,
)
from synthesis.gptsovits.train_conformance import compare_train, run_training_set

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "gptsovits"
TRAIN_SET = ROOT / ".." / "shared" / "gptsovits-train"

TINY = SoVITSConfig(
    inter_channels=16, filter_channels=32, n_heads=2, n_layers=2, upsample_initial_channel=32,
    resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3, 5),),
)
TINY_TRAIN = TrainConfig(segment_size=640 * 4, fp16=False, learning_rate=2e-3)


def _tiny_generator_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return SynthesizerTrain(TINY).state_dict()


def _tiny_batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    items = []
    for frames, phones in ((14, 9), (12, 7)):
        wav = 0.1 * torch.randn(frames * 640, generator=g)  # (N,)
        ssl = torch.randn(1, 768, frames, generator=g)  # (1, 768, T50)
        items.append(SoVITSItem(torch.randint(1, 700, (phones,), generator=g), ssl, wav))
    return collate(items, TINY)


def test_the_official_training_iteration_is_reproduced():
    """Every computed array of s2_vectors.npz within the README's tolerances (the draws replayed)."""
    verdicts = run_training_set(TRAIN_SET, SHARED)
    s2 = [v for v in verdicts if v.name.startswith("s2: ")]
    # 165 arrays: 24 recorded draws and 6 item inputs (waves, HuBERT stand-ins, phones), 135 computed
    assert len(s2) == 135
    failed = [v for v in s2 if not v.ok]
    assert failed == []
    s1 = [v for v in verdicts if v.name.startswith("s1")]
    assert len(s1) >= 50 and all(v.ok for v in s1), [v for v in s1 if not v.ok]


def test_compare_train_fails_unknown_arrays_and_real_deviations():
    """An array without a rule fails; a gradient or parameter off by more than its rule allows fails."""
    assert not compare_train("no_such_array", np.zeros(3), np.zeros(3)).ok
    ref = np.linspace(-1, 1, 5000, dtype=np.float32)
    assert compare_train("ggrad_dec_cond_weight", ref, ref + 5e-4).ok
    assert not compare_train("ggrad_dec_cond_weight", ref, ref + 2e-3).ok
    flipped = ref.copy()
    flipped[:3] += 2e-4  # three sign-flipped noise-level elements: allowed
    assert compare_train("gstep_dec_conv_pre_weight", ref, flipped).ok
    flipped[:100] += 2e-4  # 2 % of the elements: not noise any more
    assert not compare_train("gstep_dec_conv_pre_weight", ref, flipped).ok
    assert not compare_train("g_grad_norms", np.array([1.0, np.nan]), np.array([1.0, 2.0])).ok


def test_training_steps_lower_the_losses():
    """A few steps on one fixed batch lower the mel loss and the generator objective."""
    trainer = SoVITSTrainer(TINY, TINY_TRAIN, _tiny_generator_state(), None, seed=3, discriminator_width=8)
    batch = _tiny_batch()
    torch.manual_seed(5)
    logs = [trainer.train_step(batch) for _ in range(5)]
    mel = [log["loss_mel"] for log in logs]
    total = [log["loss_gen_all"] for log in logs]
    assert min(mel[-2:]) < mel[0]
    assert min(total[-2:]) < total[0]
    assert all(np.isfinite(list(log.values())).all() for log in logs)


def test_a_resumed_trainer_continues_exactly(tmp_path):
    """state_dict -> torch.save -> torch.load(weights_only=True) -> a fresh trainer gives the same next step."""
    batch = _tiny_batch()
    trainer = SoVITSTrainer(TINY, TINY_TRAIN, _tiny_generator_state(), None, seed=3, discriminator_width=8)
    torch.manual_seed(7)
    trainer.train_step(batch)
    trainer.end_epoch()
    trainer.train_step(batch)
    torch.save(trainer.state_dict(), tmp_path / "state.pt")
    continued = trainer.train_step(batch)

    resumed = SoVITSTrainer(TINY, TINY_TRAIN, _tiny_generator_state(seed=9), None, seed=11, discriminator_width=8)
    torch.manual_seed(123)  # the saved RNG state, not this, must decide the next draws
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert (resumed.epoch, resumed.step) == (2, 2)
    assert resumed.train_step(batch) == continued


def test_saved_weights_load_strictly_in_the_official_format(tmp_path):
    """save_sovits_weights writes what the WebUI writes: a zip whose folder is a time stamp, fp16, no enc_q."""
    checkpoint = read_checkpoint(SHARED / "sovits.pth", kind="sovits")
    config = SoVITSConfig.from_checkpoint(checkpoint.config)
    trainer = SoVITSTrainer(config, TrainConfig(fp16=False), sovits_state(checkpoint), None, discriminator_width=8)
    weights = trainer.inference_weights()
    assert not any("enc_q" in k for k in weights) and {v.dtype for v in weights.values()} == {torch.float16}
    path = tmp_path / "voice_e8_s16.pth"
    save_sovits_weights(path, weights, checkpoint.config, "8epoch_16iteration")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice_e8_s16.pth"]  # no temp file left behind

    official = SHARED / "sovits_webui.pth"
    stamp = re.compile(r"^\d+\.\d+/data\.pkl$")
    for file in (official, path):
        assert file.read_bytes()[:2] == b"PK"  # v2: a plain torch.save, no version marker
        with zipfile.ZipFile(file) as archive:
            assert stamp.match(archive.namelist()[0]), archive.namelist()[0]
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ["weight", "config", "info"] and saved["info"] == "8epoch_16iteration"

    model = load_sovits(path)  # Herald's strict loader
    reloaded = read_checkpoint(path, kind="sovits").weights
    assert set(reloaded) == set(weights) == set(model.state_dict())
    assert all(torch.equal(reloaded[k], weights[k]) for k in weights)


def test_a_generator_state_with_a_stray_key_is_refused():
    checkpoint = read_checkpoint(SHARED / "sovits.pth", kind="sovits")
    config = SoVITSConfig.from_checkpoint(checkpoint.config)
    with pytest.raises(ValueError, match="stray"):
        SoVITSTrainer(config, TrainConfig(), {**sovits_state(checkpoint), "stray": torch.zeros(1)}, None,
                      discriminator_width=8)


def test_a_narrow_discriminator_takes_its_width_from_its_weights():
    """Small random test discriminators are narrower than the official one; the trainer reads the width off
    the weights, and the official width is 1."""
    narrow = MultiPeriodDiscriminator(width=8)
    assert discriminator_width(narrow.state_dict()) == 8
    assert sum(p.numel() for p in narrow.parameters()) < 1_000_000
    assert discriminator_width({"discriminators.0.conv_post.weight_v": torch.zeros(1, 1024, 3)}) == 1
    checkpoint = read_checkpoint(SHARED / "sovits.pth", kind="sovits")
    config = SoVITSConfig.from_checkpoint(checkpoint.config)
    trainer = SoVITSTrainer(config, TrainConfig(fp16=False), sovits_state(checkpoint), narrow.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(trainer.net_d.state_dict().values(), narrow.state_dict().values(), strict=True))
