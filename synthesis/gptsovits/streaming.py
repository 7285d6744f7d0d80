"""Streaming synthesis: semantic codes, as the GPT samples them, turned into audio chunks as they come.

The first chunk goes out after `first` codes (160 ms of audio), the next ones every `chunk` codes (200 ms),
and once a second of audio is out, every `steady` codes (400 ms): the listener then has a buffer, and
longer chunks re-decode fewer context codes per second of audio, which is what keeps an fp32 stream faster
than real time on a 2-core CPU. A chunk is decoded from a window of the codes so far: the SoVITS latent (text encoder, MRTE, flow) is
recomputed over `context` codes of left context, and the vocoder runs over `vocoder_context` codes before
the new ones. The last `hold` codes of every window are only right context: their audio comes with the next
chunk, which sees the codes after them. Consecutive chunks overlap by `fade` samples, joined by an
equal-gain linear crossfade, so a joint never steps.

The streamed audio is not bit-identical to one decode of all the codes: the latent's attention sees a
window, not the whole text's codes. The difference is measured and bounded by tests/gptsovits/
test_streaming.py (STREAM_TOLERANCE there and in the README). The noise the latent adds is drawn frame by
frame (`FrameNoise`), so a window's noise is the same slice the whole decode would use.

Only speed 1 streams (another speed changes the frame count per code); callers render such texts whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FRAMES_PER_CODE = 2  # 25 Hz codes, 50 Hz latent frames


@dataclass(frozen=True)
class ChunkPlan:
    first: int = 4  # codes in the first chunk (160 ms): it goes out once first + hold codes exist
    chunk: int = 5  # codes per chunk after the first (200 ms) until `steady_after` codes have gone out
    steady_after: int = 25  # codes (1 s of audio, the listener's buffer) after which chunks are `steady` long
    steady: int = 10  # codes per chunk from then on (400 ms): fewer re-decoded context codes per second
    context: int = 12  # codes of left context the latent is recomputed over (480 ms; more changes nothing)
    vocoder_context: int = 3  # codes of left context the vocoder runs over (120 ms)
    hold: int = 3  # codes of right context held back until the next chunk (or the end): 2 doubles the error
    fade: int = 320  # samples crossfaded at each joint (10 ms at 32 kHz)

    def __post_init__(self) -> None:
        if min(self.first, self.chunk, self.steady) < 1 or min(
            self.context, self.vocoder_context, self.hold, self.fade, self.steady_after
        ) < 0:
            raise ValueError("chunk sizes must be >= 1 and contexts >= 0")
        if self.vocoder_context > self.context:
            raise ValueError("the vocoder's context cannot be longer than the latent's")


class FrameNoise:
    """The latent's standard-normal noise (1, C, frames), drawn one frame (all channels) after another.

    Any prefix is therefore the same whatever the final length: a window and the whole decode agree.
    """

    def __init__(self, channels: int, generator: torch.Generator, device: torch.device | str = "cpu"):
        self.channels = channels
        self.generator = generator
        self.device = device
        self.frames = torch.zeros(0, channels)  # (T, C), drawn on the CPU: the same numbers on every device

    def upto(self, frames: int) -> Tensor:
        if frames > self.frames.size(0):  # one draw per frame: torch's randn orders its numbers by call size
            more = [torch.randn(self.channels, generator=self.generator) for _ in range(frames - self.frames.size(0))]
            self.frames = torch.cat([self.frames, torch.stack(more)])
        return self.frames[:frames].t().unsqueeze(0).to(self.device)  # (1, C, frames)

    def window(self, start: int, end: int) -> Tensor:
        return self.upto(end)[:, :, start:end]


class ChunkDecoder:
    """Feed codes one at a time (`push`), then `finish`, each returning the audio chunks (float32, 32 kHz) that
    became ready; or hand `stream` an iterable of codes. `codes` keeps every code fed."""

    def __init__(
        self,
        sovits,
        text: Tensor,
        refer_specs: list[Tensor],
        *,
        noise: FrameNoise,
        noise_scale: float = 0.5,
        vocoder_bf16: bool = False,
        sv_embs: list[Tensor] | None = None,
        plan: ChunkPlan = ChunkPlan(),
    ) -> None:
        self.sovits = sovits
        self.text = text  # (1, L)
        self.specs = refer_specs
        self.noise = noise
        self.noise_scale = noise_scale
        self.bf16 = vocoder_bf16
        self.plan = plan
        self.spc = sovits.config.samples_per_code
        self.device = text.device
        with torch.inference_mode():
            self.ge = sovits.reference_embedding(refer_specs, sv_embs)  # (1, gin, 1), once per text
        self.sv_embs = sv_embs
        self.codes: list[int] = []
        self.done = 0  # codes whose audio has gone out (up to the joint)
        self.tail: np.ndarray | None = None  # the last chunk's `fade` samples past the joint

    def stream(self, codes: Iterable[int]) -> Iterator[np.ndarray]:
        """Audio chunks of `codes` as they arrive (the GPT's `stream`, or any list), then the rest at the end."""
        for code in codes:
            yield from self.push(code)
        yield from self.finish()

    def push(self, code: int) -> list[np.ndarray]:
        self.codes.append(code)
        p = self.plan
        ready = len(self.codes) - p.hold - self.done
        if ready >= (p.first if self.done == 0 else p.chunk if self.done < p.steady_after else p.steady):
            return [self._decode(len(self.codes), final=False)]
        return []

    def finish(self) -> list[np.ndarray]:
        if len(self.codes) == self.done and self.tail is None:
            return []
        return [self._decode(len(self.codes), final=True)]

    def _decode(self, end: int, *, final: bool) -> np.ndarray:
        p = self.plan
        joint = end if final else end - p.hold  # codes whose audio this chunk completes
        start = max(0, self.done - p.context)  # the latent's window [start, end)
        codes = torch.tensor(self.codes[start:end], device=self.device).view(1, 1, -1)
        with torch.inference_mode():
            noise = self.noise.window(FRAMES_PER_CODE * start, FRAMES_PER_CODE * end)
            z, ge = self.sovits.latent(
                codes, self.text, self.specs, noise_scale=self.noise_scale, noise=noise, ge=self.ge,
                sv_embs=self.sv_embs,
            )  # (1, inter, 2 (end - start))
            vstart = max(start, self.done - p.vocoder_context)
            wav = self.sovits.vocode(z[:, :, FRAMES_PER_CODE * (vstart - start) :], ge, bf16=self.bf16)
        wav = wav.view(-1).cpu().numpy()  # samples of codes [vstart, end)
        begin = (self.done - vstart) * self.spc
        stop = len(wav) if final else min(len(wav), (joint - vstart) * self.spc + p.fade)
        piece = wav[begin:stop].copy()
        if self.tail is not None:  # crossfade the previous chunk's overhang into this one's start
            n = min(len(self.tail), len(piece))
            ramp = (np.arange(1, n + 1, dtype=np.float32) / (n + 1)).astype(np.float32)
            piece[:n] = self.tail[:n] * (1 - ramp) + piece[:n] * ramp
        if final:
            self.tail = None
            out = piece
        else:
            keep = (joint - self.done) * self.spc
            out, self.tail = piece[:keep], piece[keep:]
        self.done = joint
        return out.astype(np.float32, copy=False)

