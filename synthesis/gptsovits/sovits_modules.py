"""Building blocks of the GPT-SoVITS v2 SoVITS synthesizer, inference only (assembled in sovits.py).

Module and attribute names are dictated by the official checkpoints: every parameter path equals the
official state-dict key, so `load_state_dict(strict=True)` takes a trained voice unchanged.

GPT-SoVITS synthesises one utterance at a time without padding, so the official length masks are all ones
and multiplying by them changes nothing: they are left out here. Dropout is likewise absent (eval only);
where the checkpoint's numbering needs a dropout slot, an `nn.Identity` keeps the index.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_SLOPE = 0.1  # HiFi-GAN's slope inside the generator; its last activation uses torch's default 0.01


# -----------------------------------------------------------------------------
# weight norm


class WeightNormConv1d(nn.Module):
    """Conv1d with weight = weight_g * weight_v / ||weight_v||, the norm taken per slice of dim 0.

    The official model uses torch.nn.utils.weight_norm (keys `weight_g`, `weight_v`); this is the same
    reparameterisation written out, plus `fuse_weight_norm()` to fold it into one plain `weight`.
    """

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        if self.transposed:
            shape = (in_channels, out_channels, kernel_size)
        else:
            shape = (out_channels, in_channels, kernel_size)
        self.weight_v = nn.Parameter(torch.randn(shape) * 0.01)  # HiFi-GAN's N(0, 0.01) init
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_parameter("weight", None)  # set by fuse_weight_norm()

    def effective_weight(self) -> Tensor:
        if self.weight is not None:
            return self.weight
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))

    @torch.no_grad()
    def fuse_weight_norm(self) -> None:
        weight = self.effective_weight().detach().clone()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # (B, C, 1, T) channels-last, see Generator
            return F.conv2d(
                x,
                self.effective_weight().unsqueeze(2),
                self.bias,
                (1, self.stride),
                (0, self.padding),
                (1, self.dilation),
            )
        return F.conv1d(x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation)


class WeightNormConvTranspose1d(WeightNormConv1d):
    """ConvTranspose1d with weight norm; the weight is (in, out, k), so g is per input channel as in torch."""

    transposed = True

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # (B, C, 1, T) channels-last, see Generator
            return F.conv_transpose2d(
                x, self.effective_weight().unsqueeze(2), self.bias, (1, self.stride), (0, self.padding)
            )
        return F.conv_transpose1d(x, self.effective_weight(), self.bias, self.stride, self.padding)


# -----------------------------------------------------------------------------
# transformer encoder of VITS (attentions.py)


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, T) tensor (parameters `gamma`, `beta`)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.transpose(1, 2), (x.size(1),), self.gamma, self.beta, self.eps)  # (B, T, C)
        return x.transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over (B, C, T) with 1x1-conv projections.

    With `window_size`, it is self-attention with learned relative-position embeddings for the offsets
    -w..w, shared by all heads, added to both the scores (`emb_rel_k`) and the outputs (`emb_rel_v`);
    farther offsets get none.
    """

    def __init__(self, channels: int, n_heads: int, window_size: int | None = None) -> None:
        super().__init__()
        assert channels % n_heads == 0
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        if window_size is not None:
            n_offsets = 2 * window_size + 1
            self.emb_rel_k = nn.Parameter(torch.randn(1, n_offsets, self.head_dim) * self.head_dim**-0.5)
            self.emb_rel_v = nn.Parameter(torch.randn(1, n_offsets, self.head_dim) * self.head_dim**-0.5)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        B, C, Tq = x.shape
        Tk = context.size(2)
        nh, hd = self.n_heads, self.head_dim
        q = self.conv_q(x).view(B, nh, hd, Tq).transpose(2, 3) / math.sqrt(hd)  # (B, nh, Tq, hd)
        k = self.conv_k(context).view(B, nh, hd, Tk).transpose(2, 3)  # (B, nh, Tk, hd)
        v = self.conv_v(context).view(B, nh, hd, Tk).transpose(2, 3)  # (B, nh, Tk, hd)
        scores = q @ k.transpose(2, 3)  # (B, nh, Tq, Tk)
        if self.window_size is not None:
            assert Tq == Tk, "relative positions need self-attention"
            scores = scores + self._relative_scores(q)
        p = F.softmax(scores, dim=-1)  # (B, nh, T, T)
        y = p @ v  # (B, nh, Tq, hd)
        if self.window_size is not None:
            y = y + self._relative_values(p)
        y = y.transpose(2, 3).reshape(B, C, Tq)  # (B, C, Tq)
        return self.conv_o(y)

    def _relative_scores(self, q: Tensor) -> Tensor:
        """q_i . emb_rel_k[j - i] for |j - i| <= w, else 0, as a (B, nh, T, T) score matrix."""
        B, nh, T, _ = q.shape
        w = self.window_size
        rel = q @ self.emb_rel_k.transpose(1, 2)  # (B, nh, T, 2w+1)
        pos = torch.arange(T, device=q.device)
        offset = pos[None, :] - pos[:, None]  # (T, T): j - i
        index = (offset.clamp(-w, w) + w).expand(B, nh, T, T)
        return torch.where(offset.abs() <= w, rel.gather(3, index), 0.0)

    def _relative_values(self, p: Tensor) -> Tensor:
        """sum over |j - i| <= w of p[i, j] * emb_rel_v[j - i], (B, nh, T, hd)."""
        B, nh, T, _ = p.shape
        w = self.window_size
        offsets = torch.arange(-w, w + 1, device=p.device)
        column = torch.arange(T, device=p.device)[:, None] + offsets  # (T, 2w+1): j = i + offset
        inside = (column >= 0) & (column < T)
        p_rel = torch.where(inside, p.gather(3, column.clamp(0, T - 1).expand(B, nh, T, 2 * w + 1)), 0.0)
        return p_rel @ self.emb_rel_v  # (B, nh, T, hd)


class FFN(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.padding = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv_1(F.pad(x, self.padding)))  # (B, F, T)
        return self.conv_2(F.pad(x, self.padding))  # (B, C, T)


class Encoder(nn.Module):
    """Post-norm transformer encoder with relative-position self-attention (window 4)."""

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        window_size: int = 4,
    ) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(
            MultiHeadAttention(channels, n_heads, window_size) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(LayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FFN(channels, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(LayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: Tensor) -> Tensor:
        for attn, norm_1, ffn, norm_2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm_1(x + attn(x, x))  # (B, C, T)
            x = norm_2(x + ffn(x))
        return x


class MRTE(nn.Module):
    """Multi-reference timbre encoder: content attends to the phones, then the speaker vector is added."""

    def __init__(self, channels: int = 192, hidden: int = 512, n_heads: int = 4) -> None:
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden, n_heads)
        self.c_pre = nn.Conv1d(channels, hidden, 1)
        self.text_pre = nn.Conv1d(channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, channels, 1)

    def forward(self, content: Tensor, text: Tensor, ge: Tensor) -> Tensor:
        content = self.c_pre(content)  # (B, 512, T)
        text = self.text_pre(text)  # (B, 512, L)
        x = self.cross_attention(content, text) + content + ge  # ge (B, 512, 1)
        return self.c_post(x)  # (B, 192, T)


class TextEncoder(nn.Module):
    """The prior: quantised SSL content + phones + speaker vector -> per-frame mean and log-std of z."""

    def __init__(
        self,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        n_symbols: int,
        ssl_dim: int = 768,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.ssl_proj = nn.Conv1d(ssl_dim, hidden_channels, 1)
        self.encoder_ssl = Encoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size)
        self.text_embedding = nn.Embedding(n_symbols, hidden_channels)
        self.encoder_text = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size)
        self.mrte = MRTE(hidden_channels)
        self.encoder2 = Encoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self, quantized: Tensor, text: Tensor, ge: Tensor, speed: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns m_p, logs_p (B, inter, T') and y_mask (B, 1, T'); T' = int(T / speed) + 1 when speed != 1."""
        y = self.encoder_ssl(self.ssl_proj(quantized))  # (B, 192, T)
        text = self.encoder_text(self.text_embedding(text).transpose(1, 2))  # (B, 192, L)
        y = self.encoder2(self.mrte(y, text, ge))  # (B, 192, T)
        if speed != 1:
            y = F.interpolate(y, size=int(y.size(-1) / speed) + 1, mode="linear")  # (B, 192, T')
        y_mask = torch.ones(y.size(0), 1, y.size(2), dtype=y.dtype, device=y.device)  # (B, 1, T')
        m, logs = self.proj(y).split(self.out_channels, dim=1)  # 2 x (B, inter, T')
        return m, logs, y_mask


# -----------------------------------------------------------------------------
# normalising flow (modules.py)


class WN(nn.Module):
    """WaveNet-style stack of gated dilated convolutions, conditioned on the speaker vector."""

    def __init__(
        self, channels: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int
    ) -> None:
        super().__init__()
        self.channels = channels
        self.cond_layer = WeightNormConv1d(gin_channels, 2 * channels * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            padding = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(
                WeightNormConv1d(channels, 2 * channels, kernel_size, dilation=dilation, padding=padding)
            )
            out = 2 * channels if i < n_layers - 1 else channels  # the last layer has no residual half
            self.res_skip_layers.append(WeightNormConv1d(channels, out, 1))

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        C = self.channels
        g = self.cond_layer(g)  # (B, 2C * n_layers, 1)
        output = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            h = in_layer(x) + g[:, 2 * C * i : 2 * C * (i + 1)]  # (B, 2C, T)
            acts = torch.tanh(h[:, :C]) * torch.sigmoid(h[:, C:])  # (B, C, T)
            res_skip_acts = res_skip(acts)
            if i < last:
                x = x + res_skip_acts[:, :C]
                output = output + res_skip_acts[:, C:]
            else:
                output = output + res_skip_acts
        return output


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half of the channels is shifted by a WN of the first half."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half, 1)

    def forward(self, x: Tensor, g: Tensor, reverse: bool = False) -> Tensor:
        x0, x1 = x.split(self.half, dim=1)  # 2 x (B, C/2, T)
        m = self.post(self.enc(self.pre(x0), g))  # (B, C/2, T)
        x1 = x1 - m if reverse else x1 + m
        return torch.cat([x0, x1], dim=1)


class Flip(nn.Module):
    """Reverse the channel order (between coupling layers)."""

    def forward(self, x: Tensor, g: Tensor, reverse: bool = False) -> Tensor:
        return torch.flip(x, [1])


class ResidualCouplingBlock(nn.Module):
    """n_flows x (coupling layer, flip); inference runs it in reverse, latent prior -> decoder input."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
        n_flows: int = 4,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels
                )
            )
            self.flows.append(Flip())

    def forward(self, x: Tensor, g: Tensor, reverse: bool = False) -> Tensor:
        for flow in reversed(self.flows) if reverse else self.flows:
            x = flow(x, g, reverse=reverse)
        return x


# -----------------------------------------------------------------------------
# HiFi-GAN generator


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) residual pairs with leaky ReLUs."""

    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
            for _ in dilation
        )

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE, inplace=True)
            x = c2(xt).add_(x)  # in place on fresh tensors: these are the largest activations of the model
        return x


class ResBlock2(nn.Module):
    """Two dilated residual convolutions with leaky ReLUs (config resblock "2")."""

    def __init__(self, channels: int, kernel_size: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilation[:2]
        )

    def forward(self, x: Tensor) -> Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class Generator(nn.Module):
    """HiFi-GAN: upsample z by prod(upsample_rates) to a waveform in [-1, 1], conditioned on ge."""

    def __init__(
        self,
        in_channels: int,
        resblock: str,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        upsample_rates: tuple[int, ...],
        upsample_initial_channel: int,
        upsample_kernel_sizes: tuple[int, ...],
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            self.ups.append(WeightNormConvTranspose1d(ch, ch // 2, k, stride=u, padding=(k - u) // 2))
            ch //= 2
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, rk, tuple(rd)))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        x = self.conv_pre(x) + self.cond(g)  # (B, C0, T)
        # From here on x is (B, C, 1, T) in channels-last memory order: oneDNN runs these long, narrow
        # convolutions about 1.4x faster in that layout than as (B, C, T) conv1d (CPU, fp32 and bf16).
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, C0, 1, T)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # (B, C0 / 2^(i+1), 1, T * u_0 ... u_i)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs.add_(block(x))
            x = xs.div_(self.num_kernels)
        # The output layer runs in fp32 even under bf16 autocast: bf16 would round the waveform to 8 bits.
        with torch.autocast(x.device.type, enabled=False):
            x = F.leaky_relu(x.float())  # default slope 0.01 here, as in the official generator
            weight = self.conv_post.weight.unsqueeze(2)  # (1, C, 1, 7)
            x = F.conv2d(x, weight, padding=(0, self.conv_post.padding[0]))  # (B, 1, 1, N)
            return torch.tanh(x.squeeze(2))  # (B, 1, N)


# -----------------------------------------------------------------------------
# reference (speaker) encoder


class LinearNorm(nn.Module):
    """nn.Linear one level down, where the checkpoint nests it (`….fc.weight`)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class ConvNorm(nn.Module):
    """'same'-padded nn.Conv1d one level down (`….conv.weight`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Conv1dGLU(nn.Module):
    """Gated linear unit convolution with a residual connection."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(channels, 2 * channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv1(x).chunk(2, dim=1)  # 2 x (B, C, T)
        return x + a * torch.sigmoid(b)


class StyleAttention(nn.Module):
    """Self-attention over (B, T, C) with linear projections and a residual; scores are scaled by
    1/sqrt(d_model), not 1/sqrt(d_head), as in the official MelStyleEncoder."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        nh = self.n_heads
        q = self.w_qs(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hd)
        k = self.w_ks(x).view(B, T, nh, C // nh).transpose(1, 2)
        v = self.w_vs(x).view(B, T, nh, C // nh).transpose(1, 2)
        p = F.softmax((q @ k.transpose(2, 3)) / math.sqrt(C), dim=-1)  # (B, nh, T, T)
        y = (p @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.fc(y) + x


class MelStyleEncoder(nn.Module):
    """Reference spectrogram (B, n_bins, T) -> speaker/style vector ge (B, out_dim, 1), averaged over time."""

    def __init__(
        self, n_bins: int, out_dim: int, hidden: int = 128, kernel_size: int = 5, n_heads: int = 2
    ) -> None:
        super().__init__()
        self.spectral = nn.Sequential(  # the Identity slots are the official dropouts
            LinearNorm(n_bins, hidden),
            nn.Mish(),
            nn.Identity(),
            LinearNorm(hidden, hidden),
            nn.Mish(),
            nn.Identity(),
        )
        self.temporal = nn.Sequential(Conv1dGLU(hidden, kernel_size), Conv1dGLU(hidden, kernel_size))
        self.slf_attn = StyleAttention(hidden, n_heads)
        self.fc = LinearNorm(hidden, out_dim)

    def forward(self, spec: Tensor) -> Tensor:
        x = self.spectral(spec.transpose(1, 2))  # (B, T, H)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)  # (B, T, H)
        x = self.fc(self.slf_attn(x))  # (B, T, out)
        return (x / x.size(1)).sum(dim=1).unsqueeze(-1)  # (B, out, 1); divide-then-sum as official


# -----------------------------------------------------------------------------
# semantic codebook


class Codebook(nn.Module):
    """One Euclidean codebook; the EMA buffers (`embed_avg`, `cluster_size`, `inited`) are training state,
    kept only so the checkpoint loads strictly."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.register_buffer("inited", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("embed_avg", self.embed.clone())

    def encode(self, x: Tensor) -> Tensor:
        """(N, D) -> (N,) index of the nearest code."""
        embed = self.embed.t()  # (D, K)
        # The whole distance, not just the cross term, so that rounding and ties pick what the official picks.
        dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True)  # (N, K)
        return (-dist).argmax(dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.embed)


class ResidualVectorQuantizer(nn.Module):
    """Residual VQ (GPT-SoVITS uses one layer of 1024 codes over the 768-d HuBERT projection)."""

    def __init__(self, dim: int = 768, size: int = 1024, n_q: int = 1) -> None:
        super().__init__()
        # key path quantizer.vq.layers.<i>._codebook.*
        self.vq = nn.ModuleDict(
            dict(layers=nn.ModuleList(nn.ModuleDict(dict(_codebook=Codebook(dim, size))) for _ in range(n_q)))
        )

    def encode(self, x: Tensor) -> Tensor:
        """(B, D, T) -> codes (n_q, B, T)."""
        B, D, T = x.shape
        residual = x.transpose(1, 2).reshape(B * T, D)  # (B*T, D)
        codes = []
        for layer in self.vq.layers:
            index = layer._codebook.encode(residual)  # (B*T,)
            residual = residual - layer._codebook.decode(index)
            codes.append(index.view(B, T))
        return torch.stack(codes)

    def decode(self, codes: Tensor) -> Tensor:
        """codes (n_q, B, T) -> (B, D, T), the sum of the layers' codes."""
        quantized = 0
        for layer, layer_codes in zip(self.vq.layers, codes, strict=True):
            quantized = quantized + layer._codebook.decode(layer_codes)  # (B, T, D)
        return quantized.transpose(1, 2)
