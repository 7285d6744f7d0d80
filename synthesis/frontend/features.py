"""GPT-SoVITS v2 model features: BERT phone features, HuBERT content features and the reference prompt.

Re-implements the feature extraction of the official inference (RVC-Boss/GPT-SoVITS, commit 48b1a01):
`TextPreprocessor.get_bert_feature` / `get_bert_inf`, `feature_extractor/cnhubert.py` and
`TTS._set_prompt_semantic` / `_get_ref_spec`. The networks themselves are the transformers classes the
official code uses (BERT masked LM, HubertModel); only the glue is written here, because the official glue
keeps per-process global state and pulls in librosa and torchaudio. Models load only from local
directories (`local_files_only=True`), never from a hub name.

    text (L chars), word2ph (L) --BERT, hidden_states[-3] without [CLS]/[SEP]--> (L, 1024)
      --repeat char i word2ph[i] times--> (sum(word2ph), 1024) --T--> (1024, sum(word2ph))
    reference clip --mono, soxr--> wav16k (3..10 s) + 0.3 s zeros --HuBERT--> (1, 768, T50)
      --SoVITS extract_latent--> prompt codes (T25,)
    reference clip --mono, soxr--> wav32k --/min(2, peak) if peak > 1--> linear spectrogram (1, 1025, frames)
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from torch import Tensor

from synthesis.audio import AudioError, load_audio
from synthesis.gptsovits.sovits import spectrogram
from synthesis.gptsovits.speaker import resample_32k_to_16k

HUBERT_RATE = 16_000
SOVITS_RATE = 32_000  # v2 s2.json data.sampling_rate
MIN_REFERENCE_SAMPLES = 3 * HUBERT_RATE  # official bounds, checked on the 16 kHz clip before padding
MAX_REFERENCE_SAMPLES = 10 * HUBERT_RATE
PROMPT_TAIL_SAMPLES = int(HUBERT_RATE * 0.3)  # 0.3 s of silence appended before HuBERT, as the official


class ModelDirectoryError(FileNotFoundError):
    """A feature model directory is missing or does not hold a loadable model."""


class ReferenceClipError(ValueError):
    """A reference clip cannot be used as a GPT-SoVITS prompt (unreadable, or outside 3-10 s)."""


def _model_directory(model_dir: str | os.PathLike[str], what: str) -> Path:
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ModelDirectoryError(
            f"{what} model directory {directory} does not exist (models load only from disk)"
        )
    if not (directory / "config.json").is_file():
        raise ModelDirectoryError(f"{what} model directory {directory} has no config.json")
    return directory


def _from_pretrained(cls: Any, directory: Path, what: str) -> Any:
    """`cls.from_pretrained` on a local directory only; a missing file never turns into a download."""
    try:
        return cls.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelDirectoryError(f"{what} model directory {directory} cannot be loaded: {exc}") from exc


class BertFeatures:
    """chinese-roberta-wwm-ext-large phone-level features, as the official `get_bert_feature`."""

    def __init__(self, model_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.model_dir = _model_directory(model_dir, "BERT")
        self.device = torch.device(device)
        self.tokenizer = _from_pretrained(AutoTokenizer, self.model_dir, "BERT")
        self.model = _from_pretrained(AutoModelForMaskedLM, self.model_dir, "BERT").to(self.device).eval()
        self.hidden_size: int = self.model.config.hidden_size  # 1024 for the real model
        # Fast tokenizers raise "Already borrowed" when shared across threads; one call at a time.
        self._lock = threading.Lock()

    def features(self, norm_text: str, word2ph: list[int]) -> Tensor:
        """Normalised Chinese text, phones per character -> (hidden, sum(word2ph)) on the model device."""
        if len(word2ph) != len(norm_text):
            raise ValueError(
                f"word2ph has {len(word2ph)} entries for {len(norm_text)} characters of {norm_text!r}"
            )
        if any(n < 0 for n in word2ph):
            raise ValueError(f"word2ph has a negative phone count: {word2ph}")
        with self._lock, torch.inference_mode():
            inputs = self.tokenizer(norm_text, return_tensors="pt").to(self.device)
            out = self.model(**inputs, output_hidden_states=True)
            chars = out.hidden_states[-3][
                0, 1:-1
            ].float()  # (tokens, H): third-from-last layer, no [CLS]/[SEP]
        if chars.shape[0] != len(word2ph):
            raise ValueError(
                f"the BERT tokenizer split {norm_text!r} into {chars.shape[0]} tokens, not one per character "
                f"({len(word2ph)}); BERT features need one token per character of the normalised text"
            )
        counts = torch.tensor(word2ph, dtype=torch.long, device=chars.device)
        phones = chars.repeat_interleave(counts, dim=0)  # (sum(word2ph), H)
        return phones.T.contiguous()  # (H, sum(word2ph))

    def zeros(self, n_phones: int) -> Tensor:
        """The official BERT features of a non-Chinese segment: zeros (hidden, n_phones)."""
        return torch.zeros(self.hidden_size, n_phones, dtype=torch.float32, device=self.device)


def text_bert(segments: Any, bert: BertFeatures) -> Tensor:
    """BERT features (hidden, phones) of a frontend result's segments: Chinese segments from BERT, every other
    segment zeros, as the official inference and `1-get-text.py` do."""
    parts = []
    for segment in segments:
        if segment.language == "zh" and segment.word2ph is not None:
            parts.append(bert.features(segment.text, list(segment.word2ph)))  # (H, n)
        else:
            parts.append(bert.zeros(len(segment.phones)))
    return torch.cat(parts, dim=1) if parts else bert.zeros(0)


class HubertFeatures:
    """chinese-hubert-base content features (1, 768, T50), as the official inference computes them.

    The official `CNHubert` also loads a Wav2Vec2FeatureExtractor, but its inference callers
    (`TTS._set_prompt_semantic`, `inference_webui.get_tts_wav`) call `cnhubert.model` directly: the raw
    16 kHz waveform goes in unnormalised and unpadded. This class does the same, so the extractor's
    preprocessor_config.json is not read.
    """

    def __init__(self, model_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        from transformers import HubertModel

        self.model_dir = _model_directory(model_dir, "HuBERT")
        self.device = torch.device(device)
        self.model = _from_pretrained(HubertModel, self.model_dir, "HuBERT").to(self.device).eval()
        self.hidden_size: int = self.model.config.hidden_size  # 768 for the real model
        self._lock = threading.Lock()

    def features(self, wav16k: np.ndarray) -> Tensor:
        """Mono 16 kHz waveform (N,) -> last_hidden_state transposed, (1, hidden, ~N / 320)."""
        wav = np.asarray(wav16k, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"HuBERT expects a mono waveform (N,), got shape {wav.shape}")
        x = torch.from_numpy(np.ascontiguousarray(wav)).to(self.device, self.model.dtype)[None]  # (1, N)
        with self._lock, torch.inference_mode():
            hidden = self.model(x).last_hidden_state  # (1, T50, H)
        return hidden.transpose(1, 2)  # (1, H, T50)


def _resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return wav.astype(np.float32, copy=True)
    # soxr "HQ" is what librosa.load(sr=16000) uses (res_type soxr_hq) in the official prompt path.
    return soxr.resample(wav, rate, target, quality="HQ").astype(np.float32, copy=False)


def load_reference(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A reference clip -> (mono 16 kHz, mono 32 kHz) float32; ReferenceClipError unless it lasts 3-10 s."""
    try:
        wave = load_audio(path)  # mono float32 at the file's rate (librosa's to_mono / torchaudio mean(0))
    except AudioError as exc:
        raise ReferenceClipError(f"reference clip: {exc}") from exc
    mono, rate = wave.samples, wave.sample_rate
    wav16k = _resample(mono, rate, HUBERT_RATE)
    if not MIN_REFERENCE_SAMPLES <= wav16k.shape[0] <= MAX_REFERENCE_SAMPLES:
        raise ReferenceClipError(
            f"reference clip {path} is {wav16k.shape[0] / HUBERT_RATE:.2f} s long; "
            f"GPT-SoVITS needs a reference of 3 to 10 s"
        )
    return wav16k, _resample(mono, rate, SOVITS_RATE)


def hubert_input(wav16k: np.ndarray) -> np.ndarray:
    """The clip HuBERT sees in `_set_prompt_semantic`: the 16 kHz reference followed by 0.3 s of zeros."""
    return np.concatenate([np.asarray(wav16k, dtype=np.float32), np.zeros(PROMPT_TAIL_SAMPLES, np.float32)])


def prompt_semantic(sovits_model: Any, hubert_feats: Tensor) -> Tensor:
    """HuBERT features (1, 768, T50) -> the reference's semantic codes (T25,) via SoVITS extract_latent."""
    weight = next(sovits_model.parameters())
    codes = sovits_model.extract_latent(hubert_feats.to(weight.device, weight.dtype))  # (1, 1, T25)
    return codes[0, 0]


def peak_normalise(wav32k: np.ndarray) -> np.ndarray:
    """`_get_ref_spec`'s level rule: divide by min(2, peak) only when the peak exceeds 1."""
    wav = np.asarray(wav32k, dtype=np.float32)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    return wav / min(2.0, peak) if peak > 1.0 else wav.copy()


def reference_spectrogram(wav32k: np.ndarray, config: Any = None) -> Tensor:
    """32 kHz reference -> linear spectrogram (1, n_fft/2+1, frames) for the SoVITS speaker encoder.

    `config` is a SoVITSConfig (filter_length, hop_length, win_length); v2 defaults otherwise.
    """
    audio = torch.from_numpy(peak_normalise(wav32k))[None]  # (1, N)
    if config is None:
        return spectrogram(audio)
    return spectrogram(audio, config.filter_length, config.hop_length, config.win_length)


@dataclass(frozen=True)
class ReferencePrompt:
    """What a voice's reference clip contributes to every synthesis: prompt codes and speaker spectrogram."""

    prompt_semantic: Tensor  # (T25,) int64 codes
    refer_spec: Tensor  # (1, 1025, frames)
    sv_emb: Tensor | None = None  # (1, 20480) speaker embedding, v2Pro/v2ProPlus voices only


def speaker_embedding(wav32k: np.ndarray, speaker: Any) -> Tensor:
    """32 kHz reference -> its v2Pro speaker embedding (1, 20480), as `TTS._get_ref_spec` feeds the SV model:
    the peak-normalised 32 kHz wave resampled to 16 kHz with torchaudio's default sinc kernel (not the soxr
    16 kHz wave HuBERT hears)."""
    wav16k = resample_32k_to_16k(torch.from_numpy(peak_normalise(wav32k))[None])  # (1, N/2)
    return speaker.embed(wav16k)


def prepare_reference(
    path: str | os.PathLike[str], hubert: HubertFeatures, sovits_model: Any, speaker: Any = None
) -> ReferencePrompt:
    """A reference clip -> its ReferencePrompt, as `TTS.set_ref_audio` computes it (with the speaker
    embedding when `speaker`, the SV model of v2Pro voices, is given)."""
    wav16k, wav32k = load_reference(path)
    feats = hubert.features(hubert_input(wav16k))  # (1, 768, T50)
    weight = next(sovits_model.parameters())
    spec = reference_spectrogram(wav32k, getattr(sovits_model, "config", None))
    return ReferencePrompt(
        prompt_semantic=prompt_semantic(sovits_model, feats),
        refer_spec=spec.to(weight.device, weight.dtype),
        sv_emb=None if speaker is None else speaker_embedding(wav32k, speaker).to(weight.device),
    )


class PromptCache:
    """Each voice's ReferencePrompt, once per process: keyed by clip (path, mtime, size) and models."""

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple, tuple[weakref.ref, weakref.ref, ReferencePrompt]] = OrderedDict()
        # One lock held while computing: a prompt costs one HuBERT pass, and two workers asking for the
        # same new voice at once must not both compute it.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, path: str | os.PathLike[str], hubert: HubertFeatures, sovits_model: Any, speaker: Any = None
    ) -> ReferencePrompt:
        """The clip's ReferencePrompt for these models, computing it on first use or when the file changed."""
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise ReferenceClipError(f"cannot read reference clip {path}: {exc}") from exc
        # id() alone could be reused by a later model; the weak references below confirm identity.
        key = (str(resolved), stat.st_mtime_ns, stat.st_size, id(hubert), id(sovits_model), id(speaker))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is hubert and entry[1]() is sovits_model:
                self._entries.move_to_end(key)
                return entry[2]
            prompt = prepare_reference(resolved, hubert, sovits_model, speaker)
            self._entries[key] = (weakref.ref(hubert), weakref.ref(sovits_model), prompt)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
            return prompt
