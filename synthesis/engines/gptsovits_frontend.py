"""The GPT-SoVITS engine's frontend: script text → phones + BERT features; reference clip → prompt.

BERT (chinese-roberta-wwm-ext-large) and HuBERT (chinese-hubert-base) load from local directories named by
HERALD_BERT_DIR and HERALD_HUBERT_DIR, once per worker process; nothing is ever downloaded.
"""

from __future__ import annotations

import threading

import torch

from synthesis.engines.base import EngineError, VoiceSpec
from synthesis.engines.gptsovits import TextFeatures, VoicePrompt
from synthesis.frontend.config import ENV_BERT, ENV_HUBERT, configuration_problem, model_dir
from synthesis.frontend.features import (
    BertFeatures,
    HubertFeatures,
    PromptCache,
    ReferenceClipError,
    text_bert,
)
from synthesis.frontend.pipeline import FrontendResult, process


class GptSovitsFrontend:
    def __init__(self, bert_dir: str, hubert_dir: str, device: str = "cpu") -> None:
        self.bert = BertFeatures(bert_dir, device=device)
        self.hubert = HubertFeatures(hubert_dir, device=device)
        self.prompts = PromptCache()
        self._transcripts: dict[str, TextFeatures] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, device: str = "cpu") -> GptSovitsFrontend:
        problem = configuration_problem()
        if problem:
            raise EngineError(f"GPT-SoVITS text frontend is not configured: {problem}", permanent=True)
        return cls(model_dir(ENV_BERT), model_dir(ENV_HUBERT), device=device)

    def _features(self, result: FrontendResult) -> TextFeatures:
        bert = text_bert(result.segments, self.bert)  # (H, phones)
        return TextFeatures(phones=torch.tensor(result.phone_ids, dtype=torch.long), bert=bert)

    def features(self, text: str, language: str) -> TextFeatures:
        try:
            result = process(text, language="en" if language.startswith("en") else "zh")
        except ValueError as exc:
            raise EngineError(f"cannot read {text[:40]!r}: {exc}", permanent=True) from exc
        if not result.phone_ids:
            raise EngineError(f"nothing to say in {text[:40]!r}", permanent=True)
        return self._features(result)

    def prompt(self, voice: VoiceSpec, sovits, speaker=None) -> VoicePrompt:
        if not voice.reference_audio or not voice.reference_text.strip():
            raise EngineError(f"voice {voice.voice_id} needs a reference clip and its transcript", permanent=True)
        try:
            reference = self.prompts.get(voice.reference_audio, self.hubert, sovits, speaker)
        except ReferenceClipError as exc:
            raise EngineError(str(exc), permanent=True) from exc
        with self._lock:
            transcript = self._transcripts.get(voice.reference_text)
        if transcript is None:
            transcript = self.features(voice.reference_text, voice.language)
            with self._lock:
                self._transcripts[voice.reference_text] = transcript
        return VoicePrompt(
            phones=transcript.phones,
            bert=transcript.bert,
            semantic=reference.prompt_semantic,
            refer_specs=[reference.refer_spec],
            sv_embs=[] if reference.sv_emb is None else [reference.sv_emb],
        )
