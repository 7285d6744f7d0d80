"""The v2 SoVITS discriminator (HiFi-GAN multi-period + one scale discriminator), for fine-tuning.

Re-implements `MultiPeriodDiscriminator(use_spectral_norm=False, version="v2")` of GPT-SoVITS
(module/models.py at 48b1a01): DiscriminatorS plus DiscriminatorP with periods 2, 3, 5, 7, 11, weight-norm
convolutions, leaky ReLU 0.1. Hand-written, like the rest of this package, so that training needs none of the
official module's imports. Parameters are registered in the official order (bias, weight_g, weight_v per
conv), so state-dict keys and `named_parameters()` order equal the official ones, and constructing it right
after `torch.manual_seed(s)` draws the official initial weights bit for bit (kaiming-uniform weight, then
uniform bias, conv by conv, as nn.Conv*d.reset_parameters does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.1
PERIODS_V2 = (2, 3, 5, 7, 11)


class WeightNormConv(nn.Module):
    """Conv1d/Conv2d with torch weight-norm parameters `bias`, `weight_g`, `weight_v` (norm over dims != 0)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.groups = stride, padding, groups
        weight = torch.empty(out_channels, in_channels // groups, *kernel)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv*d.reset_parameters, same draws
        bias = torch.empty(out_channels)
        fan_in = (in_channels // groups) * math.prod(kernel)
        nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.bias = nn.Parameter(bias)
        self.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, 0))
        self.weight_v = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        weight = torch._weight_norm(self.weight_v, self.weight_g, 0)  # what nn.utils.weight_norm computes
        conv = F.conv1d if x.dim() == 3 else F.conv2d
        return conv(x, weight, self.bias, self.stride, self.padding, 1, self.groups)


def _narrow(channels: int, width: int) -> int:
    """Channels (or groups) of a discriminator `width` times narrower than the official one (width 1)."""
    return channels if channels == 1 else max(1, channels // width)


def discriminator_width(state: Mapping[str, Tensor]) -> int:
    """How many times narrower than the official discriminator the weights in `state` are (1 for official
    weights; small random test models are narrower, as the other tiny models of the tests are)."""
    post = state.get("discriminators.0.conv_post.weight_v")
    if post is None:
        raise ValueError("not a discriminator state: discriminators.0.conv_post.weight_v is missing")
    return max(1, 1024 // int(post.shape[1]))


class DiscriminatorS(nn.Module):
    """Scale discriminator on the raw waveform (B, 1, N): grouped strided 1-D convolutions."""

    def __init__(self, width: int = 1) -> None:
        super().__init__()
        layers = [(1, 16, 15, 1, 1, 7), (16, 64, 41, 4, 4, 20), (64, 256, 41, 4, 16, 20),
                  (256, 1024, 41, 4, 64, 20), (1024, 1024, 41, 4, 256, 20), (1024, 1024, 5, 1, 1, 2)]
        self.convs = nn.ModuleList(
            WeightNormConv(_narrow(i, width), _narrow(o, width), (k,), (s,), (p,), groups=_narrow(g, width))
            for i, o, k, s, g, p in layers
        )
        self.conv_post = WeightNormConv(_narrow(1024, width), 1, (3,), (1,), (1,))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)  # (B, C, T')
            fmap.append(x)
        x = self.conv_post(x)  # (B, 1, T')
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Period discriminator: the waveform folded to (B, 1, N / period, period), then (5, 1) convolutions."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, width: int = 1) -> None:
        super().__init__()
        self.period = period
        pad = (kernel_size - 1) // 2
        channels = [(1, 32), (32, 128), (128, 512), (512, 1024), (1024, 1024)]
        self.convs = nn.ModuleList(
            WeightNormConv(_narrow(i, width), _narrow(o, width), (kernel_size, 1), (stride if j < 4 else 1, 1),
                           (pad, 0))
            for j, (i, o) in enumerate(channels)
        )
        self.conv_post = WeightNormConv(_narrow(1024, width), 1, (3, 1), (1, 1), (1, 0))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)  # (B, 1, T / p, p)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    """discriminators.0 = DiscriminatorS, 1.. = DiscriminatorP(period)."""

    def __init__(self, periods: tuple[int, ...] = PERIODS_V2, width: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [DiscriminatorS(width), *(DiscriminatorP(p, width=width) for p in periods)]
        )

    def forward(
        self, y: Tensor, y_hat: Tensor
    ) -> tuple[list[Tensor], list[Tensor], list[list[Tensor]], list[list[Tensor]]]:
        """Real and generated waves (B, 1, N) -> per-discriminator logits and feature maps of each."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            y_d_gs.append(y_d_g)
            fmap_rs.append(fmap_r)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """LSGAN D loss: sum_k mean((1 - D_r)^2) + mean(D_g^2); also the per-discriminator terms."""
    loss: Tensor | float = 0.0
    r_losses, g_losses = [], []
    for dr, dg in zip(real, fake, strict=True):
        r_loss = torch.mean((1 - dr.float()) ** 2)
        g_loss = torch.mean(dg.float() ** 2)
        loss = loss + (r_loss + g_loss)  # official order of the float32 sums
        r_losses.append(r_loss)
        g_losses.append(g_loss)
    return loss, r_losses, g_losses  # type: ignore[return-value]


def generator_loss(fake: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """LSGAN G loss: sum_k mean((1 - D_g)^2); also the per-discriminator terms."""
    loss: Tensor | float = 0.0
    losses = []
    for dg in fake:
        term = torch.mean((1 - dg.float()) ** 2)
        losses.append(term)
        loss = loss + term
    return loss, losses  # type: ignore[return-value]


def feature_loss(fmap_r: list[list[Tensor]], fmap_g: list[list[Tensor]]) -> Tensor:
    """Feature matching: 2 * sum over all maps of mean|real.detach() - generated|."""
    loss: Tensor | float = 0.0
    for dr, dg in zip(fmap_r, fmap_g, strict=True):
        for rl, gl in zip(dr, dg, strict=True):
            loss = loss + torch.mean(torch.abs(rl.float().detach() - gl.float()))
    return loss * 2  # type: ignore[return-value]
