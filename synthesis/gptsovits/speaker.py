"""GPT-SoVITS v2Pro speaker verification, inference only: 32 kHz reference -> 16 kHz -> fbank -> (B, 20480).

v2Pro voices condition the SoVITS decoder on a second speaker vector besides ref_enc's: the official
`sv.SV.compute_embedding3` (RVC-Boss/GPT-SoVITS, commit 48b1a01). It resamples the 32 kHz reference to
16 kHz with `torchaudio.transforms.Resample(32000, 16000)`, takes an 80-bin Kaldi fbank of it (the copy of
torchaudio.compliance.kaldi vendored in GPT_SoVITS/eres2net/kaldi.py) and runs ERes2NetV2 (3D-Speaker) up
to its last feature map, which is averaged over time: `forward3`, not the 192-d embedding head.

    wav32k (B, N) --windowed sinc--> wav16k (B, ceil(N/2)) --Kaldi fbank--> (B, T, 80)
      --ERes2NetV2 conv1..layer4, layer3_ds + AFF fusion--> (B, 2048, 10, T/8) --time mean--> (B, 20480)

Written by hand because the official module appends to sys.path, reads a hard-coded path with
weights_only=False and imports the 3D-Speaker sources, which are not packaged; and torchaudio, which is not a
dependency of Herald, would be pulled in for one resampler and one fbank (a few dozen lines each here, the
only options the official path uses). Parameter paths equal the official state-dict keys, so the official
`pretrained_eres2netv2w24s4ep4.ckpt` loads strictly, including the unused head (seg_1).
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthesis.gptsovits.checkpoint import CheckpointError, load_strict, unpickle_weights

SV_SAMPLE_RATE = 16000
SV_EMBEDDING_DIM = 20480  # 2048 channels x 10 frequency rows of the fused feature map
MAX_SPEAKER_BYTES = 512 * 2**20  # the real file is 107 MB in fp16; anything far larger is not one
GZIP_MAGIC = b"\x1f\x8b"


# -----------------------------------------------------------------------------
# 32 kHz -> 16 kHz, as torchaudio.transforms.Resample with its defaults


@functools.cache
def sinc_resample_kernel(
    orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> Tensor:
    """Hann-windowed sinc kernel (new, 1, 2 * width + orig), rates reduced by their gcd; cached, do not modify.

    Computed in float64 and cast to float32, as `transforms.Resample` does (`functional.resample` computes
    it in the wave's dtype and differs by up to ~1e-8).
    """
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    cutoff = min(orig, new) * rolloff  # below both Nyquist rates: anti-aliasing when downsampling
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig  # (1, 1, K)
    # torchaudio divides the output phases in float32 (an int64 arange / int); kept for equal kernels
    phases = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new  # (new, 1, 1)
    t = ((phases + taps) * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)  # (new, 1, K)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), t.sin() / t)
    return (sinc * (window * (cutoff / orig))).to(torch.float32)


def resample(wav: Tensor, orig_freq: int, new_freq: int) -> Tensor:
    """(..., N) at orig_freq -> (..., ceil(N * new / orig)) at new_freq, like torchaudio's Resample."""
    if orig_freq == new_freq:
        return wav
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    kernel = sinc_resample_kernel(orig_freq, new_freq).to(device=wav.device, dtype=wav.dtype)  # (new, 1, K)
    width = (kernel.shape[-1] - orig) // 2
    shape, n = wav.shape, wav.shape[-1]
    x = F.pad(wav.reshape(-1, 1, n), (width, width + orig))  # (B, 1, N + 2 * width + orig)
    y = F.conv1d(x, kernel, stride=orig)  # (B, new, frames)
    y = y.transpose(1, 2).reshape(y.shape[0], -1)  # (B, new * frames): the output phases interleaved
    return y[:, : -(-new * n // orig)].reshape(*shape[:-1], -1)


def resample_32k_to_16k(wav: Tensor) -> Tensor:
    """(B, N) 32 kHz -> (B, ceil(N / 2)) 16 kHz: the wave v2Pro feeds its speaker-verification model."""
    return resample(wav, 32000, SV_SAMPLE_RATE)


# -----------------------------------------------------------------------------
# Kaldi fbank, only the options compute_embedding3 uses


FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512  # frame length rounded up to a power of two
NUM_MEL_BINS = 80
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
LOG_FLOOR = torch.finfo(torch.float32).eps  # Kaldi's floor before the log


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)  # Kaldi's mel scale (natural log, 1127)


@functools.cache
def kaldi_mel_banks(sample_rate: int = SV_SAMPLE_RATE) -> Tensor:
    """(80, 257) triangular filters, equally spaced on Kaldi's mel scale from 20 Hz to Nyquist; cached."""
    mel_low, mel_high = _mel(LOW_FREQ), _mel(sample_rate / 2)
    delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)
    index = torch.arange(NUM_MEL_BINS, dtype=torch.float32)[:, None]  # (80, 1)
    left, center, right = mel_low + index * delta, mel_low + (index + 1.0) * delta, mel_low + (index + 2.0) * delta
    hz = sample_rate / FFT_SIZE * torch.arange(FFT_SIZE // 2, dtype=torch.float32)  # (256,) bin frequencies
    mel = (1127.0 * (1.0 + hz / 700.0).log())[None]  # (1, 256)
    rising, falling = (mel - left) / (center - left), (right - mel) / (right - center)  # (80, 256)
    banks = torch.minimum(rising, falling).clamp(min=0.0)
    return F.pad(banks, (0, 1))  # (80, 257): the Nyquist bin gets no weight


def kaldi_fbank(wav16k: Tensor) -> Tensor:
    """(N,) or (B, N) 16 kHz -> (frames, 80) or (B, frames, 80) log-mel energies, frames = 1 + (N - 400) // 160.

    Equals kaldi.fbank(wav[None], num_mel_bins=80, sample_frequency=16000, dither=0): povey window, snipped
    edges, per-frame DC removal, preemphasis 0.97, power spectrum, no energy column, no mean subtraction.
    """
    if wav16k.shape[-1] < FRAME_LENGTH:
        raise ValueError(f"a 16 kHz wave of {wav16k.shape[-1]} samples is shorter than one 25 ms frame")
    frames = wav16k.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)  # (..., T, 400)
    frames = frames - frames.mean(-1, keepdim=True)
    previous = torch.cat((frames[..., :1], frames[..., :-1]), -1)  # the first sample is its own predecessor
    frames = frames - PREEMPHASIS * previous
    povey = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=frames.dtype, device=frames.device).pow(0.85)
    frames = F.pad(frames * povey, (0, FFT_SIZE - FRAME_LENGTH))  # (..., T, 512)
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (..., T, 257)
    banks = kaldi_mel_banks().to(device=power.device, dtype=power.dtype)
    return (power @ banks.T).clamp(min=LOG_FLOOR).log()  # (..., T, 80)


# -----------------------------------------------------------------------------
# ERes2NetV2


@dataclass(frozen=True)
class ERes2NetV2Config:
    """The fixed arguments of sv.py (`ERes2NetV2(baseWidth=24, scale=4, expansion=4)`, other defaults)."""

    feat_dim: int = NUM_MEL_BINS
    m_channels: int = 64
    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    base_width: int = 24
    scale: int = 4  # channel groups per block
    expansion: int = 4
    embedding_size: int = 192  # seg_1's output: the verification embedding, unused by v2Pro


def clipped_relu(x: Tensor) -> Tensor:
    # 3D-Speaker's ReLU inside the residual blocks is Hardtanh(0, 20); the stem uses a plain relu
    return x.clamp(0.0, 20.0)


class FeatureFusion(nn.Module):
    """Attentional feature fusion (AFF): per-element weights w in (0, 2) from both inputs; x*w + y*(2-w)."""

    def __init__(self, channels: int, r: int = 4) -> None:
        super().__init__()
        inner = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(2 * channels, inner, kernel_size=1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # (B, C, F, T) each
        w = 1.0 + torch.tanh(self.local_att(torch.cat((x, y), dim=1)))  # (B, C, F, T)
        return x * w + y * (2.0 - w)


class Res2Block(nn.Module):
    """Bottleneck with `scale` chained 3x3 convs over channel groups, each fed its group plus the previous output.

    The previous output is added (layers 1-2) or attention-fused (`fuse`, layers 3-4) with the next group.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, c: ERes2NetV2Config, fuse: bool) -> None:
        super().__init__()
        self.width = planes * c.base_width // 64
        hidden, out_planes = self.width * c.scale, planes * c.expansion
        self.conv1 = nn.Conv2d(in_planes, hidden, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.width, self.width, kernel_size=3, padding=1, bias=False) for _ in range(c.scale)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(self.width) for _ in range(c.scale))
        self.fuse_models = nn.ModuleList(FeatureFusion(self.width) for _ in range(c.scale - 1) if fuse)
        self.conv3 = nn.Conv2d(hidden, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, F, T)
        groups = clipped_relu(self.bn1(self.conv1(x))).split(self.width, dim=1)  # scale x (B, width, F', T')
        outs: list[Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            if i == 0:
                h = groups[0]
            elif self.fuse_models:
                h = self.fuse_models[i - 1](outs[-1], groups[i])
            else:
                h = outs[-1] + groups[i]
            outs.append(clipped_relu(bn(conv(h))))
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))  # (B, planes * expansion, F', T')
        return clipped_relu(out + self.shortcut(x))


class ERes2NetV2(nn.Module):
    """3D-Speaker's ERes2NetV2 speaker model; `forward` is the official `forward3` (fbank -> frame-mean features)."""

    def __init__(self, config: ERes2NetV2Config | None = None) -> None:
        super().__init__()
        c = self.config = config or ERes2NetV2Config()
        m = c.m_channels
        self.conv1 = nn.Conv2d(1, m, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        in_planes, layers = m, []
        for i, blocks in enumerate(c.num_blocks):
            planes, stride = m * 2**i, 1 if i == 0 else 2
            layer = []
            for j in range(blocks):
                layer.append(Res2Block(in_planes, planes, stride if j == 0 else 1, c, fuse=i >= 2))
                in_planes = planes * c.expansion
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.layer3_ds = nn.Conv2d(m * 4 * c.expansion, m * 8 * c.expansion, 3, stride=2, padding=1, bias=False)
        self.fuse34 = FeatureFusion(m * 8 * c.expansion)
        # The verification head (mean+std pooling -> Linear) is in the checkpoint but v2Pro never runs it.
        stats_dim = c.feat_dim // 8 * m * 8 * c.expansion
        self.seg_1 = nn.Linear(2 * stats_dim, c.embedding_size)

    def forward(self, fbank: Tensor) -> Tensor:  # (B, T, 80)
        x = fbank.transpose(1, 2).unsqueeze(1)  # (B, 1, 80, T): frequency is the image height
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 64, 80, T)
        x = self.layer1(x)  # (B, 256, 80, T)
        x = self.layer2(x)  # (B, 512, 40, T/2)
        x3 = self.layer3(x)  # (B, 1024, 20, T/4)
        x4 = self.layer4(x3)  # (B, 2048, 10, T/8)
        x = self.fuse34(x4, self.layer3_ds(x3))  # (B, 2048, 10, T/8)
        return x.flatten(1, 2).mean(-1)  # (B, 20480), index = channel * 10 + frequency row


# -----------------------------------------------------------------------------
# loading and the inference entry point


def read_speaker_state(path: str | Path, *, max_bytes: int = MAX_SPEAKER_BYTES) -> dict[str, Tensor]:
    """The state dict of an `sv.ckpt` (a plain torch.save), gzip-compressed or not (told by its magic bytes)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            if not compressed and path.stat().st_size > max_bytes:
                raise CheckpointError(path, f"is larger than {max_bytes} bytes: not a speaker-verification model")
        raw = _gunzip(path, max_bytes) if compressed else path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if raw[:2] != b"PK" and raw[:1] != b"\x80":  # a zip (torch.save) or a legacy pickle
        raise CheckpointError(path, f"is not a PyTorch checkpoint (it starts with {raw[:4]!r})")
    state = unpickle_weights(path, raw)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(path, "is not a state dict (a mapping of names to tensors), as sv.ckpt is")
    return dict(state)


def _gunzip(path: Path, max_bytes: int) -> bytes:
    # In chunks, so that a small file that inflates without end is refused before it fills memory.
    out = io.BytesIO()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
                if out.tell() > max_bytes:
                    raise CheckpointError(
                        path, f"decompresses to more than {max_bytes} bytes: refusing it (not a speaker model)"
                    )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CheckpointError(path, f"is a truncated or corrupted gzip file ({exc})") from exc
    return out.getvalue()


class SpeakerEncoder:
    """The v2Pro speaker-verification model, ready to embed 16 kHz waves; load once per worker process."""

    def __init__(self, model: ERes2NetV2) -> None:
        self.model = model.eval()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_bytes: int = MAX_SPEAKER_BYTES,
    ) -> SpeakerEncoder:
        """Read `sv.ckpt` or `sv.ckpt.gz` and load it strictly, or raise CheckpointError naming what differs."""
        return cls.from_state_dict(
            read_speaker_state(path, max_bytes=max_bytes), source=str(path), device=device, dtype=dtype
        )

    @classmethod
    def from_state_dict(
        cls,
        state: Mapping[str, Tensor],
        *,
        source: str = "sv.ckpt",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> SpeakerEncoder:
        """Every key and shape of the official ERes2NetV2, or a CheckpointError that lists the differences."""
        with torch.device("meta"):
            model = ERes2NetV2()  # no random init of 54M parameters that the strict load overwrites anyway
        model.to_empty(device=device)
        load_strict(model, state, path=source, what="the official ERes2NetV2 (baseWidth 24, scale 4, expansion 4)")
        return cls(model.to(dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.model.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.conv1.weight.dtype

    @torch.inference_mode()
    def embed(self, wav16k: Tensor) -> Tensor:
        """(B, N) 16 kHz waves -> (B, 20480) float32: the sv_emb that v2Pro's SoVITS decoder takes."""
        if wav16k.dim() != 2:
            raise ValueError(f"expected (B, N) 16 kHz waves, got shape {tuple(wav16k.shape)}")
        # fbank in float32 even for a half model: log energies of quiet bins do not survive fp16
        fbank = kaldi_fbank(wav16k.to(device=self.device, dtype=torch.float32))  # (B, T, 80)
        return self.model(fbank.to(self.dtype)).float()  # (B, 20480)


def speaker_conformance(encoder: SpeakerEncoder, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Recompute, from the 32 kHz reference inputs of the v2Pro vectors.npz, every speaker-path array it defines."""
    out: dict[str, np.ndarray] = {"sv_resample_kernel": sinc_resample_kernel(32000, SV_SAMPLE_RATE).numpy()}
    with torch.inference_mode():
        for suffix in ("", "2"):
            wav16k = resample_32k_to_16k(torch.from_numpy(np.asarray(vectors[f"ref_wav{suffix}_32k"])))  # (1, N/2)
            fbank = kaldi_fbank(wav16k)  # (1, T, 80)
            out[f"ref_wav{suffix}_16k"] = wav16k.numpy()
            out[f"sv_fbank{suffix}"] = fbank.numpy()
            out[f"sv_emb{suffix}"] = encoder.model(fbank.to(encoder.device, encoder.dtype)).float().cpu().numpy()
    return out
