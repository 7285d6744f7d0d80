"""Fine-tuning a voice from about a minute of speech: dataset preparation, the SoVITS and GPT stages, export.

The official pipeline is five scripts and two training programs (`prepare_datasets/1-get-text.py`,
`2-get-hubert-wav32k.py`, `3-get-semantic.py`, `s2_train.py`, `s1_train.py`) that talk through files in an
experiment folder. Here it is one resumable run over a work directory:

    utterances (32 kHz clip + transcript) --prepare--> items: phones, BERT (zh), HuBERT (1, 768, T50),
                                                              the training wave, semantic codes (T25,)
    items --SoVITS epochs--> voice.pth (official WebUI format) --GPT epochs--> voice.ckpt (official format)

Every file in the work directory is written atomically (temporary name, fsync, rename) and read back with
`weights_only=True`, so a worker killed at any moment leaves either the previous epoch's state or the new one,
never half of either, and a resumed run goes on from the last finished epoch. Pure: no Django import.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soxr
import torch
from torch import Tensor

from synthesis.gptsovits import sovits_train, t2s_train
from synthesis.gptsovits.checkpoint import atomic_save
from synthesis.gptsovits.sovits import SoVITSConfig
from synthesis.gptsovits.t2s import T2SConfig

# The official 2-get-hubert-wav32k.py level rule: half peak-normalised (to 0.95), half as recorded. The same mix
# scaled by 1145.14 instead of 32768 is what HuBERT hears (an official quirk the pretrained models were fed).
_PEAK_TARGET, _ALPHA, _HUBERT_SCALE = 0.95, 0.5, 1145.14
_MAX_PEAK = 2.2  # official: louder files are skipped as broken
SOVITS_FILE, GPT_FILE = "voice.pth", "voice.ckpt"
_DATASET_FILE, _SOVITS_STATE, _GPT_STATE = "dataset.pt", "sovits-state.pt", "gpt-state.pt"


class DatasetError(ValueError):
    """No usable training item is left; the message lists why each was dropped."""


class Stopped(Exception):  # noqa: N818 - a stop is not an error: cancelled, or out of time
    """Training stopped between two steps (cancelled or out of time); the last epoch's state is kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Utterance:
    name: str
    wav32k: np.ndarray  # (N,) float32 at 32 kHz
    text: str
    language: str  # "zh" or "en"


@dataclass(frozen=True)
class PreparedItem:
    """One utterance as both training stages read it (what the official experiment folder holds)."""

    name: str
    phone_ids: Tensor  # (L,) int64
    bert: Tensor | None  # (1024, L) float32; None for non-Chinese utterances, as 1-get-text.py writes none
    ssl: Tensor  # (1, 768, T50) float32 HuBERT features
    wav: Tensor  # (N,) float32 training wave at 32 kHz (the int16 file 2-get-hubert-wav32k.py writes)
    semantic: Tensor  # (T25,) int64 codes from the voice's quantiser


def training_waves(wav32k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training wave at 32 kHz, HuBERT input at 16 kHz) of a clip, by the official level rule."""

    x = np.asarray(wav32k, dtype=np.float32)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        raise ValueError("the clip is silent")
    if peak > _MAX_PEAK:
        raise ValueError(f"the clip's peak {peak:.2f} is above {_MAX_PEAK} (a broken file?)")
    mix = x / peak * (_PEAK_TARGET * _ALPHA) + (1 - _ALPHA) * x
    wave = np.clip(mix * 32768, -32768, 32767).astype(np.int16).astype(np.float32) / 32768  # as stored
    hubert16k = soxr.resample((mix * _HUBERT_SCALE).astype(np.float32), 32000, 16000, quality="HQ")
    return wave.astype(np.float32), hubert16k.astype(np.float32)


def prepare(
    utterances: Sequence[Utterance],
    *,
    text_features: Callable[[str, str], tuple[Sequence[int], Tensor | None]],
    hubert: Any,
    quantiser: Any,
    on_item: Callable[[int, int], None] | None = None,
) -> tuple[list[PreparedItem], list[tuple[str, str]]]:
    """Phones, BERT, HuBERT and semantic codes of each utterance; (items, [(name, why dropped)]).

    `text_features(text, language)` gives the phone ids and the BERT features (1024, L) of a transcript (None
    for a non-Chinese one, as 1-get-text.py writes no BERT file for it) and raises ValueError when it cannot;
    `hubert` is the frontend's HubertFeatures, `quantiser` the base SoVITS model (its `extract_latent`). One bad
    utterance is dropped with its reason; the others go on.
    """
    items: list[PreparedItem] = []
    dropped: list[tuple[str, str]] = []
    weight = next(quantiser.parameters())
    for index, utterance in enumerate(utterances):
        try:
            phone_ids, bert = text_features(utterance.text, utterance.language)
            if not phone_ids:
                raise ValueError("the transcript has nothing to say")
            wave, hubert16k = training_waves(utterance.wav32k)
            ssl = hubert.features(hubert16k).float().cpu()  # (1, 768, T50)
            if not torch.isfinite(ssl).all():
                raise ValueError("HuBERT features are not finite")
            with torch.no_grad():
                codes = quantiser.extract_latent(ssl.to(weight.device, weight.dtype))  # (1, 1, T25)
            items.append(PreparedItem(
                name=utterance.name,
                phone_ids=torch.tensor(list(phone_ids), dtype=torch.long),
                bert=None if bert is None else bert.float().cpu(),
                ssl=ssl,
                wav=torch.from_numpy(wave),
                semantic=codes[0, 0].long().cpu(),
            ))
        except ValueError as exc:
            dropped.append((utterance.name, str(exc)))
        if on_item is not None:
            on_item(index + 1, len(utterances))
    return items, dropped


# --- files ---------------------------------------------------------------------------------------------


def _atomic_copy(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.copy.tmp")
    shutil.copyfile(source, temporary)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_dataset(items: Sequence[PreparedItem], path: Path) -> None:
    atomic_save([
        {"name": i.name, "phone_ids": i.phone_ids, "bert": i.bert, "ssl": i.ssl, "wav": i.wav, "semantic": i.semantic}
        for i in items
    ], path)


def load_dataset(path: Path) -> list[PreparedItem]:
    return [PreparedItem(**row) for row in _load(path)]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    sovits_epochs: int = 8  # the WebUI's default for SoVITS
    gpt_epochs: int = 15  # the WebUI's default for GPT; 0 keeps the base GPT
    batch_size: int = 4
    device: str = "cpu"
    fp16: bool = False  # CUDA only, as the official training's AMP
    seed: int = 1234
    name: str = "voice"


@dataclass(frozen=True)
class BaseWeights:
    """What fine-tuning starts from: the base pair's weights and configs as their files hold them."""

    sovits_state: Mapping[str, Tensor]  # every G key, enc_q.* included when the file has them
    sovits_config: dict  # the file's hps dict (train / data / model)
    discriminator_state: Mapping[str, Tensor] | None
    gpt_state: Mapping[str, Tensor]  # "model.…" keys
    gpt_config: dict
    gpt_path: Path


class Control(Protocol):
    def report(self, stage: str, epoch: int, epochs: int, step: int, losses: dict[str, float], fraction: float) -> None: ...

    def stop_reason(self) -> str | None: ...


@dataclass
class Result:
    sovits_path: Path
    gpt_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (item, why a stage did not use it)


# Share of the progress bar each stage takes (dataset preparation is reported by the caller: 0 .. 0.05).
_SPAN = {"sovits": (0.05, 0.75), "gpt": (0.75, 0.97)}


def _fingerprint(items: Sequence[PreparedItem], plan: Plan, stage: str) -> str:
    digest = hashlib.sha256(f"{stage}:{plan.batch_size}:{plan.seed}".encode())
    for item in items:
        digest.update(item.name.encode() + b"\0")
        digest.update(item.phone_ids.numpy().tobytes())
        digest.update(item.semantic.numpy().tobytes())
    return digest.hexdigest()


def _batches(count: int, size: int, seed: int, epoch: int) -> list[list[int]]:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    return [order[i : i + size] for i in range(0, count, size)]


def _epochs(
    stage: str, trainer: Any, items: Sequence[Any], collate: Callable[[list[Any]], Any], epochs: int,
    plan: Plan, state_path: Path, fingerprint: str, control: Control, history: list[dict[str, Any]],
) -> None:
    """Run `trainer` from its saved epoch to `epochs`, saving its state after every epoch."""
    start = 0
    if state_path.is_file():
        saved = _load(state_path)
        if saved.get("fingerprint") == fingerprint:
            trainer.load_state_dict(saved["trainer"])
            start = int(saved["epoch"])
            history.extend(saved.get("history", []))
    low, high = _SPAN[stage]
    per_epoch = max(1, -(-len(items) // plan.batch_size))
    for epoch in range(start, epochs):
        totals: dict[str, float] = {}
        batches = _batches(len(items), plan.batch_size, plan.seed, epoch)
        for number, batch in enumerate(batches):
            reason = control.stop_reason()
            if reason:
                raise Stopped(reason)
            losses = trainer.train_step(collate([items[i] for i in batch]))
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            done = (epoch * per_epoch + number + 1) / (epochs * per_epoch)
            control.report(stage, epoch + 1, epochs, number + 1, losses, low + (high - low) * done)
        trainer.end_epoch()
        means = {key: value / len(batches) for key, value in totals.items()}
        history.append({"stage": stage, "epoch": epoch + 1, **means})
        atomic_save({
            "fingerprint": fingerprint, "epoch": epoch + 1, "trainer": trainer.state_dict(),
            "history": [row for row in history if row["stage"] == stage],
        }, state_path)


@dataclass
class _GPTStage:
    """The GPT trainer as `_epochs` drives it (the official GPT loop counts batches per epoch)."""

    trainer: Any

    def train_step(self, batch: Any) -> dict[str, float]:
        return self.trainer.train_step(batch)

    def end_epoch(self) -> None:
        self.trainer.next_epoch()

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.trainer.load_state_dict(state)


def _sovits_train_config(hps: Mapping[str, Any], plan: Plan) -> Any:
    """The s2 training settings: the base file's own (its s2.json "train" section) where it has them."""
    section = hps.get("train", {}) if isinstance(hps.get("train"), Mapping) else {}
    known = {name: section[name] for name in ("learning_rate", "eps", "lr_decay", "segment_size", "c_mel", "c_kl",
                                                "text_low_lr_rate") if name in section}
    if "betas" in section:
        known["betas"] = tuple(section["betas"])
    return sovits_train.TrainConfig(**known, batch_size=plan.batch_size, epochs=plan.sovits_epochs, fp16=plan.fp16)


def train(
    items: Sequence[PreparedItem], base: BaseWeights, plan: Plan, workdir: Path, control: Control
) -> Result:
    """Both stages over `items`, resuming from `workdir`; the exported files' paths in the result.

    Raises Stopped between steps when `control.stop_reason()` says so; the work directory then holds the
    last finished epoch, and a later call with the same items and plan goes on from there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    left_out: list[tuple[str, str]] = []
    sovits_path, gpt_path = workdir / SOVITS_FILE, workdir / GPT_FILE
    if sovits_path.is_file():  # an earlier attempt finished this stage: its epochs are in its last state
        history += _saved_history(workdir / _SOVITS_STATE)
    else:
        config = SoVITSConfig.from_checkpoint(base.sovits_config, version="v2")
        trainer = sovits_train.SoVITSTrainer(
            config, _sovits_train_config(base.sovits_config, plan),
            base.sovits_state, base.discriminator_state, device=plan.device, seed=plan.seed,
        )
        sovits_items = [sovits_train.SoVITSItem(phone_ids=i.phone_ids, ssl=i.ssl, wav=i.wav) for i in items]
        _epochs("sovits", trainer, sovits_items, lambda batch: sovits_train.collate(batch, config), plan.sovits_epochs,
                plan, workdir / _SOVITS_STATE, _fingerprint(items, plan, "sovits"), control, history)
        info = f"{plan.name}_e{plan.sovits_epochs}_s{trainer.step}"
        sovits_train.save_sovits_weights(sovits_path, trainer.inference_weights(), base.sovits_config, info)
        del trainer
    if gpt_path.is_file():
        history += _saved_history(workdir / _GPT_STATE)
    else:
        if plan.gpt_epochs == 0:
            _atomic_copy(base.gpt_path, gpt_path)  # the base GPT speaks: its file, unchanged
        else:
            config = T2SConfig.from_checkpoint(base.gpt_config)
            trainer = _GPTStage(t2s_train.T2STrainer(config, base.gpt_state, device=plan.device, fp16=plan.fp16))
            gpt_items, rejected = t2s_train.filter_items(
                t2s_train.T2SItem(phone_ids=i.phone_ids, bert=i.bert, semantic=i.semantic) for i in items)
            left_out += [(items[index].name, f"GPT: {reason}") for index, reason in rejected]
            if not gpt_items:
                raise DatasetError("no clip suits GPT training: " + "; ".join(r for _, r in rejected))
            # Fewer than 100 items are repeated, as the official dataset does: its optimizer steps only every
            # 4th batch of an epoch, which a one-minute dataset would otherwise never reach.
            gpt_items = t2s_train.repeat_small(gpt_items)
            _epochs("gpt", trainer, gpt_items, t2s_train.collate, plan.gpt_epochs, plan,
                    workdir / _GPT_STATE, _fingerprint(items, plan, "gpt"), control, history)
            t2s_train.save_gpt_weights(gpt_path, trainer.trainer.checkpoint_weights(), base.gpt_config,
                                       t2s_train.gpt_info(plan.gpt_epochs))
            del trainer
    return Result(sovits_path=sovits_path, gpt_path=gpt_path, history=history, left_out=left_out)


def _saved_history(state_path: Path) -> list[dict[str, Any]]:
    return list(_load(state_path).get("history", [])) if state_path.is_file() else []
