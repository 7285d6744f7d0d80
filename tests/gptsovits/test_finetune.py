"""The fine-tuning run on the small shared weights: stops between steps, resumes from the last finished epoch,
exports files the strict loaders read, and drops a bad utterance with its reason while the others go on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.train import stand_in_items, synthetic_clips
from synthesis.gptsovits import finetune
from synthesis.gptsovits.checkpoint import read_checkpoint
from synthesis.gptsovits.discriminator import MultiPeriodDiscriminator
from synthesis.gptsovits.loading import load_gpt, load_sovits
from tests.frontend.tiny_models import write_tiny_hubert
from tests.gptsovits.test_pro_and_instant import V2

TRAIN = V2.parent / "gptsovits-train"


@pytest.fixture(scope="module")
def base() -> finetune.BaseWeights:
    sovits, gpt = read_checkpoint(V2 / "sovits.pth", kind="sovits"), read_checkpoint(V2 / "gpt.ckpt", kind="gpt")
    state = {**sovits.weights, **torch.load(TRAIN / "s2G_enc_q.pth", weights_only=True)["weight"]}
    torch.manual_seed(0)
    return finetune.BaseWeights(
        sovits_state=state, sovits_config=sovits.config,
        discriminator_state=MultiPeriodDiscriminator(width=8).state_dict(),
        gpt_state=gpt.weights, gpt_config=gpt.config, gpt_path=V2 / "gpt.ckpt",
    )


@pytest.fixture(scope="module")
def items() -> list[finetune.PreparedItem]:
    return stand_in_items(synthetic_clips(30.0), bert_dim=1024)


class Steps:
    """A Control that stops the run after `limit` steps (None: never) and keeps what it was told."""

    def __init__(self, limit: int | None = None, reason: str = "cancelled") -> None:
        self.limit, self.reason, self.reports = limit, reason, []

    def report(self, stage, epoch, epochs, step, losses, fraction) -> None:
        self.reports.append((stage, epoch, step, round(fraction, 4)))

    def stop_reason(self) -> str | None:
        return self.reason if self.limit is not None and len(self.reports) >= self.limit else None


def test_a_stopped_run_keeps_the_last_epoch_and_resumes_from_it(base, items, tmp_path):
    plan = finetune.Plan(sovits_epochs=2, gpt_epochs=1, batch_size=2)
    per_epoch = -(-len(items) // plan.batch_size)
    assert per_epoch >= 2
    stopper = Steps(limit=per_epoch + 1, reason="the time limit of 1 min was reached")  # mid second epoch
    with pytest.raises(finetune.Stopped, match="time limit"):
        finetune.train(items, base, plan, tmp_path, stopper)
    assert not (tmp_path / finetune.SOVITS_FILE).exists() and not (tmp_path / finetune.GPT_FILE).exists()
    saved = torch.load(tmp_path / "sovits-state.pt", weights_only=True)  # never a pickle of objects
    assert saved["epoch"] == 1 and [row["epoch"] for row in saved["history"]] == [1]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind

    resumed = Steps()
    result = finetune.train(items, base, plan, tmp_path, resumed)
    stages = [(r["stage"], r["epoch"]) for r in result.history]
    assert stages == [("sovits", 1), ("sovits", 2), ("gpt", 1)]
    assert {r[1] for r in resumed.reports if r[0] == "sovits"} == {2}  # epoch 1 was not trained again
    fractions = [r[3] for r in resumed.reports]
    assert fractions == sorted(fractions) and 0.05 < fractions[0] and fractions[-1] <= 0.97
    model = load_sovits(result.sovits_path)  # the strict loaders read both exports
    load_gpt(result.gpt_path)
    assert not any(k.startswith("enc_q.") for k in model.state_dict())


def test_without_gpt_epochs_the_base_gpt_is_kept(base, items, tmp_path):
    result = finetune.train(items, base, finetune.Plan(sovits_epochs=1, gpt_epochs=0, batch_size=4), tmp_path,
                            Steps())
    assert result.gpt_path.read_bytes() == (V2 / "gpt.ckpt").read_bytes()
    assert [r["stage"] for r in result.history] == ["sovits"]


def test_dataset_preparation_drops_a_bad_utterance_with_its_reason(tmp_path):
    from synthesis.frontend.features import HubertFeatures
    from synthesis.gptsovits.loading import load_sovits as load

    hubert = HubertFeatures(write_tiny_hubert(tmp_path / "hubert"))
    quantiser = load(V2 / "sovits.pth")
    clips = synthetic_clips(10.0)

    def text_features(text: str, language: str):
        if "坏" in text:
            raise ValueError(f"cannot read {text!r}")
        return [5, 6, 7, 8], torch.zeros(1024, 4)

    utterances = [
        finetune.Utterance("good", clips[0], "好的", "zh"),
        finetune.Utterance("bad text", clips[1], "坏", "zh"),
        finetune.Utterance("silent", np.zeros(32000 * 4, np.float32), "好的", "zh"),
    ]
    items, dropped = finetune.prepare(utterances, text_features=text_features, hubert=hubert, quantiser=quantiser)
    assert [i.name for i in items] == ["good"]
    assert dict(dropped) == {"bad text": "cannot read '坏'", "silent": "the clip is silent"}
    item = items[0]
    assert item.ssl.shape[:2] == (1, 768) and item.semantic.dtype == torch.long
    assert abs(item.ssl.shape[2] // 2 - item.semantic.numel()) <= 1  # 25 Hz codes of 50 Hz features
    # the official level rule: half peak-normalised to 0.95, half as recorded, stored as 16-bit
    peak = float(np.abs(clips[0]).max())
    assert abs(float(item.wav.abs().max()) - (0.475 + 0.5 * peak)) < 1e-3
    finetune.save_dataset(items, tmp_path / "dataset.pt")
    again = finetune.load_dataset(tmp_path / "dataset.pt")
    assert torch.equal(again[0].semantic, item.semantic) and torch.equal(again[0].wav, item.wav)


def test_full_size_exports_match_the_official_key_and_shape_manifests(tmp_path):
    """What fine-tuning writes for full-size v2 models has exactly the official files' keys and shapes: the
    SoVITS file every key of the official G but the training-only enc_q, the GPT file every key."""
    import json

    from synthesis.gptsovits import sovits_train, t2s_train
    from synthesis.gptsovits.randomweights import write_random_pair
    from synthesis.gptsovits.sovits import SoVITSConfig
    from synthesis.gptsovits.t2s import T2SConfig

    gpt_path, sovits_path = write_random_pair(tmp_path / "full", V2)
    sovits, gpt = read_checkpoint(sovits_path, kind="sovits"), read_checkpoint(gpt_path, kind="gpt")
    trainer = sovits_train.SoVITSTrainer(SoVITSConfig.from_checkpoint(sovits.config), sovits_train.TrainConfig(),
                                         sovits.weights, None, discriminator_width=8)
    sovits_train.save_sovits_weights(tmp_path / "voice.pth", trainer.inference_weights(), sovits.config, "e0")
    del trainer
    t2s = t2s_train.T2STrainer(T2SConfig.from_checkpoint(gpt.config), gpt.weights)
    t2s_train.save_gpt_weights(tmp_path / "voice.ckpt", t2s.checkpoint_weights(), gpt.config, t2s_train.gpt_info(1))
    del t2s

    for exported, manifest, kind in ((tmp_path / "voice.pth", "manifest_v2_sovits.json", "sovits"),
                                     (tmp_path / "voice.ckpt", "manifest_v2_gpt.json", "gpt")):
        official = {k: v["shape"] for k, v in json.loads((V2 / manifest).read_text())["keys"].items()
                    if not k.startswith("enc_q.")}
        written = read_checkpoint(exported, kind=kind).weights
        assert {k: list(v.shape) for k, v in written.items()} == official, kind
        assert {v.dtype for v in written.values()} == {torch.float16}
    load_sovits(tmp_path / "voice.pth"), load_gpt(tmp_path / "voice.ckpt")
