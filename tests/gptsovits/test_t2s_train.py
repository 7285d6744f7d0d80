"""GPT (s1) fine-tuning: the official training vectors, learning, resume, and the official export format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthesis.frontend.symbols import phone_ids
from synthesis.gptsovits.checkpoint import read_checkpoint
from synthesis.gptsovits.loading import load_gpt
from synthesis.gptsovits.t2s import T2SConfig, Text2SemanticDecoder
from synthesis.gptsovits.t2s_train import (
    T2SItem,
    T2STrainer,
    collate,
    filter_items,
    gpt_info,
    repeat_small,
    s1_inputs,
    save_gpt_weights,
    t2s_train_conformance,
    training_forward,
)
from synthesis.gptsovits.train_conformance import S1_UPDATE_NORMS

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TRAIN = SHARED / "gptsovits-train"
TINY = T2SConfig(embedding_dim=32, hidden_dim=32, head=2, n_layer=1)


# ----------------------------------------------------------------------------------------------------------
# the README's suggested tolerances


def _step_size(name: str, ref: np.ndarray) -> float:
    """The largest element move of a first ScaledAdam step (lr 0.01): 0.1·lr·rms(p), scalars 0.01·lr."""
    if ref.size == 1:
        return 0.01 * 0.01
    return 0.01 * 0.1 * float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))


def _problem(name: str, ref: np.ndarray, got: np.ndarray, counted: int) -> str | None:
    """Why `got` is outside the suggested tolerance for array `name`, or None."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    if ref.dtype.kind in "biuU":
        return None if np.array_equal(got, ref) else "not exact"
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    if name.startswith("acc_"):
        limit = 1.0 / counted + 1e-12  # one top-3 count may flip on a tie
    elif name.startswith("loss_"):
        limit = 1e-5 * abs(float(ref))
    elif name.startswith("grad_norms_"):
        bad = diff > 1e-3 * np.abs(ref) + 1e-12
        return f"rtol 1e-3 exceeded at {int(bad.sum())} entries" if bad.any() else None
    elif name.startswith("update_norms_"):
        # The key biases' gradient is rounding noise: their Adam steps have a floor (train_conformance).
        bad = diff > 1e-3 * np.abs(ref) + S1_UPDATE_NORMS.atol
        return f"rtol 1e-3 + {S1_UPDATE_NORMS.atol:g} exceeded at {int(bad.sum())} entries" if bad.any() else None
    elif name.startswith("grad_"):
        limit = 1e-3 * peak
    elif name.startswith("param_after_"):
        if np.mean(diff > 1e-6) > 0.001:
            return f"{np.mean(diff > 1e-6):.4%} of the elements move more than 1e-6"
        limit = 2.1 * _step_size(name, ref)
    elif name == "xy_pos":
        limit = 1e-5
    elif name == "logits":
        limit = 1e-4
    else:  # bert_feature, learning rates and scheduler values: exact
        limit = 0.0
    return None if worst <= limit else f"max |Δ| {worst:.3g} > {limit:.3g}"


@pytest.fixture(scope="module")
def s1() -> dict[str, np.ndarray]:
    with np.load(TRAIN / "s1_vectors.npz") as npz:
        return dict(npz)


def test_two_official_training_steps_are_reproduced(s1):
    """Every result array of s1_vectors.npz (batch, masks, logits, loss, grads, ScaledAdam steps, lr) matches."""
    got = t2s_train_conformance(SHARED / "gptsovits" / "gpt.ckpt", s1, phone_ids=phone_ids)
    expected = sorted(n for n in s1 if n not in s1_inputs(s1))
    assert sorted(got) == expected
    counted = int(s1["semantic_ids_len"].sum())  # the accuracy's denominator: non-EOS targets
    problems = {n: p for n in expected if (p := _problem(n, s1[n], got[n], counted))}
    assert problems == {}
    # the quirks the vectors pin down, stated outright
    assert float(got["lr_step0"][0]) == 0.01 and float(got["lr_step1"][0]) == 0.002
    assert got["sched_last_lr_after_step0"].tolist() == [0.01]
    assert got["x_mask"][0, :21].all() and not got["x_mask"][0, 21:].any()  # left mask on right-padded phones


def test_replayed_masks_are_all_consumed_and_shapes_checked(s1):
    from synthesis.gptsovits.t2s_train import ReplayedDraws

    draws = ReplayedDraws([s1["drop_step0_00"]])
    with pytest.raises(ValueError, match="recorded shape"):
        draws.keep((2, 3), torch.device("cpu"))


# ----------------------------------------------------------------------------------------------------------
# a tiny random model


def _tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    decoder = Text2SemanticDecoder(TINY)
    return {f"model.{k}": v for k, v in decoder.state_dict().items()}


def _tiny_batch(seed: int = 1) -> list[T2SItem]:
    g = torch.Generator().manual_seed(seed)
    items = []
    for n_phones, n_codes, with_bert in ((12, 40, True), (9, 30, False), (15, 50, True)):
        items.append(T2SItem(
            phone_ids=torch.randint(1, 732, (n_phones,), generator=g),
            bert=torch.randn(1024, n_phones, generator=g) if with_bert else None,
            semantic=torch.randint(0, 1024, (n_codes,), generator=g),
        ))
    return items


class _AllKept:
    def keep(self, shape, device):
        return torch.ones(shape, dtype=torch.bool, device=device)


def _clean_loss(trainer: T2STrainer, batch) -> float:
    with torch.no_grad():
        return float(training_forward(trainer.model, batch, _AllKept()).loss)


def test_ten_steps_on_one_batch_lower_the_loss():
    batch = collate(_tiny_batch())
    trainer = T2STrainer(TINY, _tiny_state(), accumulate=1)
    before = _clean_loss(trainer, batch)
    results = [trainer.train_step(batch) for _ in range(11)]
    after = _clean_loss(trainer, batch)
    assert sum(r["stepped"] for r in results) == 10  # batch_idx 0 never steps (official batch_idx > 0)
    assert [r["lr"] for r in results[1:3]] == [0.01, 0.002]  # the first update at 0.01, then 0.002
    assert after < before - 0.01 * before, (before, after)


def test_optimizer_steps_follow_the_official_batch_index_rule():
    batch = collate(_tiny_batch())
    trainer = T2STrainer(TINY, _tiny_state())
    stepped = [trainer.train_step(batch)["stepped"] for _ in range(9)]
    assert [i for i, s in enumerate(stepped) if s] == [4, 8]
    trainer.next_epoch()
    assert trainer.train_step(batch)["stepped"] == 0.0  # batch_idx restarts; the gradient carries over
    assert trainer.model.bert_proj.weight.grad is not None


def test_resume_from_a_saved_state_continues_identically(tmp_path):
    batch = collate(_tiny_batch())
    running = T2STrainer(TINY, _tiny_state(), accumulate=2)
    for _ in range(4):  # steps at batch_idx 2; batch 3 leaves gradients pending
        running.train_step(batch)
    torch.save(running.state_dict(), tmp_path / "resume.pt")

    resumed = T2STrainer(TINY, _tiny_state(seed=5), accumulate=2)
    resumed.load_state_dict(torch.load(tmp_path / "resume.pt", weights_only=True))
    for _ in range(3):  # batch_idx 4 (a step using the pending gradients) and two more
        a, b = running.train_step(batch), resumed.train_step(batch)
        assert a == b
    for (name, p), q in zip(running.root.named_parameters(), resumed.root.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_exported_weights_load_strictly_with_identical_tensors(tmp_path):
    trainer = T2STrainer(TINY, _tiny_state())
    batch = collate(_tiny_batch())
    for _ in range(5):
        trainer.train_step(batch)
    weights = trainer.checkpoint_weights()
    assert all(k.startswith("model.") and v.dtype == torch.float16 for k, v in weights.items())
    config = {"model": {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 32, "hidden_dim": 32,
                        "head": 2, "n_layer": 1, "EOS": 1024, "dropout": 0}}
    path = tmp_path / "voice-e1.ckpt"
    save_gpt_weights(path, weights, config, gpt_info(1))

    assert [p.name for p in tmp_path.iterdir()] == ["voice-e1.ckpt"]  # no temp file left behind
    checkpoint = read_checkpoint(path, kind="gpt")
    assert checkpoint.info == "GPT-e1" and checkpoint.config == config
    model = load_gpt(path, dtype=torch.float16)
    loaded = {f"model.{k}": v for k, v in model.state_dict().items()}
    assert sorted(loaded) == sorted(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


# ----------------------------------------------------------------------------------------------------------
# data


def test_collate_pads_like_the_official_dataset():
    items = _tiny_batch()
    batch = collate(items)
    assert batch.phoneme_ids.shape == (3, 15) and batch.semantic_ids.shape == (3, 50)
    assert (batch.phoneme_ids[1, 9:] == 0).all() and (batch.semantic_ids[1, 30:] == 1024).all()
    assert (batch.bert_feature[1] == 0).all()  # no BERT (not Chinese): zeros
    assert torch.equal(batch.bert_feature[0, :, :12], items[0].bert) and (batch.bert_feature[0, :, 12:] == 0).all()
    assert batch.phoneme_ids_len.tolist() == [12, 9, 15] and batch.semantic_ids_len.tolist() == [40, 30, 50]


def test_filtering_gives_a_reason_for_every_dropped_item():
    def item(n_phones: int, n_codes: int) -> T2SItem:
        return T2SItem(torch.ones(n_phones, dtype=torch.long), None, torch.zeros(n_codes, dtype=torch.long))

    kept, dropped = filter_items([item(20, 100), item(20, 1351), item(541, 1350), item(2, 100), item(120, 100)])
    assert len(kept) == 1
    assert [i for i, _ in dropped] == [1, 2, 3, 4]
    assert "longer than 54 s" in dropped[0][1]
    assert "more than 540" in dropped[1][1]
    assert "0.5 phones per second" in dropped[2][1] and "30.0 phones per second" in dropped[3][1]


def test_small_datasets_are_repeated_like_the_official_one():
    items = _tiny_batch()
    assert len(repeat_small(items)) == 3 * 33
    assert len(repeat_small(items * 40)) == 120


# ----------------------------------------------------------------------------------------------------------
# ScaledAdam


def test_scaled_adam_first_step_is_an_rms_scaled_sign_step_and_its_state_round_trips(tmp_path):
    from synthesis.gptsovits.scaled_adam import ScaledAdam

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4, 3)),
              torch.nn.Parameter(torch.randn(1))]
    before = [p.detach().clone() for p in params]
    grads = [torch.randn(4, 3), torch.randn(4, 3), torch.tensor([-0.3])]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer = ScaledAdam(params, lr=0.01)
    optimizer.step()
    for p, b, g in zip(params[:2], before[:2], grads[:2], strict=True):
        rms = b.pow(2).mean().sqrt()
        assert torch.allclose(p.detach() - b, -0.01 * 0.1 * rms * g.sign(), atol=1e-7)
    assert torch.allclose(params[2].detach() - before[2], torch.tensor([0.01 * 0.1 * 0.1]), atol=1e-8)

    torch.save(optimizer.state_dict(), tmp_path / "opt.pt")
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    restored = ScaledAdam(copies, lr=0.01)
    restored.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    for _ in range(5):  # through the first size update (step 3)
        for p, q, g in zip(params, copies, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        optimizer.step()
        restored.step()
    assert all(torch.equal(p, q) for p, q in zip(params, copies, strict=True))
