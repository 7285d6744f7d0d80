"""GPT-SoVITS v2 text-to-semantic decoder ("GPT", t2s): phones + BERT features + a prompt -> semantic codes.

Written by hand rather than vendored: the official `AR.models.t2s_model.Text2SemanticDecoder` pulls in
Lightning, torchmetrics and tqdm, keeps a TorchScript copy of every weight beside the module, and grows its
KV cache with `torch.cat` at every step. This module keeps the official checkpoint key names (minus the
"model." prefix) and reproduces the official outputs from the same weights and inputs, quirks included
(checked against the reference vectors by tests/gptsovits/test_t2s.py):

- the repetition penalty rewrites the logits, so the stop test sees penalised logits;
- no stop before step 11 (the EOS column is removed from the logits of steps 0-10);
- a row stops when the argmax OR the sample is EOS;
- top-p runs on the penalised logits before the temperature; sampling is `argmax(probs / Exp(1) noise)`,
  drawn exactly like the official sampler, so a seeded generator gives the official tokens;
- the two official decoding paths return different tokens when stopped by the step cap: the naive path
  (webui, `parallel_infer=False`) drops the FIRST generated token from what TTS keeps, the batched path
  (`parallel_infer=True`) the LAST one. `generate(mode=...)` picks the path.

Decoding uses one KV cache allocated for the whole batch (grown in large chunks, never per step), a fused
qkv projection and `F.scaled_dot_product_attention`. The batched path compacts finished rows out of the
batch and the cache.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BERT_DIM = 1024  # phone-level RoBERTa features
MIN_STEPS_BEFORE_EOS = 11  # official: EOS cannot be sampled (nor stop a row) before step 11
MAX_STEPS = 1500  # official hard loop bound
CACHE_CHUNK = 256  # decoding steps the KV cache makes room for at a time


@dataclass(frozen=True)
class T2SConfig:
    vocab_size: int = 1025  # 1024 semantic codes + EOS
    phoneme_vocab_size: int = 732  # v2 symbol table
    embedding_dim: int = 512
    hidden_dim: int = 512
    head: int = 16
    n_layer: int = 24
    eos: int = 1024
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.embedding_dim != self.hidden_dim:
            raise ValueError(
                "embedding_dim must equal hidden_dim: embeddings are added straight into the stream"
            )
        if self.eos != self.vocab_size - 1:
            raise ValueError("EOS must be the last audio token id")
        if self.hidden_dim % self.head:
            raise ValueError("hidden_dim must be a multiple of head")

    @classmethod
    def from_checkpoint(cls, config: dict) -> T2SConfig:
        """Read the "model" section of the official s1 yaml dict stored in a GPT checkpoint."""
        m = config["model"]
        # FFN width is always 4 * hidden_dim: the official code ignores "linear_units".
        return cls(
            vocab_size=int(m["vocab_size"]),
            phoneme_vocab_size=int(m["phoneme_vocab_size"]),
            embedding_dim=int(m["embedding_dim"]),
            hidden_dim=int(m["hidden_dim"]),
            head=int(m["head"]),
            n_layer=int(m["n_layer"]),
            eos=int(m["EOS"]),
            dropout=float(m["dropout"]),
        )


# ----------------------------------------------------------------------------------------------------------
# modules


class TokenEmbedding(nn.Module):
    """Token id -> vector (a wrapper only so that keys read `*.word_embeddings.weight`)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(ids)


class SinePositionalEmbedding(nn.Module):
    """x + alpha * sinusoid(position); the official x_scale is 1 (scale=False) and dropout is off at inference."""

    def __init__(self, dim: int, max_positions: int = 4000):
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("pe", self._table(max_positions), persistent=False)  # (N, C)

    def _table(self, n: int) -> torch.Tensor:
        position = torch.arange(0, n, dtype=torch.float32).unsqueeze(1)  # (N, 1)
        div_term = torch.exp(
            torch.arange(0, self.dim, 2, dtype=torch.float32) * -(math.log(10000.0) / self.dim)
        )
        pe = torch.zeros(n, self.dim)
        pe[:, 0::2] = torch.sin(position * div_term)  # even channels sine, odd channels cosine
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = x.size(-2)
        if start + T > self.pe.size(0):
            self.pe = self._table(2 * (start + T)).to(self.pe)
        return x + self.alpha * self.pe[start : start + T]  # (..., T, C)


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter layout (fused in_proj)."""

    def __init__(self, config: T2SConfig):
        super().__init__()
        C = config.hidden_dim
        self.n_head = config.head
        self.in_proj_weight = nn.Parameter(torch.empty(3 * C, C))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * C))
        self.out_proj = nn.Linear(C, C)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        B, T, C = x.shape
        H = self.n_head
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3C)
        qkv = qkv.view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
        q = qkv[0]  # (B, H, T, hd)
        if cache is None:
            k, v = qkv[1], qkv[2]  # (B, H, T, hd)
        else:
            k, v = cache.append(layer, qkv[1:])  # (B, H, S, hd) each, S = cached length incl. these T
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.out_proj(y)


class Block(nn.Module):
    """Post-norm transformer layer: x = LN(x + attn(x)); x = LN(x + FFN(x)), ReLU FFN of width 4C."""

    def __init__(self, config: T2SConfig):
        super().__init__()
        C = config.hidden_dim
        self.self_attn = SelfAttention(config)
        self.linear1 = nn.Linear(C, 4 * C)
        self.linear2 = nn.Linear(4 * C, C)
        self.norm1 = nn.LayerNorm(C, eps=1e-5)
        self.norm2 = nn.LayerNorm(C, eps=1e-5)

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, attend, cache, layer))  # (B, T, C)
        x = self.norm2(x + self.linear2(F.relu(self.linear1(x))))  # (B, T, C)
        return x


class Transformer(nn.Module):
    def __init__(self, config: T2SConfig):
        super().__init__()
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor | None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with a cache, x is appended after the cached positions."""
        for i, block in enumerate(self.layers):
            x = block(x, attend, cache, i)
        if cache is not None:
            cache.length += x.size(1)
        return x


class KVCache:
    """Keys and values of every layer in one tensor, plus which cached positions are real (not left padding).

    Allocated for the prefill plus a chunk of steps and grown by doubling, so decoding never concatenates
    per step; `keep` drops finished rows.
    """

    def __init__(self, config: T2SConfig, real: torch.Tensor, capacity: int, dtype: torch.dtype):
        B, S = real.shape
        H = config.head
        self.capacity = max(capacity, S)
        self.kv = torch.empty(
            config.n_layer, 2, B, H, self.capacity, config.hidden_dim // H, dtype=dtype, device=real.device
        )  # (L, 2, B, H, S_max, hd)
        self.real = torch.ones(B, self.capacity, dtype=torch.bool, device=real.device)  # (B, S_max)
        self.real[:, :S] = real
        self.length = 0

    def append(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store kv (2, B, H, T, hd) after the cached positions; return all keys and values of this layer."""
        end = self.length + kv.size(3)
        self.kv[layer, :, :, :, self.length : end] = kv
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]  # (B, H, S, hd) each

    def reserve(self, n: int) -> None:
        """Make room for n more positions."""
        if self.length + n <= self.capacity:
            return
        capacity = max(self.length + n, 2 * self.capacity)
        kv = self.kv.new_empty(*self.kv.shape[:4], capacity, self.kv.size(5))
        kv[:, :, :, :, : self.length] = self.kv[:, :, :, :, : self.length]
        real = self.real.new_ones(self.real.size(0), capacity)
        real[:, : self.length] = self.real[:, : self.length]
        self.kv, self.real, self.capacity = kv, real, capacity

    def attend(self, n_new: int) -> torch.Tensor | None:
        """Key mask for n_new queries appended now (True = may attend); None when nothing is padding."""
        real = self.real[:, : self.length + n_new]  # (B, S)
        return None if bool(real.all()) else real[:, None, None, :]  # (B, 1, 1, S)

    def keep(self, rows: torch.Tensor) -> None:
        self.kv = self.kv.index_select(2, rows)
        self.real = self.real.index_select(0, rows)


# ----------------------------------------------------------------------------------------------------------
# the one-token decoding step


class StepWeights:
    """One layer's four projections as the one-token step multiplies by them, in the fastest form measured
    for the weights' precision on this CPU (bench/gpt_step.py):

    - fp32 (and any CUDA dtype): F.linear on the module's own weights (MKL's matrix-vector product runs at the
      memory bandwidth);
    - bf16 on a CPU with oneDNN's bf16 kernels: their prepacked layout (`mkldnn._linear_pointwise`), faster
      than F.linear for one row; the packed copy replaces nothing, so bf16 holds the projections twice
      (+151 MB for v2);
    - int8 (`quantize_int8`): weight-only int8 with one scale per output channel
      (`aten._weight_int8pack_mm`), bf16 activations; half the bytes of bf16 again. Only one-row steps use
      it: prefill and steps of 8 rows or more stay on the bf16 weights, where AMX matrix products win.
    """

    def __init__(self, kind: str, linears: list[tuple[torch.Tensor, torch.Tensor]]):
        self.kind = kind
        if kind == "packed":
            self.weights = [(torch.ops.mkldnn._reorder_linear_weight(w, 1), w, b) for w, b in linears]
        elif kind == "int8":
            self.weights = [(*quantize_rows(w), b) for w, b in linears]
        else:
            self.weights = [(w, b) for w, b in linears]

    @property
    def extra_bytes(self) -> int:
        """Memory held beyond the module's own weights (the packed or int8 copies)."""
        own = {"linear": 0, "packed": 1, "int8": 2}[self.kind]  # packed: (copy, weight, bias); int8: (q, scale, bias)
        return sum(t.numel() * t.element_size() for w in self.weights for t in w[:own])

    def __call__(self, i: int, x: torch.Tensor) -> torch.Tensor:
        w = self.weights[i]
        if self.kind == "packed":
            return torch.ops.mkldnn._linear_pointwise(x, w[0], w[2], "none", [], "")
        if self.kind == "int8":
            return torch.ops.aten._weight_int8pack_mm(x, w[0], w[1]).add_(w[2])
        return F.linear(x, w[0], w[1])


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output row: weight (N, K) ~ q (N, K) int8 * scale (N,), |q| <= 127."""
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127  # (N,)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale.to(weight.dtype)


FEW_ROWS = 8  # from this many rows on, a step multiplies by the module's own weights (AMX / MKL GEMM)


# ----------------------------------------------------------------------------------------------------------
# sampling (official `logits_to_probs` / `sample`, with the penalty split out because it feeds the stop test)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every id seen so far (prompt included) once: positive logits / penalty, negative * penalty."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)  # (B, V)
    return torch.where(seen[:, : logits.size(1)], penalised, logits)  # (B, V)


def logits_to_probs(logits: torch.Tensor, *, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """Penalised logits (B, V) -> probabilities (B, V): top-p, then temperature, then top-k, then softmax."""
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)  # (B, V)
        drop_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > top_p
        drop_sorted[:, 0] = False  # keep at least the best
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -float("inf"))
    logits = logits / max(temperature, 1e-5)
    pivot = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1)
    logits = logits.masked_fill(logits < pivot, -float("inf"))
    return logits.softmax(dim=-1)


def sample(probs: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Draw one id per row (B,): argmax(probs / q), q ~ Exp(1), the official draw (same RNG consumption).

    With a list (one generator per row) each row draws from its own stream, so an item samples the same codes
    whatever else shares its batch: the render cache relies on that (same text, same voice, same bytes).
    """
    if isinstance(generator, list):
        q = torch.stack([torch.empty_like(row).exponential_(1, generator=g) for row, g in zip(probs, generator, strict=True)])
    else:
        q = torch.empty_like(probs).exponential_(1, generator=generator)  # (B, V)
    return torch.argmax(probs / q, dim=-1)


# ----------------------------------------------------------------------------------------------------------
# the model


@dataclass
class Generation:
    """One item's result, in the official conventions of the decoding path that produced it."""

    tokens: torch.Tensor  # (N,) the semantic codes TTS hands to SoVITS, i.e. official y[-idx:]
    y: torch.Tensor  # (P + n,) what the official infer_panel_* returns for this item: prompt + generated
    idx: int  # the official idx: the step at which decoding stopped
    eos: bool  # stopped by EOS (else by the step cap)
    logits: torch.Tensor | None = None  # (steps, V) raw ar_predict_layer outputs, with record=True
    hidden: torch.Tensor | None = None  # (steps, C) inputs of ar_predict_layer, with record=True


@dataclass
class _Run:
    generated: torch.Tensor  # (steps,) every sampled token, the stopping step's included
    eos: bool
    logits: torch.Tensor | None
    hidden: torch.Tensor | None


class Text2SemanticDecoder(nn.Module):
    """Phones + BERT features + prompt codes -> semantic codes; `generate` is the entry point."""

    def __init__(self, config: T2SConfig):
        super().__init__()
        self.config = config
        C = config.hidden_dim
        self.bert_proj = nn.Linear(BERT_DIM, C)
        self.ar_text_embedding = TokenEmbedding(config.phoneme_vocab_size, C)
        self.ar_text_position = SinePositionalEmbedding(C)
        self.ar_audio_embedding = TokenEmbedding(config.vocab_size, C)
        self.ar_audio_position = SinePositionalEmbedding(C)
        self.h = Transformer(config)
        self.ar_predict_layer = nn.Linear(C, config.vocab_size, bias=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.bert_proj.weight.dtype

    def step_kind(self) -> str:
        """How one-token steps multiply (StepWeights): what `quantize_int8` chose, else by precision."""
        kind = getattr(self, "_step_kind", None)
        if kind is None:
            cpu = self.bert_proj.weight.device.type == "cpu"
            packed = (  # oneDNN's bf16 kernels need AVX-512 (elsewhere F.linear's own bf16 path is the only one)
                cpu and self.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            )
            kind = "packed" if packed else "linear"
        return kind

    def quantize_int8(self) -> Text2SemanticDecoder:
        """Make one-row decoding steps use weight-only int8 projections (CPU; stated tolerance in README and
        tests/gptsovits/test_reduced_precision.py). The module's own weights stay for prefill and big steps."""
        if self.bert_proj.weight.device.type != "cpu":
            raise ValueError("int8 decoding steps run on the CPU only")
        self._step_kind = "int8"
        self._step_weights = None
        return self

    def prepare_steps(self) -> int:
        """Build the decoding steps' weights now rather than on the first step; returns the bytes they hold
        beyond the module's own (what a memory budget must count)."""
        return sum(weights.extra_bytes for weights in self._layer_steps())

    def _layer_steps(self) -> list[StepWeights]:
        """Each layer's projections in the step kind's form, prepared on the first step (after loading)."""
        weights = getattr(self, "_step_weights", None)
        if weights is None:
            kind = self.step_kind()
            weights = [
                StepWeights(kind, [
                    (layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias),
                    (layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias),
                    (layer.linear1.weight, layer.linear1.bias),
                    (layer.linear2.weight, layer.linear2.bias),
                ])
                for layer in self.h.layers
            ]
            self._step_weights = weights
        return weights

    def step(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new position per row: x (b, C) -> hidden (b, C), its keys and values appended to the cache.

        Fewer than FEW_ROWS rows: the transformer's arithmetic for T = 1 written for one query, attention by two
        small matrix products instead of scaled_dot_product_attention (whose per-call cost exceeds its work
        here) and the projections through StepWeights. More rows: the transformer's own forward.
        """
        b, C = x.shape
        cache.reserve(1)
        attend = cache.attend(1)  # (b, 1, 1, n + 1) or None
        if b >= FEW_ROWS:  # matrix products at full width, and SDPA's batched kernel
            return self.h(x[:, None], attend, cache)[:, -1]
        H = self.config.head
        hd = C // H
        n = cache.length
        for i, (layer, project) in enumerate(zip(self.h.layers, self._layer_steps(), strict=True)):
            qkv = project(0, x).view(b, 3, H, hd)
            cache.kv[i, :, :, :, n] = qkv[:, 1:].transpose(0, 1)  # (2, b, H, hd)
            keys = cache.kv[i, 0, :, :, : n + 1]  # (b, H, S, hd)
            values = cache.kv[i, 1, :, :, : n + 1]
            scores = torch.matmul(qkv[:, 0].unsqueeze(2), keys.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
            if attend is not None:
                scores = scores.masked_fill(~attend, float("-inf"))  # (b, H, 1, S)
            y = torch.matmul(scores.softmax(-1), values).view(b, C)  # (b, C)
            x = layer.norm1(x + project(1, y))
            x = layer.norm2(x + project(3, F.relu(project(2, x))))
        cache.length += 1
        return x

    # -- inputs ----------------------------------------------------------------------------------------------

    def embed_text(self, phones: torch.Tensor, bert: torch.Tensor) -> torch.Tensor:
        """phones (T,) and BERT features (1024, T) -> text stream (T, C), positions from 0."""
        if bert.shape != (BERT_DIM, phones.numel()):
            raise ValueError(f"bert must be ({BERT_DIM}, {phones.numel()}), got {tuple(bert.shape)}")
        x = self.ar_text_embedding(phones) + self.bert_proj(bert.t().to(self.dtype))  # (T, C)
        return self.ar_text_position(x)

    def embed_audio(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Semantic tokens (B, T) at audio positions start.. -> (B, T, C)."""
        return self.ar_audio_position(self.ar_audio_embedding(tokens), start)

    def prefill_inputs(
        self, phones: list[torch.Tensor], bert: list[torch.Tensor], prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[text ; prompt codes] of every item, text left-padded with zeros to the longest.

        Returns xy (B, X + P, C), attend (B, 1, S, S) with True = may attend, and real (B, S) (False on
        padding). Text rows see the text only, audio rows see all text and the audio causally; nobody sees
        padding, and padding rows see their item's text (so that no softmax row is empty).
        """
        lens = [p.numel() for p in phones]
        B, X, P = len(phones), max(lens), prompt.numel()
        S = X + P
        xy = torch.zeros(B, S, self.config.hidden_dim, dtype=self.dtype, device=prompt.device)  # (B, S, C)
        for b, (p, f) in enumerate(zip(phones, bert, strict=True)):
            xy[b, X - lens[b] : X] = self.embed_text(p, f)  # each item's PE over its own length
        xy[:, X:] = self.embed_audio(prompt[None], 0)  # (1, P, C), shared by all items

        i = torch.arange(S, device=prompt.device)
        causal = i[None, :] <= i[:, None]  # (S, S): audio row r sees columns <= r, all text included
        attend = torch.where(i[:, None] < X, (i < X)[None, :], causal)  # (S, S)
        pad = torch.tensor([X - n for n in lens], device=prompt.device)  # (B,)
        real = i[None, :] >= pad[:, None]  # (B, S)
        attend = attend[None] & real[:, None, :]  # (B, S, S)
        return xy, attend[:, None], real

    # -- transformer -----------------------------------------------------------------------------------------

    def forward(self, xy: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        """Full recompute without a cache: xy (B, S, C) -> hidden states (B, S, C)."""
        return self.h(xy, attend)

    # -- decoding --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        phones: list[torch.Tensor],
        bert: list[torch.Tensor],
        prompt: torch.Tensor | None,
        *,
        top_k: int = 15,
        top_p: float = 1.0,
        temperature: float = 1.0,
        repetition_penalty: float = 1.35,
        max_steps: int = MAX_STEPS,
        mode: str = "batched",
        generator: torch.Generator | list[torch.Generator] | None = None,
        record: bool = False,
        allow_eos: bool = True,
    ) -> list[Generation]:
        """Decode semantic codes for several texts in one voice.

        phones[i] (T_i,) are prompt-text + target phone ids, bert[i] (1024, T_i) their BERT features, prompt
        (P,) the reference clip's semantic codes (None or empty: reference-free, which the official code only
        runs on the naive path). max_steps caps the decoding steps; it is official early_stop_num + 1,
        at most 1500. mode "batched" is api_v2's parallel_infer path, "naive" one item at a time (webui);
        their kept tokens differ when the cap stops a run (see the module docstring). record keeps the raw
        logits and hidden states of every step. generator may be one per item (a list), so each item samples
        the same codes in any batch. allow_eos=False masks EOS at every step (benchmarks: fixed length).
        """
        if mode not in ("batched", "naive"):
            raise ValueError(f"mode must be 'batched' or 'naive', got {mode!r}")
        if len(phones) != len(bert) or not phones:
            raise ValueError("need one bert feature matrix per phone sequence, and at least one")
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        if not 1 <= max_steps <= MAX_STEPS:
            raise ValueError(f"max_steps must be in 1..{MAX_STEPS}")
        if isinstance(generator, list) and len(generator) != len(phones):
            raise ValueError("need one generator per item when passing a list")
        device = self.bert_proj.weight.device
        ref_free = prompt is None or prompt.numel() == 0
        prompt = torch.zeros(0, dtype=torch.long, device=device) if ref_free else prompt.to(device).long()
        phones = [p.to(device).long() for p in phones]
        bert = [f.to(device) for f in bert]
        sampling = dict(
            top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty,
            allow_eos=allow_eos,
        )

        if mode == "naive" or ref_free:
            runs = [
                self._decode([p], [f], prompt, max_steps, sampling, [generator[i]] if isinstance(generator, list) else generator, record)[0]
                for i, (p, f) in enumerate(zip(phones, bert, strict=True))
            ]
        else:
            runs = self._decode(phones, bert, prompt, max_steps, sampling, generator, record)
        return [self._as_official(run, prompt, mode, ref_free) for run in runs]

    def _decode(
        self,
        phones: list[torch.Tensor],
        bert: list[torch.Tensor],
        prompt: torch.Tensor,
        max_steps: int,
        sampling: dict,
        generator: torch.Generator | list[torch.Generator] | None,
        record: bool,
    ) -> list[_Run]:
        """Decode all items as one batch; each row stops on its own and leaves the batch."""
        steps = self._decode_steps(phones, bert, prompt, max_steps, sampling, generator, record)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    @torch.inference_mode()
    def stream(
        self,
        phones: torch.Tensor,
        bert: torch.Tensor,
        prompt: torch.Tensor,
        *,
        top_k: int = 15,
        top_p: float = 1.0,
        temperature: float = 1.0,
        repetition_penalty: float = 1.35,
        max_steps: int = MAX_STEPS,
        generator: torch.Generator | None = None,
        allow_eos: bool = True,
    ) -> Iterator[int]:
        """One item's kept semantic codes, each yielded as soon as it is certain: the same codes, in the same
        order, as `generate([phones], [bert], prompt, mode="batched", generator=[generator])[0].tokens`.

        The batched path drops the token of the step that stops, so every token sampled by a step that does
        not stop is kept, and is yielded at once. Needs a prompt (reference-free decoding keeps every token, on the naive path: use `generate`).
        """
        if prompt is None or prompt.numel() == 0:
            raise ValueError("streaming needs the reference's prompt codes")
        if not 1 <= max_steps <= MAX_STEPS:
            raise ValueError(f"max_steps must be in 1..{MAX_STEPS}")
        device = self.bert_proj.weight.device
        sampling = dict(
            top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty,
            allow_eos=allow_eos,
        )
        steps = self._decode_steps(
            [phones.to(device).long()], [bert.to(device)], prompt.to(device).long(), max_steps, sampling,
            generator, False,
        )
        for token in steps:  # the stopping step's token is never yielded: the batched path drops it
            if token.numel():
                yield int(token[0])

    def _decode_steps(
        self,
        phones: list[torch.Tensor],
        bert: list[torch.Tensor],
        prompt: torch.Tensor,
        max_steps: int,
        sampling: dict,
        generator: torch.Generator | list[torch.Generator] | None,
        record: bool,
    ) -> Generator[torch.Tensor, None, list[_Run]]:
        """`_decode` one step at a time: yields each step's sampled tokens (b,) of the rows still decoding
        after it (empty once every row has stopped), and returns the runs."""
        cfg = self.config
        xy, attend, real = self.prefill_inputs(phones, bert, prompt)  # (B, S, C), (B, 1, S, S), (B, S)
        B, S, _ = xy.shape
        P = prompt.numel()
        cache = KVCache(cfg, real, S + min(max_steps, CACHE_CHUNK), self.dtype)
        seen = torch.zeros(B, cfg.vocab_size, dtype=torch.bool, device=xy.device)  # (B, V) for the penalty
        seen[:, prompt] = True
        generated = torch.empty(B, max_steps, dtype=torch.long, device=xy.device)  # (B, steps)
        rows = list(range(B))  # original item index of each live row
        runs: list[_Run | None] = [None] * B
        logits_log: list[list[torch.Tensor]] = [[] for _ in range(B)]
        hidden_log: list[list[torch.Tensor]] = [[] for _ in range(B)]

        h = self.h(xy, None if bool(attend.all()) else attend, cache)[:, -1]  # (B, C)
        for t in range(max_steps):
            raw = self.ar_predict_layer(h).float()  # (b, V)
            if record:
                for r, item in enumerate(rows):
                    logits_log[item].append(raw[r])
                    hidden_log[item].append(h[r].float())
            no_eos = t < MIN_STEPS_BEFORE_EOS or not sampling["allow_eos"]
            logits = raw[:, :-1] if no_eos else raw  # (b, V') no EOS yet
            logits = apply_repetition_penalty(logits, seen, sampling["repetition_penalty"])
            probs = logits_to_probs(
                logits, top_k=sampling["top_k"], top_p=sampling["top_p"], temperature=sampling["temperature"]
            )  # (b, V')
            token = sample(probs, generator)  # (b,)
            generated[:, t] = token
            eos = (logits.argmax(dim=-1) == cfg.eos) | (token == cfg.eos)  # (b,)
            done = eos | (t == max_steps - 1)
            if bool(done.any()):
                for r in done.nonzero()[:, 0].tolist():
                    item = rows[r]
                    runs[item] = _Run(
                        generated=generated[r, : t + 1].clone(),
                        eos=bool(eos[r]),
                        logits=torch.stack(logits_log[item]) if record else None,
                        hidden=torch.stack(hidden_log[item]) if record else None,
                    )
                keep = (~done).nonzero()[:, 0]  # (b',)
                if keep.numel() == 0:
                    yield token[:0]
                    break
                if isinstance(generator, list):
                    generator = [generator[r] for r in keep.tolist()]
                rows = [rows[r] for r in keep.tolist()]
                generated, seen, token = generated[keep], seen[keep], token[keep]
                cache.keep(keep)
            yield token
            seen.scatter_(1, token[:, None], True)
            x = self.embed_audio(token[:, None], P + t)  # (b, 1, C)
            h = self.step(x[:, 0], cache)  # (b, C)
        return runs  # type: ignore[return-value]

    @staticmethod
    def _as_official(run: _Run, prompt: torch.Tensor, mode: str, ref_free: bool) -> Generation:
        """Apply the official return conventions of the chosen path, and TTS's y[-idx:] slicing."""
        gen = run.generated
        if run.eos or mode == "batched":  # EOS stops drop the EOS step's token; the batched path always does
            gen = gen[:-1]
        y = torch.cat([prompt, gen])
        if ref_free:
            idx, tokens = 0, gen  # official ref-free yields idx 0, and TTS's y[-0:] keeps everything
        else:
            idx = run.generated.numel() - 1
            tokens = y[y.numel() - idx :]  # y[-idx:]; empty (not the prompt) when max_steps is 1
        return Generation(tokens=tokens, y=y, idx=idx, eos=run.eos, logits=run.logits, hidden=run.hidden)


# ----------------------------------------------------------------------------------------------------------
# conformance with the official reference vectors


def t2s_conformance(model: Text2SemanticDecoder, v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recompute, from the inputs stored in the reference vectors.npz, every GPT-side array it defines (CPU)."""
    T = torch.from_numpy
    n_items = 3
    prompt = T(v["prompt_semantic"])
    phones = [torch.cat([T(v["prompt_phones"]), T(v[f"text_phones_{i}"])]) for i in range(n_items)]
    bert = [torch.cat([T(v["prompt_bert"]), T(v[f"text_bert_{i}"])], dim=1) for i in range(n_items)]
    greedy = dict(top_k=1, top_p=1.0, temperature=1.0, repetition_penalty=1.35, max_steps=60)
    greedy["generator"] = torch.Generator().manual_seed(
        0
    )  # greedy draws still consume noise: not the global RNG
    out: dict[str, np.ndarray] = {f"all_phones_{i}": phones[i].numpy() for i in range(n_items)}

    (single,) = model.generate(phones[:1], bert[:1], prompt, mode="naive", record=True, **greedy)
    out["gpt_tokens_naive"] = single.y[prompt.numel() :].numpy()
    out["gpt_idx_naive"] = np.array(single.idx)
    out["gpt_logits_raw"] = single.logits.numpy()
    out["gpt_hidden_last"] = single.hidden.numpy()
    out["gpt_tokens_tts_kept"] = single.tokens.numpy()

    sampled_kw = dict(top_k=15, top_p=0.9, temperature=0.8, repetition_penalty=1.2)
    generator = torch.Generator().manual_seed(1)  # the draws of seed_all(1) on the CPU default generator
    (sampled,) = model.generate(
        phones[:1], bert[:1], prompt, mode="naive", max_steps=60, generator=generator, **sampled_kw
    )
    out["gpt_tokens_sampled"] = sampled.y[prompt.numel() :].numpy()
    out["gpt_idx_sampled"] = np.array(sampled.idx)
    out["gpt_probs_sampled"] = _teacher_forced_probs(
        model, phones[0], bert[0], prompt, T(v["gpt_tokens_sampled"]), **sampled_kw
    )

    with torch.inference_mode():
        xy, attend, _ = model.prefill_inputs(phones, bert, prompt)
    lens = [p.numel() for p in phones]
    X = max(lens)
    out["batch_x_lens"] = np.array(lens)
    out["batch_max_len"] = np.array(X)
    out["batch_phones_leftpad"] = np.stack(
        [np.pad(p.numpy(), (X - p.numel(), 0), constant_values=-1) for p in phones]
    )
    out["batch_xy_pos"] = xy.float().numpy()
    out["batch_attn_mask"] = (~attend[:, 0]).numpy()

    batched = model.generate(phones, bert, prompt, mode="batched", record=True, **greedy)
    logits = np.full((greedy["max_steps"], n_items, model.config.vocab_size), np.nan, dtype=np.float32)
    for i, g in enumerate(batched):
        logits[: g.logits.shape[0], i] = g.logits.numpy()
        out[f"batch_y_{i}"] = g.y.numpy()
        out[f"batch_tokens_tts_kept_{i}"] = g.tokens.numpy()
    out["batch_logits_raw"] = logits
    out["batch_idx"] = np.array([g.idx for g in batched])

    naive = model.generate(phones, bert, prompt, mode="naive", **greedy)
    for i, g in enumerate(naive):
        out[f"naive_y_{i}"] = g.y.numpy()
        out[f"naive_tokens_tts_kept_{i}"] = g.tokens.numpy()
    out["naive_idx"] = np.array([g.idx for g in naive])
    return out


@torch.inference_mode()
def _teacher_forced_probs(
    model: Text2SemanticDecoder,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor,
    forced: torch.Tensor,
    *,
    top_k: int,
    top_p: float,
    temperature: float,
    repetition_penalty: float,
) -> np.ndarray:
    """Per-step sampling probabilities (steps, V) given the tokens actually drawn, by one uncached pass.

    Steps before MIN_STEPS_BEFORE_EOS get a 0 EOS column, as in the reference vectors.
    """
    n = forced.numel()
    xy, attend, _ = model.prefill_inputs([phones], [bert], torch.cat([prompt, forced[:-1]]))
    h = model(xy, attend)[0, -n:]  # (n, C): the state that predicts each forced token
    raw = model.ar_predict_layer(h).float()  # (n, V)
    seen = torch.zeros(1, model.config.vocab_size, dtype=torch.bool)
    seen[0, prompt] = True
    probs = torch.zeros(n, model.config.vocab_size)
    for t in range(n):
        logits = raw[t : t + 1, :-1] if t < MIN_STEPS_BEFORE_EOS else raw[t : t + 1]
        logits = apply_repetition_penalty(logits, seen, repetition_penalty)
        p = logits_to_probs(logits, top_k=top_k, top_p=top_p, temperature=temperature)  # (1, V')
        probs[t, : p.size(1)] = p[0]
        seen[0, forced[t]] = True
    return probs.numpy()
