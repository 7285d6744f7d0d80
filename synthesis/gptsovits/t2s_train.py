"""Fine-tuning of the GPT-SoVITS v2 text-to-semantic decoder ("GPT", s1), without Lightning.

Written by hand rather than running the official `s1_train.py`: that script needs Lightning, torchmetrics,
a data folder of pickled features and a Trainer that owns the loop, while Herald's training worker needs a
plain step it can checkpoint and resume. This module re-implements what the official stage computes
(`Text2SemanticLightningModule.training_step` + `Text2SemanticDecoder.forward_old` + ScaledAdam +
WarmupCosineLRSchedule + `Text2SemanticDataset`), with the official quirks kept because the voices it makes
must be the voices the official tool makes (tests/gptsovits/test_t2s_train.py checks two steps against the
official reference vectors in ../shared/gptsovits-train/):

- dropout p = 0.1 in both positional embeddings, on the attention weights and in every layer (dropout1,
  dropout, dropout2), although the yaml says 0 (that value reaches only the unused token-embedding dropout);
- the text padding mask is LEFT-aligned (`make_pad_mask_left`) although the batch pads phones on the right:
  a shorter item hides its first max - len real phones from attention and shows its zero-id padding;
- the loss is a summed cross-entropy over every audio position of every item, padding included (its target
  is EOS); the logits start at the last text position of the LONGEST item;
- accuracy is top-3 micro accuracy over the non-EOS targets;
- an optimizer step comes only at batch_idx > 0 and batch_idx % 4 == 0 of an epoch (batches 0-4 for the
  first step, then every 4; gradients left at an epoch's end carry into the next);
- the learning rate is 0.01 for the first update and 0.002 for every later one (the scheduler forces its
  end value); `get_last_lr()` lags one step.

The decoder is Herald's inference module (t2s.py) with the same parameters and "model." keys as the official
checkpoint; only the training forward, with its dropouts, lives here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthesis.gptsovits.checkpoint import atomic_save, load_strict, read_checkpoint
from synthesis.gptsovits.scaled_adam import ScaledAdam
from synthesis.gptsovits.t2s import BERT_DIM, T2SConfig, Text2SemanticDecoder

DROPOUT = 0.1  # hard-coded in the official decoder (t2s_model.py:284, 295, 305), whatever the yaml says
KEEP = 1.0 - DROPOUT
LEARNING_RATE = 0.01  # what ScaledAdam is created with: the first update's lr
END_LR = 0.002  # what every scheduler.step() forces afterwards
INIT_LR = 1e-5  # yaml lr_init: only get_last_lr() before the first scheduler step shows it
ACCUMULATE = 4  # official: opt.step() when batch_idx > 0 and batch_idx % 4 == 0
MAX_SEC = 54  # data_module.py: Text2SemanticDataset(max_sec=54)
SEMANTIC_HZ = 25  # semantic tokens per second (v2, "25hz")
MIN_PHONES_PER_SEC, MAX_PHONES_PER_SEC = 3, 25
MIN_DATASET_ITEMS = 100  # smaller datasets are repeated (dataset.py init_batch)
SEMANTIC_PAD = 1024


# ----------------------------------------------------------------------------------------------------------
# dropout draws


class DropoutDraws(Protocol):
    """Where dropout keep-masks come from, in draw order."""

    def keep(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """A bool keep-mask (True = kept) of this shape."""
        ...


class RandomDraws:
    """Keep-masks drawn from a torch generator, as the official CPU dropout draws them (bernoulli_ of 0.9)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def keep(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.empty(shape, device=device).bernoulli_(KEEP, generator=self.generator).bool()


class ReplayedDraws:
    """Recorded keep-masks handed out in order (conformance: the official run's dropout, replayed)."""

    def __init__(self, masks: Sequence[torch.Tensor | np.ndarray]) -> None:
        self.masks = [torch.as_tensor(m) for m in masks]
        self.used = 0

    def keep(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if self.used >= len(self.masks):
            raise ValueError(f"dropout draw {self.used} requested but only {len(self.masks)} were recorded")
        mask = self.masks[self.used]
        if tuple(mask.shape) != tuple(shape):
            raise ValueError(f"dropout draw {self.used}: recorded shape {tuple(mask.shape)}, needed {shape}")
        self.used += 1
        return mask.to(device=device, dtype=torch.bool)

    def check_all_used(self) -> None:
        """Every recorded mask was consumed (the forward drew as many times as the official one)."""
        if self.used != len(self.masks):
            raise ValueError(f"{len(self.masks)} dropout masks recorded, {self.used} used")


def _dropout(x: torch.Tensor, draws: DropoutDraws) -> torch.Tensor:
    # Scale first, then multiply: the official CPU kernel's order (noise.div_(1 - p); x * noise), bit for bit.
    return x * (draws.keep(tuple(x.shape), x.device).to(x.dtype) / KEEP)


# ----------------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class T2SItem:
    """One training utterance: phone ids (L,), BERT features (1024, L) or None (non-Chinese), semantic codes (T,)."""

    phone_ids: torch.Tensor  # (L,) int64
    bert: torch.Tensor | None  # (1024, L) float32
    semantic: torch.Tensor  # (T,) int64


@dataclass(frozen=True)
class T2SBatch:
    """A collated batch, as the official Text2SemanticDataset.collate returns it."""

    phoneme_ids: torch.Tensor  # (B, X) int64, right-padded with 0
    phoneme_ids_len: torch.Tensor  # (B,) int64
    semantic_ids: torch.Tensor  # (B, Y) int64, right-padded with 1024
    semantic_ids_len: torch.Tensor  # (B,) int64
    bert_feature: torch.Tensor  # (B, 1024, X) float32, zeros past each item and for items without BERT

    def to(self, device: str | torch.device) -> T2SBatch:
        """The same batch on another device."""
        return T2SBatch(*(t.to(device) for t in (self.phoneme_ids, self.phoneme_ids_len, self.semantic_ids,
                                                  self.semantic_ids_len, self.bert_feature)))


def collate(items: Sequence[T2SItem]) -> T2SBatch:
    """Pad phones with 0, semantic codes with 1024 and BERT with zeros (missing BERT: all zeros)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    B = len(items)
    x_lens = [int(it.phone_ids.numel()) for it in items]
    y_lens = [int(it.semantic.numel()) for it in items]
    X, Y = max(x_lens), max(y_lens)
    phones = torch.zeros(B, X, dtype=torch.int64)  # (B, X)
    semantic = torch.full((B, Y), SEMANTIC_PAD, dtype=torch.int64)  # (B, Y)
    bert = torch.zeros(B, BERT_DIM, X, dtype=torch.float32)  # (B, 1024, X)
    for b, it in enumerate(items):
        phones[b, : x_lens[b]] = it.phone_ids
        semantic[b, : y_lens[b]] = it.semantic
        if it.bert is not None:
            if tuple(it.bert.shape) != (BERT_DIM, x_lens[b]):
                raise ValueError(f"item {b}: bert must be ({BERT_DIM}, {x_lens[b]}), got {tuple(it.bert.shape)}")
            bert[b, :, : x_lens[b]] = it.bert
    return T2SBatch(phones, torch.tensor(x_lens), semantic, torch.tensor(y_lens), bert)


def rejection(item: T2SItem) -> str | None:
    """Why the official dataset would drop this item (too long, odd phone rate), or None if it keeps it."""
    n_sem, n_ph = int(item.semantic.numel()), int(item.phone_ids.numel())
    if n_sem > MAX_SEC * SEMANTIC_HZ:
        return f"{n_sem / SEMANTIC_HZ:.1f} s of audio: longer than {MAX_SEC} s"
    if n_ph > MAX_SEC * SEMANTIC_HZ / 2.5:
        return f"{n_ph} phones: more than {MAX_SEC * SEMANTIC_HZ / 2.5:.0f}"
    if n_sem == 0:
        return "no semantic codes"
    rate = n_ph / (n_sem / SEMANTIC_HZ)
    if not MIN_PHONES_PER_SEC <= rate <= MAX_PHONES_PER_SEC:
        return f"{rate:.1f} phones per second: outside [{MIN_PHONES_PER_SEC}, {MAX_PHONES_PER_SEC}]"
    return None


def filter_items(items: Iterable[T2SItem]) -> tuple[list[T2SItem], list[tuple[int, str]]]:
    """The items the official dataset keeps, and (index, reason) for each one it drops."""
    kept, dropped = [], []
    for i, item in enumerate(items):
        reason = rejection(item)
        if reason is None:
            kept.append(item)
        else:
            dropped.append((i, reason))
    return kept, dropped


def repeat_small(items: Sequence[T2SItem], min_items: int = MIN_DATASET_ITEMS) -> list[T2SItem]:
    """Repeat a dataset of fewer than min_items items max(2, min_items // n) times, as the official one.

    It matters: the optimizer steps only at batch_idx 4, 8, ... of an epoch, so without the repetition a
    one-minute dataset (a few batches per epoch) would never reach an optimizer step within an epoch.
    """
    if not items or len(items) >= min_items:
        return list(items)
    return list(items) * max(2, int(min_items / len(items)))


# ----------------------------------------------------------------------------------------------------------
# the training forward (official forward_old)


@dataclass
class T2SForward:
    loss: torch.Tensor  # () summed cross-entropy
    acc: float  # top-3 micro accuracy over non-EOS targets
    logits: torch.Tensor  # (B, V, Y + 1) as given to the cross-entropy
    targets: torch.Tensor  # (B, Y + 1)
    y_in: torch.Tensor  # (B, Y) audio input ids, padding set to EOS
    x_mask: torch.Tensor  # (B, X) True = masked (left-aligned, the official quirk)
    xy_pos: torch.Tensor  # (B, X + Y, C) transformer input
    xy_attn_mask: torch.Tensor  # (B, X + Y, X + Y) True = may not attend


def _attention(attn: nn.Module, x: torch.Tensor, bias: torch.Tensor, draws: DropoutDraws) -> torch.Tensor:
    """Self-attention as the official layer computes it, with dropout on the softmax weights (B, H, S, S).

    The tensors take the official route (sequence-first projections, torch's math SDPA scaling q and k each
    by sqrt(scale)): the same values in another memory layout would sum the weight gradients in another
    order, and the k-part of in_proj_bias, whose exact gradient is zero, would get other rounding noise,
    which ScaledAdam's sign-like first step turns into full-size moves.
    """
    B, S, C = x.shape
    H = attn.n_head
    hd = C // H
    proj = F.linear(x.transpose(0, 1), attn.in_proj_weight, attn.in_proj_bias)  # (S, B, 3C)
    proj = proj.unflatten(-1, (3, C)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()  # (3, S, B, C)
    q, k, v = (t.view(S, B * H, hd).transpose(0, 1).view(B, H, S, hd) for t in proj)  # (B, H, S, hd) each
    root_scale = math.sqrt(1.0 / math.sqrt(hd))
    weights = (q * root_scale) @ (k.transpose(-2, -1) * root_scale)  # (B, H, S, S)
    weights = torch.softmax(weights + bias, dim=-1)
    weights = _dropout(weights, draws)
    y = (weights @ v).permute(2, 0, 1, 3).contiguous().view(S * B, C)  # (S·B, C)
    return attn.out_proj(y).view(S, B, C).transpose(0, 1)  # (B, S, C)


def _block(block: nn.Module, x: torch.Tensor, bias: torch.Tensor, draws: DropoutDraws) -> torch.Tensor:
    """Post-norm layer with the official dropouts: dropout1 after attention, dropout inside and dropout2
    after the FFN."""
    x = block.norm1(x + _dropout(_attention(block.self_attn, x, bias, draws), draws))  # (B, S, C)
    hidden = _dropout(F.relu(block.linear1(x)), draws)  # (B, S, 4C)
    return block.norm2(x + _dropout(block.linear2(hidden), draws))  # (B, S, C)


def top3_accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore: int) -> float:
    """Share of non-ignored targets among the 3 highest logits (torchmetrics MulticlassAccuracy, micro)."""
    keep = targets != ignore  # (B, N)
    if not bool(keep.any()):
        return 0.0
    top = logits.topk(3, dim=1).indices  # (B, 3, N)
    hit = (top == targets[:, None, :]).any(dim=1)  # (B, N)
    # A float32 ratio, as torchmetrics returns it (acc_* of the reference is that value, widened).
    return float(hit[keep].sum().float() / keep.sum().float())


def training_forward(model: Text2SemanticDecoder, batch: T2SBatch, draws: DropoutDraws) -> T2SForward:
    """The official forward_old in train mode: loss, accuracy and the intermediate tensors."""
    eos = model.config.eos
    x_lens, y_lens = batch.phoneme_ids_len, batch.semantic_ids_len
    B, X = batch.phoneme_ids.shape
    Y = batch.semantic_ids.size(1)
    device = batch.phoneme_ids.device

    x = model.ar_text_embedding(batch.phoneme_ids)  # (B, X, C)
    x = x + model.bert_proj(batch.bert_feature.transpose(1, 2))  # (B, X, C)
    x = _dropout(model.ar_text_position(x), draws)  # (B, X, C)
    positions_x = torch.arange(X, device=device)
    x_mask = positions_x[None, :] < (X - x_lens)[:, None]  # (B, X) left-aligned, although phones are right-padded

    positions_y = torch.arange(Y, device=device)
    y_mask = positions_y[None, :] >= y_lens[:, None]  # (B, Y) True = padding
    codes = batch.semantic_ids.masked_fill(y_mask, 0)  # (B, Y)
    targets = F.pad(codes, (0, 1), value=0) + eos * F.pad(y_mask.long(), (0, 1), value=1)  # (B, Y + 1)
    y_in = targets[:, :-1]  # (B, Y) padding -> EOS
    y = _dropout(model.ar_audio_position(model.ar_audio_embedding(y_in)), draws)  # (B, Y, C)

    # Text rows see all text columns; audio rows see all text and the audio causally; then padding columns.
    S = X + Y
    i = torch.arange(S, device=device)
    blocked = torch.where(i[:, None] < X, i[None, :] >= X, (i[None, :] >= X) & (i[None, :] > i[:, None]))  # (S, S)
    padding = torch.cat([x_mask, y_mask], dim=1)  # (B, S)
    xy_attn_mask = blocked[None] | padding[:, None, :]  # (B, S, S)
    bias = torch.zeros(B, 1, S, S, dtype=x.dtype, device=device).masked_fill(xy_attn_mask[:, None], float("-inf"))

    xy_pos = torch.cat([x, y], dim=1)  # (B, S, C)
    h = xy_pos
    for block in model.h.layers:
        h = _block(block, h, bias, draws)  # (B, S, C)
    logits = model.ar_predict_layer(h[:, X - 1 :]).permute(0, 2, 1)  # (B, V, Y + 1)
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    acc = top3_accuracy(logits.detach().float(), targets, eos)
    return T2SForward(loss, acc, logits, targets, y_in, x_mask, xy_pos, xy_attn_mask)


# ----------------------------------------------------------------------------------------------------------
# learning-rate schedule


class OfficialLRSchedule:
    """The official WarmupCosineLRSchedule as it behaves: each step() sets every group's lr to 0.002.

    Its warm-up/cosine arithmetic is overwritten by a hard-coded end value and it never calls the base
    class, so the optimizer keeps its initial lr (0.01) until the first step; get_last_lr() returns the
    groups' lr from before the latest step (init_lr before any).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, init_lr: float = INIT_LR, end_lr: float = END_LR):
        self.optimizer = optimizer
        self.end_lr = end_lr
        self.lr = init_lr
        self.last_lr = [init_lr]
        self.current_step = 0

    def step(self) -> float:
        """Advance one optimizer step; return the lr now set."""
        self.last_lr = [g["lr"] for g in self.optimizer.param_groups]
        for g in self.optimizer.param_groups:
            g["lr"] = self.end_lr
        self.lr = self.end_lr
        self.current_step += 1
        return self.lr

    def get_last_lr(self) -> list[float]:
        """What Lightning logs as "lr": one step behind."""
        return list(self.last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "last_lr": list(self.last_lr), "current_step": self.current_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.lr = float(state["lr"])
        self.last_lr = [float(v) for v in state["last_lr"]]
        self.current_step = int(state["current_step"])


# ----------------------------------------------------------------------------------------------------------
# the trainer


class _Lightning(nn.Module):
    """Holds the decoder as `model` so that parameter names are the checkpoint's "model.…" keys."""

    def __init__(self, decoder: Text2SemanticDecoder) -> None:
        super().__init__()
        self.model = decoder


class T2STrainer:
    """The official s1 training step on Herald's decoder: forward_old, backward, ScaledAdam every few batches."""

    def __init__(
        self,
        config: T2SConfig,
        state: Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        accumulate: int = ACCUMULATE,
        seed: int = 1234,
    ) -> None:
        if accumulate < 1:
            raise ValueError("accumulate must be >= 1")
        self.config = config
        self.device = torch.device(device)
        self.accumulate = accumulate
        # Lightning's 16-mixed precision: CUDA autocast fp16 with a GradScaler; fp32 weights and optimizer.
        self.fp16 = fp16 and self.device.type == "cuda"
        self.root = _Lightning(Text2SemanticDecoder(config))
        load_strict(self.root, state, path="<weights>", what="the GPT its config describes")
        self.root.to(self.device).train()
        self.names = [name for name, _ in self.root.named_parameters()]
        self.optimizer = ScaledAdam(self.root.parameters(), lr=LEARNING_RATE)
        self.scheduler = OfficialLRSchedule(self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.fp16)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.batch_in_epoch = 0  # the official batch_idx: restarts every epoch
        self.epoch = 0
        self.optimizer_steps = 0

    @property
    def model(self) -> Text2SemanticDecoder:
        return self.root.model

    def forward_backward(self, batch: T2SBatch, draws: DropoutDraws | None = None) -> T2SForward:
        """One forward_old and its backward; gradients accumulate until optimizer_step()."""
        draws = draws if draws is not None else RandomDraws(self.generator)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.fp16):
            out = training_forward(self.model, batch.to(self.device), draws)
        self.scaler.scale(out.loss).backward()
        return out

    def optimizer_step(self) -> None:
        """opt.step(); opt.zero_grad(); scheduler.step(), as the official training_step does."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        self.scheduler.step()
        self.optimizer_steps += 1

    def train_step(self, batch: T2SBatch, draws: DropoutDraws | None = None) -> dict[str, float]:
        """One batch: forward/backward, and an optimizer step at batch_idx > 0 and batch_idx % accumulate == 0."""
        lr = self.optimizer.param_groups[0]["lr"]
        out = self.forward_backward(batch, draws)
        stepped = self.batch_in_epoch > 0 and self.batch_in_epoch % self.accumulate == 0
        if stepped:
            self.optimizer_step()
        self.batch_in_epoch += 1
        return {"loss": float(out.loss.detach()), "acc": out.acc, "stepped": float(stepped), "lr": float(lr)}

    def next_epoch(self) -> None:
        """Start a new epoch: batch_idx restarts at 0; accumulated gradients carry over (as officially)."""
        self.epoch += 1
        self.batch_in_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimizer, schedule, counters, RNG, pending grads."""
        return {
            "model": {k: v.detach().clone() for k, v in self.root.state_dict().items()},
            "grads": {n: p.grad.detach().clone() for n, p in self.root.named_parameters() if p.grad is not None},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "counters": {"batch_in_epoch": self.batch_in_epoch, "epoch": self.epoch,
                         "optimizer_steps": self.optimizer_steps, "accumulate": self.accumulate},
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from state_dict() output (after torch.save / torch.load(weights_only=True))."""
        load_strict(self.root, state["model"], path="<resume>", what="this trainer's GPT")
        params = dict(self.root.named_parameters())
        unknown = set(state["grads"]) - set(params)
        if unknown:
            raise ValueError(f"gradients for unknown parameters: {sorted(unknown)[:3]}")
        for name, p in params.items():
            grad = state["grads"].get(name)
            p.grad = None if grad is None else grad.to(device=p.device, dtype=p.dtype).clone()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        counters = state["counters"]
        if int(counters["accumulate"]) != self.accumulate:
            raise ValueError(f"state was saved with accumulate={counters['accumulate']}, trainer has {self.accumulate}")
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        self.epoch = int(counters["epoch"])
        self.optimizer_steps = int(counters["optimizer_steps"])
        self.generator.set_state(state["rng"])

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        """The weights as the official export stores them: fp16 on the CPU, "model.…" keys."""
        return {k: v.detach().to("cpu", torch.float16).clone() for k, v in self.root.state_dict().items()}


def gpt_info(epoch: int) -> str:
    """The official export's "info" string for an epoch (counted from 1)."""
    return f"GPT-e{epoch}"


def save_gpt_weights(path: str | Path, weights: Mapping[str, torch.Tensor], config: dict, info: str) -> None:
    """Write the official s1 export ({"weight", "config", "info"}) atomically: temp file, fsync, rename."""
    atomic_save({"weight": dict(weights), "config": config, "info": info}, path)


# ----------------------------------------------------------------------------------------------------------
# conformance with the official training vectors


S1_STEPS = 2
S1_DRAWS_PER_STEP = 10


def s1_inputs(vectors: Mapping[str, np.ndarray]) -> set[str]:
    """The names in s1_vectors.npz that are inputs (item files and recorded dropout draws), not results."""
    return {n for n in vectors if n.startswith(("item", "drop_step"))}


def _array_name(param: str) -> str:
    return param.removeprefix("model.").replace(".", "_")


def t2s_train_conformance(
    gpt_ckpt_path: Path,
    vectors: Mapping[str, np.ndarray],
    *,
    phone_ids: Callable[[Sequence[str]], Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Rebuild the GPT from the file, replay the recorded dropout, run steps 0 and 1, return every result array.

    phone_ids maps phone symbols to v2 ids (synthesis.frontend.symbols.phone_ids, which the training-set check
    passes). Without it the item ids are read back from the recorded `phoneme_ids`, so that
    array is then not an independent check.
    """
    checkpoint = read_checkpoint(gpt_ckpt_path, kind="gpt")
    config = T2SConfig.from_checkpoint(checkpoint.config)
    trainer = T2STrainer(config, checkpoint.weights)
    out: dict[str, np.ndarray] = {}

    items = []
    n_items = len([n for n in vectors if n.startswith("item") and n.endswith("_semantic")])
    for i in range(n_items):
        phones = [str(p) for p in vectors[f"item{i}_phones"]]
        if phone_ids is not None:
            ids = torch.tensor(list(phone_ids(phones)), dtype=torch.int64)
        else:
            ids = torch.from_numpy(np.asarray(vectors["phoneme_ids"][i, : len(phones)], dtype=np.int64))
        bert = vectors.get(f"item{i}_bert_file")
        items.append(T2SItem(ids, None if bert is None else torch.from_numpy(np.asarray(bert)),
                             torch.from_numpy(np.asarray(vectors[f"item{i}_semantic"], dtype=np.int64))))
    batch = collate(items)
    out["phoneme_ids"] = batch.phoneme_ids.numpy()
    out["phoneme_ids_len"] = batch.phoneme_ids_len.numpy()
    out["semantic_ids"] = batch.semantic_ids.numpy()
    out["semantic_ids_len"] = batch.semantic_ids_len.numpy()
    out["bert_feature"] = batch.bert_feature.numpy()
    out["param_names"] = np.array(trainer.names)

    params = dict(trainer.root.named_parameters())
    for step in range(S1_STEPS):
        out[f"lr_step{step}"] = np.array([trainer.optimizer.param_groups[0]["lr"]], dtype=np.float64)
        draws = ReplayedDraws([vectors[f"drop_step{step}_{j:02d}"] for j in range(S1_DRAWS_PER_STEP)])
        result = trainer.forward_backward(batch, draws)
        draws.check_all_used()
        out[f"loss_step{step}"] = result.loss.detach().numpy().astype(np.float32)
        out[f"acc_step{step}"] = np.array(result.acc, dtype=np.float64)
        if step == 0:
            out["xy_pos"] = result.xy_pos.detach().numpy()
            out["xy_attn_mask"] = result.xy_attn_mask.numpy()
            out["logits"] = result.logits.detach().numpy()
            out["y_in"] = result.y_in.numpy()
            out["targets"] = result.targets.numpy()
            out["x_mask"] = result.x_mask.numpy()
        out[f"grad_norms_step{step}"] = np.array(
            [float(torch.linalg.vector_norm(params[n].grad.double())) for n in trainer.names])
        for name in trainer.names:
            key = f"grad_{_array_name(name)}"
            if step == 0 and key in vectors:
                out[key] = params[name].grad.numpy().copy()
        before = {n: p.detach().clone() for n, p in params.items()}
        trainer.optimizer_step()
        out[f"update_norms_step{step}"] = np.array(
            [float(torch.linalg.vector_norm((params[n].detach() - before[n]).double())) for n in trainer.names])
        for name in trainer.names:
            key = f"param_after_step{step}_{_array_name(name)}"
            if key in vectors:
                out[key] = params[name].detach().numpy().copy()
        out[f"sched_lr_after_step{step}"] = np.array(trainer.scheduler.lr, dtype=np.float64)
        out[f"sched_last_lr_after_step{step}"] = np.array(trainer.scheduler.get_last_lr(), dtype=np.float64)
    return out
