"""The text-to-semantic decoder against the official reference vectors, and its decoding paths against each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthesis.gptsovits import t2s
from synthesis.gptsovits.t2s import T2SConfig, Text2SemanticDecoder, t2s_conformance

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"
GREEDY = dict(top_k=1, top_p=1.0, temperature=1.0, repetition_penalty=1.35)
GPT_ARRAYS = {
    *(f"all_phones_{i}" for i in range(3)),
    "gpt_tokens_naive", "gpt_idx_naive", "gpt_logits_raw", "gpt_hidden_last", "gpt_tokens_tts_kept",
    "gpt_tokens_sampled", "gpt_idx_sampled", "gpt_probs_sampled",
    "batch_x_lens", "batch_max_len", "batch_phones_leftpad", "batch_xy_pos", "batch_attn_mask", "batch_logits_raw",
    *(f"batch_y_{i}" for i in range(3)), *(f"batch_tokens_tts_kept_{i}" for i in range(3)), "batch_idx",
    *(f"naive_y_{i}" for i in range(3)), *(f"naive_tokens_tts_kept_{i}" for i in range(3)), "naive_idx",
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Text2SemanticDecoder:
    checkpoint = torch.load(SHARED / "gpt.ckpt", map_location="cpu", weights_only=True)
    model = Text2SemanticDecoder(T2SConfig.from_checkpoint(checkpoint["config"]))
    state = {k.removeprefix("model."): v.float() for k, v in checkpoint["weight"].items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    with np.load(SHARED / "vectors.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="module")
def items(vectors) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """The three reference inputs: phones (T_i,), BERT features (1024, T_i), prompt codes (45,)."""
    T = torch.from_numpy
    phones = [torch.cat([T(vectors["prompt_phones"]), T(vectors[f"text_phones_{i}"])]) for i in range(3)]
    bert = [torch.cat([T(vectors["prompt_bert"]), T(vectors[f"text_bert_{i}"])], dim=1) for i in range(3)]
    return phones, bert, T(vectors["prompt_semantic"])


def test_every_gpt_array_matches_the_official_vectors(model, vectors):
    computed = t2s_conformance(model, vectors)
    assert set(computed) == GPT_ARRAYS
    for name, actual in computed.items():
        expected = vectors[name]
        assert actual.shape == expected.shape, name
        if expected.dtype.kind == "f":
            assert np.array_equal(np.isnan(actual), np.isnan(expected)), name
            assert np.nanmax(np.abs(actual - expected)) <= 1e-4, name
        else:
            assert actual.dtype.kind == expected.dtype.kind and np.array_equal(actual, expected), name


def test_the_two_paths_keep_different_tokens_when_the_cap_stops_them(model, items):
    phones, bert, prompt = items
    batched = model.generate(phones, bert, prompt, mode="batched", max_steps=60, **GREEDY)
    naive = model.generate(phones, bert, prompt, mode="naive", max_steps=60, **GREEDY)
    assert [g.eos for g in batched] == [g.eos for g in naive] == [False, True, True]
    assert [g.idx for g in batched] == [g.idx for g in naive] == [59, 38, 51]
    assert torch.equal(batched[0].tokens[1:], naive[0].tokens[:-1])  # first 59 vs last 59 of 60
    for b, n in zip(batched[1:], naive[1:], strict=True):
        assert torch.equal(b.tokens, n.tokens) and torch.equal(b.y, n.y)


def test_a_batch_decodes_like_its_items_one_at_a_time(model, items):
    phones, bert, prompt = items
    together = model.generate(phones, bert, prompt, mode="batched", max_steps=60, record=True, **GREEDY)
    for i in range(3):
        (alone,) = model.generate(
            phones[i : i + 1], bert[i : i + 1], prompt, mode="batched", max_steps=60, record=True, **GREEDY
        )
        assert torch.equal(together[i].tokens, alone.tokens) and together[i].idx == alone.idx
        assert together[i].logits.shape == alone.logits.shape
        assert torch.allclose(together[i].logits, alone.logits, rtol=0, atol=1e-4)


def test_the_kv_cache_gives_what_a_full_recompute_gives(model, items):
    phones, bert, prompt = items
    runs = model.generate(phones, bert, prompt, mode="batched", max_steps=14, record=True, **GREEDY)
    for p, f, run in zip(phones, bert, runs, strict=True):
        generated = run.y[prompt.numel() :]  # the batched path drops the capped last token: 13 of 14
        with torch.inference_mode():
            xy, attend, _ = model.prefill_inputs([p], [f], torch.cat([prompt, generated]))
            hidden = model(xy, attend)[0, -generated.numel() - 1 :]  # (14, C): the state before every step
        assert torch.allclose(hidden, run.hidden, rtol=0, atol=1e-4)


def test_a_growing_cache_changes_nothing(model, items, monkeypatch):
    phones, bert, prompt = items
    before = model.generate(phones, bert, prompt, max_steps=30, record=True, **GREEDY)
    monkeypatch.setattr(t2s, "CACHE_CHUNK", 3)
    after = model.generate(phones, bert, prompt, max_steps=30, record=True, **GREEDY)
    for b, a in zip(before, after, strict=True):
        assert torch.equal(b.tokens, a.tokens)
        assert torch.allclose(b.logits, a.logits, rtol=0, atol=1e-5)


def test_a_seeded_generator_draws_like_the_global_rng(model, items):
    phones, bert, prompt = items
    kw = dict(top_k=15, top_p=0.9, temperature=0.8, repetition_penalty=1.2, max_steps=40, mode="naive")
    torch.manual_seed(7)
    (from_global,) = model.generate(phones[:1], bert[:1], prompt, **kw)
    (from_generator,) = model.generate(
        phones[:1], bert[:1], prompt, generator=torch.Generator().manual_seed(7), **kw
    )
    assert torch.equal(from_global.y, from_generator.y)


def test_reference_free_decoding_keeps_every_token(model, items):
    phones, bert, _ = items
    (run,) = model.generate(phones[:1], bert[:1], None, max_steps=20, record=True, **GREEDY)
    assert run.idx == 0  # as the official path reports it; TTS's y[-0:] then keeps everything
    assert torch.equal(run.tokens, run.y) and run.tokens.numel() == run.logits.shape[0] - run.eos


def test_bfloat16_decodes(model, items):
    phones, bert, prompt = items
    low = Text2SemanticDecoder(model.config)
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16).eval()
    runs = low.generate(phones[1:], bert[1:], prompt, max_steps=20, record=True, **GREEDY)
    exact = model.generate(phones[1:], bert[1:], prompt, max_steps=20, record=True, **GREEDY)
    assert all(g.logits.dtype == torch.float32 and 11 <= g.tokens.numel() <= 19 for g in runs)
    assert torch.allclose(runs[0].logits[0], exact[0].logits[0], rtol=0, atol=0.1)


def test_inputs_that_do_not_fit_are_refused(model, items):
    phones, bert, prompt = items
    with pytest.raises(ValueError, match="bert must be"):
        model.generate(phones[:1], [bert[1]], prompt, max_steps=2)
    with pytest.raises(ValueError, match="mode"):
        model.generate(phones[:1], bert[:1], prompt, mode="parallel")


def test_a_full_size_model_has_the_official_keys_and_shapes():
    manifest = json.loads((SHARED / "manifest_v2_gpt.json").read_text())
    expected = {k.removeprefix("model."): tuple(v["shape"]) for k, v in manifest["keys"].items()}
    assert T2SConfig.from_checkpoint({"model": manifest["config"]}) == T2SConfig()
    model = Text2SemanticDecoder(T2SConfig())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
