"""Build the two networks from official files: config from the file, every key and shape checked.

The network a file's config describes is first built on the meta device (no memory) and compared with the
file's tensors; only a file whose every key and shape matches gets a real model. A crafted config asking for
a huge network is therefore refused at the cost of its own size, never allocated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from synthesis.gptsovits.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_state,
    gpt_state,
    load_strict,
    read_checkpoint,
    sovits_state,
    sovits_version,
)
from synthesis.gptsovits.sovits import SoVITSConfig, SynthesizerTrn
from synthesis.gptsovits.t2s import T2SConfig, Text2SemanticDecoder


def _build(
    path: str | Path,
    kind: str,
    state_of: Callable[[Checkpoint], dict],
    config_of: Callable[[Checkpoint], Any],
    model_cls: Callable[[Any], torch.nn.Module],
    label: str,
):
    checkpoint = read_checkpoint(path, kind=kind)
    state = state_of(checkpoint)
    try:
        config = config_of(checkpoint)
        with torch.device("meta"):
            skeleton = model_cls(config)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise CheckpointError(path, f"its config cannot describe a {label}: {exc}") from exc
    check_state(skeleton, state, path=str(path))
    model = model_cls(config)
    load_strict(model, state, path=str(path))
    return model


def load_gpt(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The text-to-semantic decoder of a GPT `.ckpt`, in eval mode."""
    model = _build(
        path, "gpt", gpt_state, lambda c: T2SConfig.from_checkpoint(c.config), Text2SemanticDecoder, "GPT"
    )
    return model.to(device=device, dtype=dtype).eval()


def load_sovits(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The synthesizer of a SoVITS `.pth` (v2, v2Pro, v2ProPlus), in eval mode (see fuse_weight_norm)."""
    def config_of(checkpoint: Checkpoint) -> SoVITSConfig:
        return SoVITSConfig.from_checkpoint(checkpoint.config, version=sovits_version(checkpoint))

    model = _build(path, "sovits", sovits_state, config_of, SynthesizerTrn, "SoVITS model")
    return model.to(device=device, dtype=dtype).eval()
