"""GPT-SoVITS engine: a cloned voice's texts rendered in one batched pass by models resident in the worker.

Models load on first use (never at import), stay resident, and several voices share a memory budget
(HERALD_GPTSOVITS_MEMORY_MB, least recently used leaves first). Residents are keyed by the sha256 of their
files, not by path: every instant voice of a version shares its one base pair, and trained voices uploaded
twice share one copy. v2Pro / v2ProPlus voices also need the speaker-verification model (ERes2NetV2), loaded
once per worker and shared by all of them (HERALD_GPTSOVITS_SV_MODEL, else the base directory's copy).

Turning text into phone ids and BERT features, and a reference clip into prompt codes (and, for Pro voices,
its speaker embedding), is the text frontend's job (`synthesis.engines.gptsovits_frontend`, built on first use from
HERALD_BERT_DIR / HERALD_HUBERT_DIR or the base directory); `synthesize_phones` takes phones and features
directly.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from synthesis.audio import Waveform
from synthesis.engines.base import Engine, EngineError, VoiceSpec
from synthesis.gptsovits.basemodels import ENV_BASE, SV_MODEL, base_dir, file_sha256

SAMPLE_RATE = 32000
PRECISIONS = ("fp32", "bf16", "int8")  # int8: bf16 weights and vocoder, one-row GPT steps on int8 weights
ENV_SV_MODEL = "HERALD_GPTSOVITS_SV_MODEL"
SENTENCE_PAUSE = 0.3  # seconds between the sentences of one script (official fragment_interval)
DEFAULTS: dict[str, Any] = {
    "top_k": 15,
    "top_p": 1.0,
    "temperature": 1.0,
    "repetition_penalty": 1.35,
    "noise_scale": 0.5,
    "speed": 1.0,
    "max_steps": 1500,
    "seed": 0,
}


@dataclass(frozen=True)
class TextFeatures:
    """One text as the GPT sees it: phone ids (T,) and BERT features (1024, T)."""

    phones: Any  # torch.LongTensor
    bert: Any  # torch.FloatTensor


@dataclass(frozen=True)
class VoicePrompt:
    """A voice's reference: transcript phones and features, its semantic codes, its spectrogram(s)."""

    phones: Any
    bert: Any
    semantic: Any  # (P,) LongTensor
    refer_specs: list = field(default_factory=list)  # [(1, 1025, T)]
    sv_embs: list = field(default_factory=list)  # [(1, 20480)], one per reference: v2Pro / v2ProPlus only


class Frontend(Protocol):
    def features(self, text: str, language: str) -> TextFeatures: ...

    def prompt(self, voice: VoiceSpec, sovits: Any, speaker: Any = None) -> VoicePrompt: ...


@dataclass
class ResidentVoice:
    gpt: Any
    sovits: Any
    nbytes: int


class VoiceModels:
    """Loaded model pairs keyed by their files' contents, evicted least-recently-used beyond a byte budget."""

    def __init__(self, budget_bytes: int, device: str, precision: str = "fp32") -> None:
        self.budget = budget_bytes
        self.device = device
        self.precision = precision
        self._voices: OrderedDict[tuple, ResidentVoice] = OrderedDict()
        self._lock = threading.Lock()
        self._speaker: Any = None
        self.loads = 0

    def get(self, voice: VoiceSpec) -> ResidentVoice:
        try:
            gpt_path, sovits_path = voice.weights["gpt"], voice.weights["sovits"]
        except KeyError:
            raise EngineError(f"voice {voice.voice_id} has no GPT (.ckpt) and SoVITS (.pth) files", permanent=True) from None
        try:  # hashed once per (path, size, mtime) per process
            key = (file_sha256(Path(gpt_path)), file_sha256(Path(sovits_path)))
        except OSError as exc:
            raise EngineError(f"voice {voice.voice_id}: cannot read its weight files ({exc})", permanent=True) from exc
        with self._lock:
            resident = self._voices.get(key)
            if resident is not None:
                self._voices.move_to_end(key)
                return resident
            resident = self._load(gpt_path, sovits_path)
            self._voices[key] = resident
            while len(self._voices) > 1 and sum(v.nbytes for v in self._voices.values()) > self.budget:
                self._voices.popitem(last=False)
            return resident

    def speaker(self) -> Any:
        """The speaker-verification model every v2Pro / v2ProPlus voice shares, loaded on first use."""
        # The model code needs torch, which only synthesis workers have: loaded with the first model.
        from synthesis.gptsovits.checkpoint import CheckpointError
        from synthesis.gptsovits.speaker import SpeakerEncoder

        with self._lock:
            if self._speaker is None:
                path = os.environ.get(ENV_SV_MODEL, "")
                base = base_dir()
                if not path and base is not None:
                    path = str(base / SV_MODEL)
                if not path or not Path(path).is_file():
                    raise EngineError(
                        "v2Pro / v2ProPlus voices need the speaker-verification model "
                        f"(pretrained_eres2netv2w24s4ep4.ckpt): {'not found at ' + path if path else 'not configured'}; "
                        f"set {ENV_BASE} (holding {SV_MODEL}) or {ENV_SV_MODEL}",
                        permanent=True,
                    )
                try:
                    self._speaker = SpeakerEncoder.load(path, device=self.device)
                except CheckpointError as exc:
                    raise EngineError(str(exc), permanent=True) from exc
            return self._speaker

    def _load(self, gpt_path: str, sovits_path: str) -> ResidentVoice:
        # torch and the model code load with the first model (only synthesis workers have torch).
        import torch

        from synthesis.gptsovits.checkpoint import CheckpointError
        from synthesis.gptsovits.loading import load_gpt, load_sovits

        if self.device.startswith("cuda"):
            dtype = torch.float16
        else:  # bf16 halves the GPT's weight reads on CPUs with AVX-512 BF16 (stated tolerance: README)
            dtype = torch.float32 if self.precision == "fp32" else torch.bfloat16
        try:
            gpt = load_gpt(gpt_path, device=self.device, dtype=dtype)
            if self.precision == "int8" and not self.device.startswith("cuda"):
                gpt.quantize_int8()  # one-row decoding steps on int8 weights (tolerance: README)
            sovits = load_sovits(sovits_path, device=self.device).fuse_weight_norm()
        except CheckpointError as exc:
            raise EngineError(str(exc), permanent=True) from exc
        except (RuntimeError, MemoryError) as exc:  # out of memory, device trouble: worth retrying later
            raise EngineError(f"could not load the voice's models: {exc}", permanent=False) from exc
        self.loads += 1
        nbytes = sum(t.numel() * t.element_size() for m in (gpt, sovits) for t in m.state_dict().values())
        nbytes += gpt.prepare_steps()  # bf16's prepacked or int8's copies of the projections count too
        return ResidentVoice(gpt=gpt, sovits=sovits, nbytes=nbytes)


def _seed_for(base: int, text_key: bytes) -> int:
    """Per-text seed: the same text in the same voice always samples the same codes (same key = same bytes)."""
    return int.from_bytes(hashlib.sha256(base.to_bytes(8, "big", signed=True) + text_key).digest()[:8], "big") >> 1


def _text_key(item: TextFeatures) -> bytes:
    return item.phones.cpu().numpy().astype("<i8").tobytes() + item.bert.float().cpu().numpy().astype("<f4").tobytes()


class GptSovitsEngine(Engine):
    name: ClassVar[str] = "gpt-sovits"
    # Part of every render key: bump when the frontend reads any text differently (v2.2: traditional
    # characters are simplified first; English words outside the dictionary go to g2p_en's model;
    # English homographs follow the word before them; dimensions say 乘 / "by". v2.3: polyphonic surnames
    # in name positions read as surnames; 的/地/得 read by their role).
    version: ClassVar[str] = "herald-gptsovits-v2.3"

    def __init__(
        self,
        *,
        frontend: Frontend | None = None,
        budget_mb: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ):
        budget = budget_mb if budget_mb is not None else int(os.environ.get("HERALD_GPTSOVITS_MEMORY_MB", "4096"))
        precision = precision or os.environ.get("HERALD_GPTSOVITS_PRECISION", "fp32")
        if precision not in PRECISIONS:
            raise EngineError(
                f"HERALD_GPTSOVITS_PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}", permanent=True
            )
        if device is None:
            device = os.environ.get("HERALD_GPTSOVITS_DEVICE", "")
            if not device:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
        self.frontend = frontend
        self.models = VoiceModels(budget * 1024 * 1024, device, precision)
        self._lock = threading.Lock()  # one batch at a time per process: the models are shared
        self._frontend_lock = threading.Lock()

    def describe_parameters(self, voice: VoiceSpec) -> dict:
        unknown = set(voice.parameters) - set(DEFAULTS)
        if unknown:
            raise EngineError(f"unknown GPT-SoVITS parameters: {', '.join(sorted(unknown))}", permanent=True)
        params = {**DEFAULTS, **voice.parameters}
        if not 0.5 <= float(params["speed"]) <= 2.0:
            raise EngineError("speed must be between 0.5 and 2.0", permanent=True)
        if not 0.0 <= float(params["noise_scale"]) <= 1.0:
            raise EngineError("noise_scale must be between 0 and 1", permanent=True)
        return params

    def _frontend(self) -> Frontend:
        with self._frontend_lock:
            if self.frontend is None:
                # Not at the top: that module builds on this one's TextFeatures and VoicePrompt (and loads
                # transformers), so it is imported when the first render needs it.
                from synthesis.engines.gptsovits_frontend import GptSovitsFrontend

                self.frontend = GptSovitsFrontend.from_environment(device=self.models.device)
            return self.frontend

    def synthesize(self, voice: VoiceSpec, texts: list[str]) -> list[Waveform]:
        """Scripts → audio: each script is split into sentences, all sentences of the batch go through the
        GPT together, and each script's sentences are joined with a short pause, as the official TTS does."""
        # The text frontend needs pypinyin and jieba, which only synthesis workers install.
        from synthesis.frontend.pipeline import split_sentences

        params = self.describe_parameters(voice)
        frontend = self._frontend()
        resident = self.models.get(voice)
        speaker = self.models.speaker() if resident.sovits.config.is_pro else None
        prompt = frontend.prompt(voice, resident.sovits, speaker)
        sentences = [split_sentences(text) or [text] for text in texts]
        items = [frontend.features(sentence, voice.language) for group in sentences for sentence in group]
        waves = iter(self._render(resident, params, prompt, items))
        pause = np.zeros(int(SENTENCE_PAUSE * SAMPLE_RATE), dtype=np.float32)
        joined = []
        for group in sentences:
            parts = [next(waves).samples for _ in group]
            pieces = [piece for part in parts for piece in (part, pause)][:-1]
            joined.append(Waveform(np.concatenate(pieces), SAMPLE_RATE))
        return joined

    def stream(self, voice: VoiceSpec, text: str) -> Iterator[Waveform]:
        """The text's audio in chunks: the first after a few semantic codes, then about every 200 ms of audio
        (synthesis.gptsovits.streaming), sentence after sentence with the usual pause between them.

        The codes are the ones the cached render samples (same per-text seed); the latent's noise is drawn
        frame by frame, so the waveform is a different draw of the same codes, not the cached bytes. Another
        speed than 1 cannot stream: such a text comes as one chunk.
        """
        # The text frontend needs pypinyin and jieba, which only synthesis workers install.
        from synthesis.frontend.pipeline import split_sentences

        params = self.describe_parameters(voice)
        if float(params["speed"]) != 1.0:
            yield from super().stream(voice, text)
            return
        frontend = self._frontend()
        resident = self.models.get(voice)
        speaker = self.models.speaker() if resident.sovits.config.is_pro else None
        prompt = frontend.prompt(voice, resident.sovits, speaker)
        pause = Waveform(np.zeros(int(SENTENCE_PAUSE * SAMPLE_RATE), dtype=np.float32), SAMPLE_RATE)
        for i, sentence in enumerate(split_sentences(text) or [text]):
            item = frontend.features(sentence, voice.language)
            if i:
                yield pause
            yield from self._locked(self._stream_item(resident, params, prompt, item))

    def _locked(self, chunks: Iterator[Waveform]) -> Iterator[Waveform]:
        """Advance `chunks` holding the engine's lock, and let go of it while the caller has a chunk."""
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def _stream_item(
        self, resident: ResidentVoice, params: dict, prompt: VoicePrompt, item: TextFeatures
    ) -> Iterator[Waveform]:
        # torch and the streaming decoder load with the first stream (only synthesis workers have torch).
        import torch

        from synthesis.gptsovits.streaming import ChunkDecoder, FrameNoise

        device = self.models.device
        gpt, sovits = resident.gpt, resident.sovits
        generator = torch.Generator(device=device).manual_seed(_seed_for(int(params["seed"]), _text_key(item)))
        codes = gpt.stream(
            torch.cat([prompt.phones, item.phones]), torch.cat([prompt.bert, item.bert], dim=1).to(gpt.dtype),
            prompt.semantic, top_k=int(params["top_k"]), top_p=float(params["top_p"]),
            temperature=float(params["temperature"]), repetition_penalty=float(params["repetition_penalty"]),
            max_steps=int(params["max_steps"]), generator=generator,
        )
        noise = FrameNoise(
            sovits.config.inter_channels,
            torch.Generator().manual_seed(_seed_for(int(params["seed"]), b"noise:" + _text_key(item))),
            device,
        )
        chunks = ChunkDecoder(
            sovits, item.phones.view(1, -1).to(device), [s.to(device) for s in prompt.refer_specs],
            noise=noise, noise_scale=float(params["noise_scale"]), vocoder_bf16=self.models.precision != "fp32",
            sv_embs=self._sv_embs(resident, prompt),
        ).stream(codes)
        produced = False
        try:
            for chunk in chunks:
                produced = True
                yield Waveform(chunk, SAMPLE_RATE)
        except torch.cuda.OutOfMemoryError as exc:
            raise EngineError("GPU out of memory streaming a text", permanent=False) from exc
        if not produced:
            raise EngineError("the GPT stopped before any audio: nothing to say for this text", permanent=True)

    def _sv_embs(self, resident: ResidentVoice, prompt: VoicePrompt) -> list | None:
        """A Pro voice's speaker embeddings on the device, one per reference clip (None for v2)."""
        if not resident.sovits.config.is_pro:
            return None
        if len(prompt.sv_embs) != len(prompt.refer_specs):
            raise EngineError(
                f"a {resident.sovits.config.version} voice needs a speaker embedding per reference clip "
                f"({len(prompt.refer_specs)} clips, {len(prompt.sv_embs)} embeddings)", permanent=True,
            )
        return [e.to(self.models.device) for e in prompt.sv_embs]

    def synthesize_phones(self, voice: VoiceSpec, prompt: VoicePrompt, items: list[TextFeatures]) -> list[Waveform]:
        """Render texts already turned into phones + features, all in one batched GPT pass."""
        params = self.describe_parameters(voice)  # fail on bad parameters before loading anything
        return self._render(self.models.get(voice), params, prompt, items)

    def _render(
        self, resident: ResidentVoice, params: dict, prompt: VoicePrompt, items: list[TextFeatures]
    ) -> list[Waveform]:
        import torch

        device = self.models.device
        with self._lock, torch.inference_mode():
            phones = [torch.cat([prompt.phones, item.phones]).to(device) for item in items]
            bert = [torch.cat([prompt.bert, item.bert], dim=1).to(device, resident.gpt.bert_proj.weight.dtype) for item in items]
            # One generator per text, seeded by the text itself: a text samples the same codes whatever else
            # shares its batch, so the same render key always gives the same bytes.
            generators = [
                torch.Generator(device=device).manual_seed(_seed_for(int(params["seed"]), _text_key(item)))
                for item in items
            ]
            try:
                generations = resident.gpt.generate(
                    phones, bert, prompt.semantic.to(device),
                    top_k=int(params["top_k"]), top_p=float(params["top_p"]),
                    temperature=float(params["temperature"]),
                    repetition_penalty=float(params["repetition_penalty"]),
                    max_steps=int(params["max_steps"]), mode="batched", generator=generators,
                )
                waves = []
                specs = [s.to(device) for s in prompt.refer_specs]
                sv_embs = self._sv_embs(resident, prompt)
                for item, generation in zip(items, generations, strict=True):
                    codes = generation.tokens.view(1, 1, -1)  # (1, 1, T25)
                    noise_seed = _seed_for(int(params["seed"]), b"noise:" + _text_key(item))
                    with torch.random.fork_rng(devices=[] if device == "cpu" else None):
                        torch.manual_seed(noise_seed)
                        wav = resident.sovits.decode(
                            codes, item.phones.view(1, -1).to(device), specs,
                            noise_scale=float(params["noise_scale"]), speed=float(params["speed"]),
                            vocoder_bf16=self.models.precision != "fp32", sv_embs=sv_embs,
                        )
                    waves.append(Waveform(np.ascontiguousarray(wav.view(-1).float().cpu().numpy()), SAMPLE_RATE))
            except torch.cuda.OutOfMemoryError as exc:
                raise EngineError(f"GPU out of memory rendering {len(items)} texts", permanent=False) from exc
        return waves
