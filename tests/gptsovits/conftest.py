"""Fixtures for the whole-path GPT-SoVITS tests: tiny BERT/HuBERT and a speech-like reference clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.frontend.tiny_models import write_tiny_bert, write_tiny_hubert

TRANSCRIPT = "嗯，好的，我明白了，谢谢您。"
SCRIPT = "您好张先生，您的订单明天下午送达。确认请按一，改期请按二。"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("frontend-models")
    characters = TRANSCRIPT + SCRIPT + "零一二三四五六七八九十点号月日年元幺"
    return write_tiny_bert(root / "bert", characters), write_tiny_hubert(root / "hubert")


@pytest.fixture
def configured(models, monkeypatch):
    bert, hubert = models
    monkeypatch.setenv("HERALD_BERT_DIR", str(bert))
    monkeypatch.setenv("HERALD_HUBERT_DIR", str(hubert))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def reference_clip(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    rate, seconds = 32000, 4.0
    t = np.arange(int(rate * seconds)) / rate
    speechy = (0.2 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
               + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    path = tmp_path_factory.mktemp("clip") / "reference.wav"
    sf.write(path, speechy, rate)
    return path


