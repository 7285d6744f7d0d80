"""Build the two networks from official files: config from the file, every key and shape checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from synthesis.gptsovits.checkpoint import (
    CheckpointError,
    gpt_state,
    load_strict,
    read_checkpoint,
    sovits_state,
)


def _build(path: str | Path, kind: str, state_of: Callable, config_cls, model_cls, label: str):
    checkpoint = read_checkpoint(path, kind=kind)
    state = state_of(checkpoint)
    try:
        config = config_cls.from_checkpoint(checkpoint.config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"its config cannot describe a {label}: {exc}") from exc
    model = model_cls(config)
    load_strict(model, state, path=str(path))
    return model


def load_gpt(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The text-to-semantic decoder of a GPT `.ckpt`, in eval mode."""
    from synthesis.gptsovits.t2s import T2SConfig, Text2SemanticDecoder

    model = _build(path, "gpt", gpt_state, T2SConfig, Text2SemanticDecoder, "GPT")
    return model.to(device=device, dtype=dtype).eval()


def load_sovits(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The synthesizer of a SoVITS `.pth`, in eval mode (weight norm not yet folded: see fuse_weight_norm)."""
    from synthesis.gptsovits.sovits import SoVITSConfig, SynthesizerTrn

    model = _build(path, "sovits", sovits_state, SoVITSConfig, SynthesizerTrn, "SoVITS model")
    return model.to(device=device, dtype=dtype).eval()
