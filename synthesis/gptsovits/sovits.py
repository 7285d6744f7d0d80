"""GPT-SoVITS SoVITS synthesizer (v2, v2Pro, v2ProPlus), inference only: codes + phones + reference -> 32 kHz.

Re-implements the inference paths of the official `module.models.SynthesizerTrn` (`extract_latent`,
`decode`) and `module.mel_processing.spectrogram_torch` (RVC-Boss/GPT-SoVITS, commit 48b1a01), reproducing
its outputs on the reference vectors. Written by hand because the official module imports the training
stack (discriminators, f5-tts, librosa, text frontends) and keeps per-process global state; this one is
plain torch and loads the official `.pth` files key for key (see sovits_modules.py for the blocks).

    codes (1, 1, T25) --codebook--> (1, 768, T25) --x2 nearest--> (1, 768, T50)
      --enc_p (+ phones, + ge)--> m_p, logs_p --z_p = m_p + noise*exp(logs_p)*scale--> flow^-1 --> z
      --HiFi-GAN (+ ge)--> wav (1, 1, 640 * T50)
    ge = mean over references of ref_enc(spectrogram[:, :704])
    v2Pro/v2ProPlus: ge_i = prelu(ref_enc(spec_i) + sv_emb(speaker embedding_i)) before the mean, and
    enc_p (whose MRTE is 512 wide) gets ge_to512(ge); v2ProPlus only widens the vocoder (a config matter).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from synthesis.gptsovits.sovits_modules import (
    Generator,
    MelStyleEncoder,
    ResidualCouplingBlock,
    ResidualVectorQuantizer,
    TextEncoder,
    WeightNormConv1d,
)

SSL_DIM = 768  # cnhubert features
CODEBOOK_SIZE = 1024
TEXT_SYMBOLS = {"v1": 322, "v2": 732, "v2Pro": 732, "v2ProPlus": 732}
PRO_VERSIONS = ("v2Pro", "v2ProPlus")
REF_BINS_V2 = 704  # v2 encodes the speaker from the lowest 704 of the 1025 linear-spectrogram bins
SV_DIM = 20480  # ERes2NetV2's frame-level embedding (2048 channels x 10 frequency rows), see speaker.py
MRTE_GE_CHANNELS = 512  # MRTE adds ge to its 512-wide state


@dataclass(frozen=True)
class SoVITSConfig:
    """The s2.json hyper-parameters that shape the inference network; defaults are the full-size v2 model."""

    # "data"
    filter_length: int = 2048
    hop_length: int = 640
    win_length: int = 2048
    sampling_rate: int = 32000
    n_speakers: int = 300  # unused at inference, kept for the record
    # "train"
    segment_size: int = 20480  # unused at inference
    # "model"
    inter_channels: int = 192
    hidden_channels: int = 192  # MRTE and the flow are hard-wired to 192 officially; must stay 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1  # unused at inference
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple[int, ...] = (10, 8, 2, 2, 2)
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 2, 2)
    gin_channels: int = 512  # v2: must be 512 (MRTE); v2Pro/v2ProPlus: any width, ge_to512 bridges to MRTE
    semantic_frame_rate: str = "25hz"
    version: str = "v2"

    @property
    def spec_channels(self) -> int:
        return self.filter_length // 2 + 1

    @property
    def samples_per_code(self) -> int:
        """Waveform samples per semantic code at speed 1 (1280 for v2: 2 frames of 640)."""
        frames = 2 if self.semantic_frame_rate == "25hz" else 1
        return frames * int(np.prod(self.upsample_rates))

    @property
    def is_pro(self) -> bool:
        return self.version in PRO_VERSIONS

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any], *, version: str | None = None) -> SoVITSConfig:
        """From a checkpoint's "config" (the s2 hps: "data", "model", optionally "train").

        `version` is what the file's header and weights say; like TTS.init_vits_weights it overrides the
        config's own "version" entry.
        """
        data, model, train = config["data"], config["model"], config.get("train", {})
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        values.update({k: v for k, v in model.items() if k in names})
        if "segment_size" in train:
            values["segment_size"] = train["segment_size"]
        # TTS.init_vits_weights forces 25 Hz whatever the file says (every released v1/v2 model is 25 Hz).
        values["semantic_frame_rate"] = "25hz"
        for name in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
            if name in values:
                values[name] = tuple(int(x) for x in values[name])
        if "resblock_dilation_sizes" in values:
            values["resblock_dilation_sizes"] = tuple(
                tuple(int(x) for x in d) for d in values["resblock_dilation_sizes"]
            )
        values["resblock"] = str(values.get("resblock", "1"))
        values["version"] = str(version or values.get("version", "v2"))
        if values["version"] not in TEXT_SYMBOLS:
            raise ValueError(f"SoVITS version {values['version']!r} is not supported (v2, v2Pro, v2ProPlus are)")
        if values.get("hidden_channels", 192) != 192:
            raise ValueError("hidden_channels must be 192 (hard-wired in the official MRTE and flow)")
        if values["version"] not in PRO_VERSIONS and values.get("gin_channels", 512) != MRTE_GE_CHANNELS:
            raise ValueError("gin_channels must be 512 for v1/v2 (the official MRTE adds ge to 512 channels)")
        return cls(**values)


class SynthesizerTrn(nn.Module):
    """The SoVITS synthesizer without the training-only posterior encoder (enc_q) and discriminators."""

    def __init__(self, config: SoVITSConfig) -> None:
        super().__init__()
        self.config = c = config
        self.enc_p = TextEncoder(
            c.inter_channels,
            c.hidden_channels,
            c.filter_channels,
            c.n_heads,
            c.n_layers,
            c.kernel_size,
            n_symbols=TEXT_SYMBOLS[c.version],
            ssl_dim=SSL_DIM,
        )
        self.dec = Generator(
            c.inter_channels,
            c.resblock,
            c.resblock_kernel_sizes,
            c.resblock_dilation_sizes,
            c.upsample_rates,
            c.upsample_initial_channel,
            c.upsample_kernel_sizes,
            c.gin_channels,
        )
        self.flow = ResidualCouplingBlock(
            c.inter_channels,
            c.hidden_channels,
            kernel_size=5,
            dilation_rate=1,
            n_layers=4,
            gin_channels=c.gin_channels,
        )
        self.ref_bins = c.spec_channels if c.version == "v1" else REF_BINS_V2
        self.ref_enc = MelStyleEncoder(self.ref_bins, c.gin_channels)
        ssl_kernel = 2 if c.semantic_frame_rate == "25hz" else 1  # 50 Hz HuBERT -> 25 Hz codes
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, ssl_kernel, stride=ssl_kernel)
        self.quantizer = ResidualVectorQuantizer(SSL_DIM, CODEBOOK_SIZE, n_q=1)
        if c.is_pro:
            self.sv_emb = nn.Linear(SV_DIM, c.gin_channels)
            self.ge_to512 = nn.Linear(c.gin_channels, MRTE_GE_CHANNELS)
            self.prelu = nn.PReLU(num_parameters=c.gin_channels)

    def fuse_weight_norm(self) -> SynthesizerTrn:
        """Fold every weight_g/weight_v pair into a plain weight (inference speed; renames those keys)."""
        for module in self.modules():
            if isinstance(module, WeightNormConv1d) and module.weight is None:
                module.fuse_weight_norm()
        return self

    @torch.inference_mode()
    def extract_latent(self, ssl: Tensor) -> Tensor:
        """HuBERT features (B, 768, T50) -> semantic codes (B, 1, T25)."""
        x = self.ssl_proj(ssl)  # (B, 768, T25)
        return self.quantizer.encode(x).transpose(0, 1)  # (B, n_q, T25)

    def reference_embedding(self, refer_specs: list[Tensor], sv_embs: list[Tensor] | None = None) -> Tensor:
        """Linear spectrograms [(1, 1025, T_i)] (+ v2Pro speaker embeddings [(1, 20480)]) -> ge (1, gin, 1).

        v2: the mean of the per-reference style vectors. v2Pro/v2ProPlus: each reference's vector is fused
        with its own speaker embedding first, and the fused vectors are averaged (models.py decode).
        """
        if not self.config.is_pro:
            ges = [self.ref_enc(spec[:, : self.ref_bins]) for spec in refer_specs]  # [(1, gin, 1)]
            return torch.stack(ges, 0).mean(0)
        if sv_embs is None or len(sv_embs) != len(refer_specs):
            raise ValueError(
                f"a {self.config.version} voice needs one speaker embedding per reference "
                f"({len(refer_specs)} references, {0 if sv_embs is None else len(sv_embs)} embeddings)"
            )
        ges = []
        for spec, sv in zip(refer_specs, sv_embs, strict=True):
            ge = self.ref_enc(spec[:, : self.ref_bins])  # (1, gin, 1)
            sv = sv.to(ge.dtype)
            ges.append(self.prelu(ge + self.sv_emb(sv).unsqueeze(-1)))  # (1, gin, 1)
        return torch.stack(ges, 0).mean(0)

    @torch.inference_mode()
    def decode(
        self,
        codes: Tensor,
        text: Tensor,
        refer_specs: list[Tensor],
        *,
        noise_scale: float = 0.5,
        speed: float = 1.0,
        noise: Tensor | None = None,
        vocoder_bf16: bool = False,
        sv_embs: list[Tensor] | None = None,
    ) -> Tensor:
        """codes (1, 1, T25), phone ids (1, L), reference spectrograms -> waveform (1, 1, N) in [-1, 1].

        N = samples_per_code * T25 at speed 1, else 640 * (int(2 * T25 / speed) + 1). `noise` replaces the
        official randn_like(m_p) draw (same shape as m_p). `vocoder_bf16` runs the HiFi-GAN convolutions
        under bf16 autocast (the output layer stays fp32): 1.8x faster on this AVX-512 BF16 CPU; stated
        tolerance 1e-2 absolute against fp32 (2.4e-3 observed on the reference vectors). `sv_embs`: one
        speaker embedding (1, 20480) per reference, required for v2Pro/v2ProPlus (speaker.py).
        """
        z, ge = self.latent(codes, text, refer_specs, noise_scale=noise_scale, speed=speed, noise=noise, sv_embs=sv_embs)
        return self.vocode(z, ge, bf16=vocoder_bf16)

    @torch.inference_mode()
    def latent(
        self,
        codes: Tensor,
        text: Tensor,
        refer_specs: list[Tensor],
        *,
        noise_scale: float = 0.5,
        speed: float = 1.0,
        noise: Tensor | None = None,
        sv_embs: list[Tensor] | None = None,
        ge: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The first half of `decode`: the vocoder's input z (1, inter, T') and the reference embedding ge
        (1, gin, 1); pass `ge` to reuse one already computed from the same references."""
        if ge is None:
            ge = self.reference_embedding(refer_specs, sv_embs)  # (1, gin, 1)
        ge_text = self.ge_to512(ge.transpose(1, 2)).transpose(1, 2) if self.config.is_pro else ge  # (1, 512, 1)
        # codes are (B, n_q, T25) as extract_latent returns them; the official passes them as (n_q, B, T25)
        quantized = self.quantizer.decode(codes.transpose(0, 1))  # (1, 768, T25)
        if self.config.semantic_frame_rate == "25hz":
            quantized = quantized.repeat_interleave(2, dim=2)  # (1, 768, T50): nearest upsampling
        m_p, logs_p, y_mask = self.enc_p(quantized, text, ge_text, speed)  # (1, inter, T'), y_mask (1, 1, T')
        if noise is None:
            noise = torch.randn_like(m_p)  # drawn even at noise_scale 0, like the official (RNG stream)
        z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        return self.flow(z_p, ge, reverse=True), ge  # (1, inter, T'), (1, gin, 1)

    @torch.inference_mode()
    def vocode(self, z: Tensor, ge: Tensor, *, bf16: bool = False) -> Tensor:
        """The HiFi-GAN half of `decode`: z (1, inter, T') -> waveform (1, 1, 640 * T'), fp32."""
        autocast = torch.autocast(z.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            wav = self.dec(z, ge)  # (1, 1, 640 * T')
        return wav.float()


def spectrogram(
    wav: Tensor, n_fft: int = 2048, hop: int = 640, win: int = 2048, center: bool = False
) -> Tensor:
    """Linear magnitude spectrogram as mel_processing.spectrogram_torch: (B, N) -> (B, n_fft/2+1, frames).

    Reflect padding of (n_fft - hop) / 2 on each side, periodic Hann window, sqrt(re^2 + im^2 + 1e-8).
    """
    pad = (n_fft - hop) // 2
    wav = torch.nn.functional.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)  # (B, N + 2 pad)
    window = torch.hann_window(win, dtype=wav.dtype, device=wav.device)
    spec = torch.stft(
        wav,
        n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=center,
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (B, F, frames)
    return torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-8)


def sovits_conformance(
    model: SynthesizerTrn, v: dict[str, np.ndarray], sv_embs: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Recompute, from the stored inputs of a reference vectors.npz, every SoVITS-side array it defines.

    v2 sets take their codes from the GPT runs (gpt_tokens_tts_kept, batch_tokens_tts_kept_i); v2Pro sets
    store them as inputs (sovits_codes, codes_1, codes_2) and need the references' speaker embeddings
    (`sv_embs["sv_emb"]`, `sv_embs["sv_emb2"]`, as speaker.py computes them).
    """
    c = model.config
    t = {name: torch.from_numpy(np.asarray(array)) for name, array in v.items()}
    recorded: dict[str, list[Tensor]] = {}

    def keep(*names: str):
        """A forward hook recording the module's output(s) under `names` (returns None: output unchanged)."""

        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            values = output if len(names) > 1 else (output,)
            for name, value in zip(names, values, strict=False):
                recorded.setdefault(name, []).append(value)

        return hook

    def keep_ge(module: nn.Module, args: tuple) -> None:
        recorded.setdefault("ge", []).append(args[1])

    hooks = [
        model.enc_p.register_forward_hook(keep("m_p", "logs_p", "y_mask")),
        model.flow.register_forward_hook(keep("z")),
        model.dec.register_forward_pre_hook(keep_ge),
        model.ref_enc.register_forward_hook(keep("ge_ref")),
    ]
    if c.is_pro:
        hooks += [
            model.sv_emb.register_forward_hook(keep("sv_proj")),
            model.prelu.register_forward_hook(keep("ge_fused")),
            model.ge_to512.register_forward_hook(keep("ge512")),
        ]
    out: dict[str, np.ndarray] = {}

    def spec(wav: Tensor) -> Tensor:
        return spectrogram(wav, c.filter_length, c.hop_length, c.win_length)

    def run(prefix: str, codes: Tensor, phones: Tensor, specs: list[Tensor], names: dict[str, tuple], **kw: Any):
        recorded.clear()
        if c.is_pro:
            assert sv_embs is not None, "a v2Pro set needs the speaker embeddings"
            kw["sv_embs"] = [torch.from_numpy(sv_embs[k]) for k in ("sv_emb", "sv_emb2")[: len(specs)]]
        wav = model.decode(codes[None, None], phones[None], specs, **kw)
        out[f"wav_{prefix}"] = wav.numpy()
        for name, (source, index) in names.items():
            out[f"{prefix}_{name}"] = recorded[source][index].float().numpy()

    single = {n: (n, 0) for n in ("m_p", "logs_p", "y_mask", "z")}
    try:
        with torch.inference_mode():
            out["prompt_semantic"] = model.extract_latent(t["hubert_feature"])[0, 0].numpy()
            refer_spec, refer_spec2 = spec(t["ref_wav_32k"]), spec(t["ref_wav2_32k"])
            out["refer_spec"], out["refer_spec2"] = refer_spec.numpy(), refer_spec2.numpy()
            phones = t["text_phones_0"]
            if c.is_pro:
                codes, kept = t["sovits_codes"], [t["sovits_codes"], t["codes_1"], t["codes_2"]]
                a_names = {"ge_ref": ("ge_ref", 0), "sv_proj": ("sv_proj", 0), "ge": ("ge", 0),
                           "ge512": ("ge512", 0), **single}
                d_names = {"ge_ref2": ("ge_ref", 1), "ge2": ("ge_fused", 1), "ge": ("ge", 0), "ge512": ("ge512", 0)}
            else:
                codes, kept = t["gpt_tokens_tts_kept"], [t[f"batch_tokens_tts_kept_{i}"] for i in range(3)]
                out["sovits_codes"] = codes.numpy()
                a_names, d_names = {"ge": ("ge", 0), **single}, {"ge": ("ge", 0)}
            run("A", codes, phones, [refer_spec], a_names, noise_scale=0.0)
            run("B", codes, phones, [refer_spec], single, noise_scale=0.5, speed=1.25, noise=t["noise_B"])
            run("C", codes, phones, [refer_spec], {}, noise_scale=0.5, noise=t["noise_C"])
            run("D", codes, phones, [refer_spec, refer_spec2], d_names, noise_scale=0.0)
            # TTS.run "parallel" decode: one decode over the concatenated batch, cut at samples_per_code * len
            e_codes = torch.cat(kept)
            e_phones = torch.cat([t[f"text_phones_{i}"] for i in range(3)])
            out["E_codes"], out["E_phones"] = e_codes.numpy(), e_phones.numpy()
            run("E", e_codes, e_phones, [refer_spec], {}, noise_scale=0.5, noise=t["noise_E"])
            out["E_frag_end"] = np.cumsum([len(k) * c.samples_per_code for k in kept]).astype(np.int64)
    finally:
        for hook in hooks:
            hook.remove()
    return out
