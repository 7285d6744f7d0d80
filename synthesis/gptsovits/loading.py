"""Build the two networks from official files: config from the file, every key and shape checked."""

from __future__ import annotations

from pathlib import Path

import torch

from synthesis.gptsovits.checkpoint import (
    CheckpointError,
    gpt_state,
    load_strict,
    read_checkpoint,
    sovits_state,
)


def load_gpt(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The text-to-semantic decoder of a GPT `.ckpt`, in eval mode."""
    from synthesis.gptsovits.t2s import T2SConfig, Text2SemanticDecoder

    checkpoint = read_checkpoint(path, kind="gpt")
    state = gpt_state(checkpoint)
    try:
        config = T2SConfig.from_checkpoint(checkpoint.config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"its config cannot describe a GPT: {exc}") from exc
    model = Text2SemanticDecoder(config)
    load_strict(model, state, path=str(path))
    return model.to(device=device, dtype=dtype).eval()


def load_sovits(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The synthesizer of a SoVITS `.pth`, in eval mode."""
    from synthesis.gptsovits.sovits import SoVITSConfig, SynthesizerTrn

    checkpoint = read_checkpoint(path, kind="sovits")
    state = sovits_state(checkpoint)
    try:
        config = SoVITSConfig.from_checkpoint(checkpoint.config)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"its config cannot describe a SoVITS model: {exc}") from exc
    model = SynthesizerTrn(config)
    load_strict(model, state, path=str(path))
    return model.to(device=device, dtype=dtype).eval()
