"""Fine-tuning of a GPT-SoVITS v2 SoVITS voice (the official GPT_SoVITS/s2_train.py), in plain PyTorch.

Re-implements one training iteration of the official code (RVC-Boss/GPT-SoVITS at 48b1a01, s2_train.py:381-449
and module/models.py:934-970) on top of the inference modules of sovits.py: the train-mode forward with
padding masks and dropout, the posterior encoder enc_q that only training needs, the discriminator step and
the generator step with the official losses, AdamW and the per-epoch ExponentialLR. Hand-written because
the official trainer is tied to Lightning-free but global-state scripts, librosa and its own file layout;
this one is a small object whose every random draw can be replayed, so that the official training vectors
(../shared/gptsovits-train) check it number for number.

    spec (B, 1025, T) --ref_enc[:704] (dropout)--> ge (B, 512, 1)
    ssl (B, 768, T) --ssl_proj, quantizer (eval, frozen)--> x2 nearest --enc_p (dropout)--> m_p, logs_p
    spec --enc_q (g = ge.detach())--> z = m_q + noise * exp(logs_q) --flow--> z_p      (KL(z_p; m_p, logs_p))
    z --random 32-frame slice--> dec --> y_hat (B, 1, 20480)   (mel L1 x 45, LSGAN + feature matching vs D)
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthesis.frontend.symbols import phone_ids
from synthesis.gptsovits.checkpoint import read_checkpoint, sovits_state, sovits_version
from synthesis.gptsovits.discriminator import (
    MultiPeriodDiscriminator,
    discriminator_loss,
    feature_loss,
    generator_loss,
)
from synthesis.gptsovits.discriminator import (
    discriminator_width as discriminator_width_of,
)
from synthesis.gptsovits.mel import mel_spectrogram, slaney_mel_basis, spec_to_mel
from synthesis.gptsovits.sovits import REF_BINS_V2, SoVITSConfig, SynthesizerTrn, spectrogram
from synthesis.gptsovits.sovits_modules import (
    WN,
    Encoder,
    MelStyleEncoder,
    MultiHeadAttention,
    ResidualCouplingBlock,
    TextEncoder,
)

STYLE_DROPOUT = 0.1  # MelStyleEncoder's dropout is hard-coded in the official module
POSTERIOR_KERNEL, POSTERIOR_LAYERS = 5, 16  # models.py:900: PosteriorEncoder(spec, inter, hidden, 5, 1, 16)
MASK_FILL = -1e4  # attentions.py fills masked scores with -1e4, not -inf


@dataclass(frozen=True)
class TrainConfig:
    """s2.json "train" defaults (webui: text_low_lr_rate 0.4, 8 SoVITS epochs); fp16 is used on CUDA only."""

    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.999875
    segment_size: int = 20480
    c_mel: float = 45.0
    c_kl: float = 1.0
    text_low_lr_rate: float = 0.4
    batch_size: int = 32
    epochs: int = 8
    fp16: bool = True
    n_mel_channels: int = 128
    mel_fmin: float = 0.0
    mel_fmax: float | None = None


# -----------------------------------------------------------------------------
# random draws


class Draws:
    """The forward's random draws (dropout keep-masks in draw order, enc_q noise, slice starts) from torch."""

    def dropout(self, x: Tensor, p: float) -> Tensor:
        return F.dropout(x, p, training=True)

    def randn_like(self, x: Tensor) -> Tensor:
        return torch.randn_like(x)

    def rand(self, n: int, device: torch.device) -> Tensor:
        return torch.rand([n]).to(device=device)  # drawn on the CPU generator, as commons.rand_slice_segments


class ReplayDraws(Draws):
    """Draws taken from recorded arrays: keep-masks `masks` in order, then `noise_q` and `slice_rand`."""

    def __init__(self, masks: Sequence[Tensor], noise_q: Tensor, slice_rand: Tensor) -> None:
        self.masks: Iterator[Tensor] = iter(masks)
        self.noise_q, self.slice_rand = noise_q, slice_rand

    def dropout(self, x: Tensor, p: float) -> Tensor:
        mask = next(self.masks)
        if mask.shape != x.shape:
            raise ValueError(f"recorded dropout mask {tuple(mask.shape)} does not fit {tuple(x.shape)}")
        # scale first, then multiply: what the official CPU dropout computes (bernoulli_, div_, mul)
        return x * (mask.to(device=x.device, dtype=x.dtype) / (1 - p))

    def randn_like(self, x: Tensor) -> Tensor:
        return self.noise_q.to(device=x.device, dtype=x.dtype)

    def rand(self, n: int, device: torch.device) -> Tensor:
        return self.slice_rand.to(device)


# -----------------------------------------------------------------------------
# train-mode forward of the inference modules (padding masks + dropout), official computation order


def sequence_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) -> (B, max_len) bool, True inside each sequence."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _attention(
    attn: MultiHeadAttention, x: Tensor, c: Tensor, mask: Tensor, draws: Draws, p: float
) -> Tensor:
    """attentions.MultiHeadAttention.forward with a (B, 1, Tq, Tk) mask and dropout on the weights."""
    q, k, v = attn.conv_q(x), attn.conv_k(c), attn.conv_v(c)  # (B, C, T)
    B, C, Tq = q.shape
    Tk = k.size(2)
    nh, hd = attn.n_heads, attn.head_dim
    q = q.view(B, nh, hd, Tq).transpose(2, 3) / math.sqrt(hd)  # (B, nh, Tq, hd)
    k = k.view(B, nh, hd, Tk).transpose(2, 3)
    v = v.view(B, nh, hd, Tk).transpose(2, 3)
    scores = torch.matmul(q, k.transpose(-2, -1))  # (B, nh, Tq, Tk)
    if attn.window_size is not None:
        scores = scores + attn._relative_scores(q)
    scores = scores.masked_fill(mask == 0, MASK_FILL)
    weights = F.softmax(scores, dim=-1)
    if p > 0:
        weights = draws.dropout(weights, p)
    y = torch.matmul(weights, v)  # (B, nh, Tq, hd)
    if attn.window_size is not None:
        y = y + attn._relative_values(weights)
    return attn.conv_o(y.transpose(2, 3).contiguous().view(B, C, Tq))


def _encoder(enc: Encoder, x: Tensor, x_mask: Tensor, draws: Draws, p: float) -> Tensor:
    """attentions.Encoder.forward: post-norm layers, dropout after attention and after the FFN."""
    attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)  # (B, 1, T, T)
    x = x * x_mask
    for attn, norm_1, ffn, norm_2 in zip(
        enc.attn_layers, enc.norm_layers_1, enc.ffn_layers, enc.norm_layers_2, strict=True
    ):
        y = draws.dropout(_attention(attn, x, x, attn_mask, draws, p), p)
        x = norm_1(x + y)
        h = torch.relu(ffn.conv_1(F.pad(x * x_mask, ffn.padding)))  # (B, F, T)
        h = draws.dropout(h, p)
        y = ffn.conv_2(F.pad(h * x_mask, ffn.padding)) * x_mask
        x = norm_2(x + draws.dropout(y, p))
    return x * x_mask


def _text_encoder(
    enc: TextEncoder, y: Tensor, y_lengths: Tensor, text: Tensor, text_lengths: Tensor, ge: Tensor,
    draws: Draws, p: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """models.TextEncoder.forward (speed 1): x, m_p, logs_p (B, inter, T), y_mask (B, 1, T)."""
    y_mask = sequence_mask(y_lengths, y.size(2)).unsqueeze(1).to(y.dtype)  # (B, 1, T)
    y = enc.ssl_proj(y * y_mask) * y_mask  # (B, 192, T)
    y = _encoder(enc.encoder_ssl, y * y_mask, y_mask, draws, p)
    text_mask = sequence_mask(text_lengths, text.size(1)).unsqueeze(1).to(y.dtype)  # (B, 1, L)
    t = enc.text_embedding(text).transpose(1, 2)  # (B, 192, L)
    t = _encoder(enc.encoder_text, t * text_mask, text_mask, draws, p)
    mrte = enc.mrte
    cross_mask = text_mask.unsqueeze(2) * y_mask.unsqueeze(-1)  # (B, 1, T, L)
    content = mrte.c_pre(y * y_mask)  # (B, 512, T)
    t = mrte.text_pre(t * text_mask)  # (B, 512, L)
    y = _attention(mrte.cross_attention, content * y_mask, t * text_mask, cross_mask, draws, 0.0) + content + ge
    y = mrte.c_post(y * y_mask)  # (B, 192, T)
    y = _encoder(enc.encoder2, y * y_mask, y_mask, draws, p)
    m, logs = torch.split(enc.proj(y) * y_mask, enc.out_channels, dim=1)
    return y, m, logs, y_mask


def _mish(x: Tensor) -> Tensor:
    return x * torch.tanh(F.softplus(x))  # the official Mish module's formula


def _style_encoder(enc: MelStyleEncoder, x: Tensor, y_mask: Tensor, draws: Draws) -> Tensor:
    """modules.MelStyleEncoder.forward with a padding mask, train mode: (B, bins, T) -> ge (B, out, 1)."""
    p = STYLE_DROPOUT
    x = x.transpose(1, 2)  # (B, T, bins)
    pad = (y_mask.int() == 0).squeeze(1)  # (B, T), True on padding
    T = x.size(1)
    x = draws.dropout(_mish(enc.spectral[0](x)), p)
    x = draws.dropout(_mish(enc.spectral[3](x)), p)  # (B, T, H)
    x = x.transpose(1, 2)  # (B, H, T)
    for glu in enc.temporal:
        a, b = torch.split(glu.conv1(x), x.size(1), dim=1)
        x = x + draws.dropout(a * torch.sigmoid(b), p)
    x = x.transpose(1, 2).masked_fill(pad.unsqueeze(-1), 0)  # (B, T, H)
    # StyleAttention as the official modules.MultiHeadAttention: heads folded into the batch, head-major
    sa, nh = enc.slf_attn, enc.slf_attn.n_heads
    B, _, H = x.shape
    dk = H // nh
    q = sa.w_qs(x).view(B, T, nh, dk).permute(2, 0, 1, 3).contiguous().view(-1, T, dk)  # (nh*B, T, dk)
    k = sa.w_ks(x).view(B, T, nh, dk).permute(2, 0, 1, 3).contiguous().view(-1, T, dk)
    v = sa.w_vs(x).view(B, T, nh, dk).permute(2, 0, 1, 3).contiguous().view(-1, T, dk)
    scores = torch.bmm(q, k.transpose(1, 2)) / np.power(H, 0.5)  # (nh*B, T, T)
    key_pad = pad.unsqueeze(1).expand(-1, T, -1).repeat(nh, 1, 1)  # (nh*B, T, T)
    weights = draws.dropout(F.softmax(scores.masked_fill(key_pad, -np.inf), dim=2), p)
    y = torch.bmm(weights, v).view(nh, B, T, dk).permute(1, 2, 0, 3).contiguous().view(B, T, -1)  # (B, T, H)
    x = draws.dropout(sa.fc(y), p) + x
    x = enc.fc(x)  # (B, T, out)
    # masked temporal mean, dividing before summing as the official temporal_avg_pool
    length = (~pad).sum(dim=1).unsqueeze(1)  # (B, 1)
    x = x.masked_fill(pad.unsqueeze(-1), 0)
    w = torch.div(x.float(), length.unsqueeze(1)).sum(dim=1).to(x.dtype)  # (B, out)
    return w.unsqueeze(-1)


def _wn(wn: WN, x: Tensor, x_mask: Tensor, g: Tensor) -> Tensor:
    """modules.WN.forward with its mask (no dropout: p_dropout is 0 in the posterior encoder and the flow)."""
    C = wn.channels
    output = torch.zeros_like(x)
    g = wn.cond_layer(g)  # (B, 2C * n_layers, 1)
    last = len(wn.in_layers) - 1
    for i, (in_layer, res_skip) in enumerate(zip(wn.in_layers, wn.res_skip_layers, strict=True)):
        h = in_layer(x) + g[:, 2 * C * i : 2 * C * (i + 1)]  # (B, 2C, T)
        acts = res_skip(torch.tanh(h[:, :C]) * torch.sigmoid(h[:, C:]))
        if i < last:
            x = (x + acts[:, :C]) * x_mask
            output = output + acts[:, C:]
        else:
            output = output + acts
    return output * x_mask


def _flow(flow: ResidualCouplingBlock, x: Tensor, x_mask: Tensor, g: Tensor) -> Tensor:
    """ResidualCouplingBlock forward (training) direction, z -> z_p, with the mask."""
    for layer in flow.flows:
        if not hasattr(layer, "enc"):  # Flip
            x = torch.flip(x, [1])
            continue
        x0, x1 = torch.split(x, [layer.half] * 2, 1)
        h = _wn(layer.enc, layer.pre(x0) * x_mask, x_mask, g)
        m = layer.post(h) * x_mask
        x = torch.cat([x0, m + x1 * x_mask], 1)  # mean-only coupling: x1 * exp(0) * mask + m
    return x


class PosteriorEncoder(nn.Module):
    """enc_q: linear spectrogram -> posterior mean/log-std of z and a sample (training only)."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, gin_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, POSTERIOR_KERNEL, 1, POSTERIOR_LAYERS, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self, x: Tensor, x_lengths: Tensor, g: Tensor, draws: Draws
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = g.detach()  # the posterior does not train the reference encoder (models.py:362-363)
        x_mask = sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = _wn(self.enc, self.pre(x) * x_mask, x_mask, g)
        m, logs = torch.split(self.proj(h) * x_mask, self.out_channels, dim=1)  # (B, inter, T) each
        z = (m + draws.randn_like(m) * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask


def slice_segments(x: Tensor, starts: Tensor, size: int) -> Tensor:
    """(B, C, T) -> (B, C, size) windows starting at starts[b] (commons.slice_segments)."""
    return torch.stack([x[i, :, int(s) : int(s) + size] for i, s in enumerate(starts)])


# Child order of the official modules where ours registers children differently (named_parameters order).
_OFFICIAL_CHILD_ORDER = {
    "SynthesizerTrain": ("enc_p", "dec", "enc_q", "flow", "ref_enc", "ssl_proj", "quantizer"),
    "TextEncoder": ("ssl_proj", "encoder_ssl", "encoder_text", "text_embedding", "mrte", "encoder2", "proj"),
    "Generator": ("conv_pre", "ups", "resblocks", "conv_post", "cond"),
    "WN": ("in_layers", "res_skip_layers", "cond_layer"),
}
_WEIGHT_NORM_ORDER = ("bias", "weight_g", "weight_v")  # torch.nn.utils.weight_norm re-registers these last


class SynthesizerTrain(SynthesizerTrn):
    """The synthesizer with enc_q; state-dict keys equal the official training G's (models.SynthesizerTrn)."""

    def __init__(self, config: SoVITSConfig) -> None:
        super().__init__(config)
        if config.version != "v2":
            raise ValueError(f"fine-tuning supports v2 only, not {config.version}")
        c = config
        self.enc_q = PosteriorEncoder(c.spec_channels, c.inter_channels, c.hidden_channels, c.gin_channels)

    def official_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """named_parameters() in the official module's order (that of its optimizer and logs)."""

        def walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Parameter]]:
            own = {k: v for k, v in module._parameters.items() if v is not None}
            if "weight_g" in own:
                own = {k: own[k] for k in _WEIGHT_NORM_ORDER if k in own}
            for name, param in own.items():
                yield prefix + name, param
            children = dict(module._modules)
            order = _OFFICIAL_CHILD_ORDER.get(type(module).__name__)
            if order:
                children = {k: children[k] for k in order if k in children} | children
            for name, child in children.items():
                if child is not None:
                    yield from walk(child, f"{prefix}{name}.")

        return list(walk(self, ""))

    def forward(
        self,
        ssl: Tensor,
        spec: Tensor,
        spec_lengths: Tensor,
        text: Tensor,
        text_lengths: Tensor,
        draws: Draws,
        frames: int,
    ) -> dict[str, Tensor]:
        """models.SynthesizerTrn.forward (v2) on a random `frames`-frame segment: y_hat, ids_slice and the
        tensors the losses need."""
        p = self.config.p_dropout
        y_mask = sequence_mask(spec_lengths, spec.size(2)).unsqueeze(1).to(spec.dtype)  # (B, 1, T)
        ge = _style_encoder(self.ref_enc, spec[:, :REF_BINS_V2] * y_mask, y_mask, draws)  # (B, 512, 1)
        # ssl_proj and the quantizer are frozen in effect (eval, no straight-through): no gradient reaches them
        with torch.autocast(spec.device.type, enabled=False), torch.no_grad():
            projected = self.ssl_proj(ssl.float())  # (B, 768, T/2)
            codes = self.quantizer.encode(projected)  # (n_q, B, T/2)
            quantized_25 = self.quantizer.decode(codes)  # (B, 768, T/2)
        quantized = F.interpolate(quantized_25, size=quantized_25.size(-1) * 2, mode="nearest")  # (B, 768, T)
        x, m_p, logs_p, y_mask = _text_encoder(self.enc_p, quantized, spec_lengths, text, text_lengths, ge, draws, p)
        z, m_q, logs_q, _ = self.enc_q(spec, spec_lengths, ge, draws)
        z_p = _flow(self.flow, z, y_mask, ge)
        ids_slice = (draws.rand(z.size(0), z.device) * (spec_lengths - frames + 1)).to(dtype=torch.long)
        z_slice = slice_segments(z, ids_slice, frames)  # (B, inter, frames)
        y_hat = self.dec(z_slice, ge)  # (B, 1, segment_size)
        return dict(
            y_hat=y_hat, ids_slice=ids_slice, y_mask=y_mask, z=z, z_p=z_p, m_p=m_p, logs_p=logs_p, m_q=m_q,
            logs_q=logs_q, ge=ge, quantized=quantized_25, codes=codes, x_p=x, z_slice=z_slice,
            kl_ssl=torch.zeros((), device=spec.device),  # the eval-mode quantizer's commit loss is 0
        )


def kl_loss(z_p: Tensor, logs_q: Tensor, m_p: Tensor, logs_p: Tensor, z_mask: Tensor) -> Tensor:
    """KL(q || p) per unmasked element, losses.kl_loss."""
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5
    kl = kl + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


def grad_norm(parameters: Sequence[nn.Parameter]) -> float:
    """Total 2-norm of the gradients (commons.clip_grad_value_ with clip None: a float64 sum of squares)."""
    total = 0.0
    for param in parameters:
        if param.grad is not None:
            total += param.grad.data.norm(2).item() ** 2
    return total**0.5


# -----------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class SoVITSItem:
    """One training utterance: v2 phone ids (L,), HuBERT features (1, 768, T50), 32 kHz wave (N,)."""

    phone_ids: Tensor
    ssl: Tensor
    wav: Tensor


@dataclass(frozen=True)
class SoVITSBatch:
    """A collated batch, sorted by spectrogram length, descending (TextAudioSpeakerCollate)."""

    ssl: Tensor  # (B, 768, T) float32
    ssl_lengths: Tensor  # (B,)
    spec: Tensor  # (B, 1025, T)
    spec_lengths: Tensor  # (B,)
    y: Tensor  # (B, 1, N)
    y_lengths: Tensor  # (B,)
    text: Tensor  # (B, L) int64
    text_lengths: Tensor  # (B,)
    order: Tensor  # (B,) batch index -> item index

    def to(self, device: str | torch.device) -> SoVITSBatch:
        values = {k: getattr(self, k).to(device) for k in self.__dataclass_fields__}
        return SoVITSBatch(**values)


def collate(items: Sequence[SoVITSItem], config: SoVITSConfig | None = None) -> SoVITSBatch:
    """TextAudioSpeakerLoader + TextAudioSpeakerCollate (v2): spectrograms from the waves, padded batch."""
    c = config or SoVITSConfig()
    specs, ssls = [], []
    for item in items:
        spec = spectrogram(item.wav.float()[None], c.filter_length, c.hop_length, c.win_length)[0]  # (F, T)
        ssl = item.ssl.float()
        if ssl.size(-1) != spec.size(-1):  # cnhubert is often one frame short: one replicate frame (official)
            ssl = F.pad(ssl, (0, 1), mode="replicate")
        specs.append(spec)
        ssls.append(ssl)
    order = torch.sort(torch.tensor([s.size(1) for s in specs]), dim=0, descending=True, stable=True)[1]
    n = len(items)
    max_spec = 2 * (max(s.size(1) for s in specs) // 2 + 1)
    max_ssl = 2 * (max(s.size(2) for s in ssls) // 2 + 1)
    max_wav = max(item.wav.numel() for item in items)
    max_text = max(item.phone_ids.numel() for item in items)
    batch = dict(
        ssl=torch.zeros(n, ssls[0].size(1), max_ssl),
        spec=torch.zeros(n, specs[0].size(0), max_spec),
        y=torch.zeros(n, 1, max_wav),
        text=torch.zeros(n, max_text, dtype=torch.long),
    )
    lengths = {k: torch.zeros(n, dtype=torch.long) for k in ("ssl_lengths", "spec_lengths", "y_lengths",
                                                              "text_lengths")}
    for i, j in enumerate(order.tolist()):
        item = items[j]
        batch["ssl"][i, :, : ssls[j].size(2)] = ssls[j][0]
        batch["spec"][i, :, : specs[j].size(1)] = specs[j]
        batch["y"][i, 0, : item.wav.numel()] = item.wav.float()
        batch["text"][i, : item.phone_ids.numel()] = item.phone_ids
        lengths["ssl_lengths"][i] = ssls[j].size(2)
        lengths["spec_lengths"][i] = specs[j].size(1)
        lengths["y_lengths"][i] = item.wav.numel()
        lengths["text_lengths"][i] = item.phone_ids.numel()
    return SoVITSBatch(**batch, **lengths, order=order)


# -----------------------------------------------------------------------------
# trainer


class SoVITSTrainer:
    """G + D with their AdamW optimizers and ExponentialLR schedules, stepped as s2_train.py does."""

    def __init__(
        self,
        config: SoVITSConfig,
        train: TrainConfig,
        generator_state: Mapping[str, Tensor],
        discriminator_state: Mapping[str, Tensor] | None,
        *,
        device: str | torch.device = "cpu",
        seed: int = 1234,
        discriminator_width: int | None = None,
    ) -> None:
        self.config, self.train = config, train
        self.device = torch.device(device)
        torch.manual_seed(seed)
        # D right after the seed: without a state it gets the official initial weights of that seed. Its width
        # follows the state (narrow random test models), else the argument, else the official width.
        if discriminator_state is not None:
            discriminator_width = discriminator_width_of(discriminator_state)
        self.net_d = MultiPeriodDiscriminator(width=discriminator_width or 1)
        self.net_g = SynthesizerTrain(config)
        g_state = {k: v.float() for k, v in generator_state.items()}
        missing, unexpected = self.net_g.load_state_dict(g_state, strict=False)
        # like s2_train's strict=False pretrained load, only enc_q may be absent (it then keeps its init)
        if unexpected or any(not k.startswith("enc_q.") for k in missing):
            raise ValueError(f"generator state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if discriminator_state is not None:
            self.net_d.load_state_dict({k: v.float() for k, v in discriminator_state.items()})
        self.net_g.to(self.device).train()
        self.net_d.to(self.device).train()
        enc_p = self.net_g.enc_p
        low = [enc_p.text_embedding, enc_p.encoder_text, enc_p.mrte]
        low_ids = {id(p) for m in low for p in m.parameters()}
        base = [p for _, p in self.net_g.official_named_parameters() if id(p) not in low_ids]
        lr, low_lr = train.learning_rate, train.learning_rate * train.text_low_lr_rate
        self.optim_g = torch.optim.AdamW(
            [{"params": base, "lr": lr}, *({"params": list(m.parameters()), "lr": low_lr} for m in low)],
            lr, betas=train.betas, eps=train.eps,
        )
        self.optim_d = torch.optim.AdamW(self.net_d.parameters(), lr, betas=train.betas, eps=train.eps)
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=train.lr_decay)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=train.lr_decay)
        self.epoch, self.step = 1, 0
        # s2_train.py:278-280 steps both schedulers epoch_str (= 1) times before training
        with warnings.catch_warnings():  # "scheduler stepped before optimizer": intended here
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler_g.step()
            self.scheduler_d.step()
        self.amp = train.fp16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)

    def _autocast(self, enabled: bool = True) -> Any:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp and enabled)

    def train_step(self, batch: SoVITSBatch, draws: Draws | None = None) -> dict[str, float]:
        """One D step then one G step on `batch`; returns the logged losses and gradient norms."""
        r = self._step(batch.to(self.device), draws or Draws(), record=None)
        return {k: float(r[k]) for k in ("loss_disc", "loss_gen", "loss_fm", "loss_mel", "loss_kl", "kl_ssl",
                                          "loss_gen_all", "grad_norm_d", "grad_norm_g", "lr")}

    def _step(self, batch: SoVITSBatch, draws: Draws, record: dict[str, Any] | None) -> dict[str, Any]:
        c, t = self.config, self.train
        frames = t.segment_size // c.hop_length
        with self._autocast():
            out = self.net_g(batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths, draws, frames)
            mel = spec_to_mel(batch.spec, c.filter_length, t.n_mel_channels, c.sampling_rate, t.mel_fmin, t.mel_fmax)
            y_mel = slice_segments(mel, out["ids_slice"], frames)
            y_hat_mel = mel_spectrogram(
                out["y_hat"].squeeze(1).float(), c.filter_length, t.n_mel_channels, c.sampling_rate,
                c.hop_length, c.win_length, t.mel_fmin, t.mel_fmax,
            )
            y = slice_segments(batch.y, out["ids_slice"] * c.hop_length, t.segment_size)  # (B, 1, N)
            d_r1, d_g1, _, _ = self.net_d(y, out["y_hat"].detach())
            with self._autocast(enabled=False):
                loss_disc, losses_disc_r, losses_disc_g = discriminator_loss(d_r1, d_g1)
        self.optim_d.zero_grad()
        self.scaler.scale(loss_disc).backward()
        self.scaler.unscale_(self.optim_d)
        grad_norm_d = grad_norm(list(self.net_d.parameters()))
        if record is not None:
            record["d_before"] = {n: p.detach().clone() for n, p in self.net_d.named_parameters()}
            record["d_grads"] = {n: p.grad.detach().clone() for n, p in self.net_d.named_parameters()}
            record["lr_d"] = [g["lr"] for g in self.optim_d.param_groups]
        self.scaler.step(self.optim_d)
        if record is not None:
            record["d_after"] = {n: p.detach().clone() for n, p in self.net_d.named_parameters()}

        with self._autocast():
            d_r2, d_g2, fmap_r, fmap_g = self.net_d(y, out["y_hat"])
            with self._autocast(enabled=False):
                loss_mel = F.l1_loss(y_mel.float(), y_hat_mel.float()) * t.c_mel
                loss_kl = kl_loss(out["z_p"], out["logs_q"], out["m_p"], out["logs_p"], out["y_mask"]) * t.c_kl
                loss_fm = feature_loss(fmap_r, fmap_g)
                loss_gen, losses_gen = generator_loss(d_g2)
                loss_gen_all = loss_gen + loss_fm + loss_mel + out["kl_ssl"] * 1 + loss_kl
        self.optim_g.zero_grad()
        self.scaler.scale(loss_gen_all).backward()
        self.scaler.unscale_(self.optim_g)
        named_g = self.net_g.official_named_parameters()
        grad_norm_g = grad_norm([p for _, p in named_g])
        if record is not None:
            record["g_before"] = {n: p.detach().clone() for n, p in named_g}
            record["g_grads"] = {n: None if p.grad is None else p.grad.detach().clone() for n, p in named_g}
            record["lr_g"] = [g["lr"] for g in self.optim_g.param_groups]
        self.scaler.step(self.optim_g)
        self.scaler.update()
        self.step += 1
        if record is not None:
            record["g_after"] = {n: p.detach().clone() for n, p in named_g}
            record.update(out, mel=mel, y_mel=y_mel, y_hat_mel=y_hat_mel, y_slice=y, d_r1=d_r1, d_g1=d_g1,
                          d_r2=d_r2, d_g2=d_g2, fmap_r=fmap_r, fmap_g=fmap_g, losses_disc_r=losses_disc_r,
                          losses_disc_g=losses_disc_g, losses_gen=losses_gen)
        result = record if record is not None else {}
        result.update(
            loss_disc=loss_disc.detach(), loss_gen=loss_gen.detach(), loss_fm=loss_fm.detach(),
            loss_mel=loss_mel.detach(), loss_kl=loss_kl.detach(), kl_ssl=out["kl_ssl"].detach(),
            loss_gen_all=loss_gen_all.detach(), grad_norm_d=grad_norm_d, grad_norm_g=grad_norm_g,
            lr=self.optim_g.param_groups[0]["lr"],
        )
        return result

    def end_epoch(self) -> None:
        """Decay both learning rates by lr_decay, as s2_train.py does after every epoch."""
        self.scheduler_g.step()
        self.scheduler_d.step()
        self.epoch += 1

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; plain tensors and numbers (loads with weights_only=True)."""
        state = dict(
            net_g=self.net_g.state_dict(), net_d=self.net_d.state_dict(),
            optim_g=self.optim_g.state_dict(), optim_d=self.optim_d.state_dict(),
            scheduler_g=self.scheduler_g.state_dict(), scheduler_d=self.scheduler_d.state_dict(),
            scaler=self.scaler.state_dict(), epoch=self.epoch, step=self.step, rng=torch.get_rng_state(),
        )
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from state_dict()."""
        self.net_g.load_state_dict(state["net_g"])
        self.net_d.load_state_dict(state["net_d"])
        self.optim_g.load_state_dict(state["optim_g"])
        self.optim_d.load_state_dict(state["optim_d"])
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def inference_weights(self) -> dict[str, Tensor]:
        """The voice as the WebUI exports it (process_ckpt.savee): fp16, enc_q dropped, official keys."""
        return {k: v.detach().half().cpu() for k, v in self.net_g.state_dict().items() if "enc_q" not in k}


def save_sovits_weights(path: str | Path, weights: Mapping[str, Tensor], config: dict, info: str) -> None:
    """Write a v2 SoVITS voice as the official WebUI does (`savee`/`my_save`: a plain torch.save zip of
    {"weight", "config", "info"} whose archive folder is a time stamp), atomically: temp file, fsync, rename."""
    path = Path(path)
    payload = {"weight": {k: v.half() for k, v in weights.items()}, "config": config, "info": info}
    # torch.save names the zip's folder after the file's stem: official files carry "<time.time()>/data.pkl"
    tmp = path.parent / f"{time.time()}.pth"
    while tmp.exists():
        tmp = path.parent / f"{time.time()}.pth"
    try:
        torch.save(payload, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -----------------------------------------------------------------------------
# conformance against the official training vectors (../shared/gptsovits-train/s2_vectors.npz)


def _flat(name: str) -> str:
    return name.replace(".", "_")


def sovits_train_conformance(
    sovits_path: Path, enc_q_path: Path, vectors: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Rebuild G (sovits.pth + enc_q file) and D (seed 1234), replay the recorded draws through one official
    iteration and return every computed array of s2_vectors.npz under its name."""
    checkpoint = read_checkpoint(sovits_path, kind="sovits")
    config = SoVITSConfig.from_checkpoint(checkpoint.config, version=sovits_version(checkpoint))
    g_state = dict(sovits_state(checkpoint))
    g_state.update(read_checkpoint(enc_q_path, kind="sovits").weights)
    v = vectors
    out: dict[str, np.ndarray] = {}
    items = []
    for i in range(2):
        ids = np.asarray(phone_ids(str(p) for p in v[f"item{i}_phones"]), dtype=np.int64)
        out[f"item{i}_phone_ids"] = ids
        items.append(SoVITSItem(torch.from_numpy(ids), torch.from_numpy(v[f"item{i}_ssl_file"]),
                                torch.from_numpy(v[f"item{i}_wav"])))
    batch = collate(items, config)
    out["collate_order"] = batch.order.numpy()
    for name in ("ssl", "ssl_lengths", "spec", "spec_lengths", "y", "y_lengths", "text", "text_lengths"):
        out[name] = getattr(batch, name).numpy()
    train = TrainConfig(fp16=False)
    out["mel_basis"] = np.asarray(slaney_mel_basis(config.sampling_rate, config.filter_length,
                                                   train.n_mel_channels, train.mel_fmin, train.mel_fmax))
    trainer = SoVITSTrainer(config, train, g_state, None, seed=1234)
    n_masks = len([k for k in v if k.startswith("drop_")])
    draws = ReplayDraws([torch.from_numpy(v[f"drop_{i:02d}"]) for i in range(n_masks)],
                        torch.from_numpy(v["noise_q"]), torch.from_numpy(v["slice_rand"]))
    r = trainer._step(batch, draws, record={})

    def arr(t: Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    for name in ("y_hat", "ids_slice", "y_mask", "z", "z_p", "m_p", "logs_p", "m_q", "logs_q", "ge",
                 "quantized", "codes", "x_p", "z_slice", "mel", "y_mel", "y_hat_mel", "y_slice", "loss_disc",
                 "loss_gen", "loss_fm", "loss_mel", "loss_kl", "loss_gen_all", "kl_ssl"):
        out[name] = arr(r[name])
    for name in ("losses_disc_r", "losses_disc_g", "losses_gen"):
        out[name] = np.array([float(t.detach()) for t in r[name]], dtype=np.float64)
    out["grad_norm_d"] = np.float64(r["grad_norm_d"])
    out["grad_norm_g"] = np.float64(r["grad_norm_g"])
    for k in range(len(r["d_r1"])):
        for tag, key in (("d1_r", "d_r1"), ("d1_g", "d_g1"), ("d2_r", "d_r2"), ("d2_g", "d_g2")):
            out[f"{tag}_{k}"] = arr(r[key][k])
    maps_r = [m.detach() for d in r["fmap_r"] for m in d]
    maps_g = [m.detach() for d in r["fmap_g"] for m in d]
    out["fm_terms"] = np.array([float(torch.mean(torch.abs(a - b)).detach()) for a, b in zip(maps_r, maps_g, strict=True)])
    out["fmap_r_mean"] = np.array([float(m.double().mean()) for m in maps_r])
    out["fmap_g_mean"] = np.array([float(m.double().mean()) for m in maps_g])
    out["fmap_shapes"] = np.array([list(m.shape) + [0] * (4 - m.dim()) for m in maps_r], dtype=np.int64)

    for side, names_key in (("d", "d_param_names"), ("g", "g_param_names")):
        grads, before, after = r[f"{side}_grads"], r[f"{side}_before"], r[f"{side}_after"]
        names = list(grads)
        out[names_key] = np.array(names)
        out[f"{side}_grad_norms"] = np.array(
            [np.nan if grads[n] is None else float(grads[n].double().norm()) for n in names])
        out[f"{side}_update_norms"] = np.array([float((after[n].double() - before[n].double()).norm()) for n in names])
        by_flat = {_flat(n): n for n in names}
        for key in v:
            if key.startswith(f"{side}grad_"):
                out[key] = arr(grads[by_flat[key[len(side) + 5 :]]])
            elif key.startswith(f"{side}step_"):
                out[key] = arr(after[by_flat[key[len(side) + 5 :]]])
    out["g_params_without_grad"] = np.array([n for n, g in r["g_grads"].items() if g is None])
    out["lr_d"] = np.array(r["lr_d"], dtype=np.float64)
    out["lr_g_groups"] = np.array(r["lr_g"], dtype=np.float64)
    return out
