"""Reading official GPT-SoVITS checkpoint files safely and strictly.

GPT `.ckpt` = torch.save({"weight": {"model.…": fp16 tensor}, "config": s1 yaml dict, "info": str}).
SoVITS `.pth` = the same shape of dict with the s2.json hps as "config" and no training-only `enc_q.*` keys.
v3/v4/v2Pro files overwrite the zip's first two bytes ("PK") with a version marker; v1 files are plain zips
whose text embedding has 322 rows (v2: 732). Only v2 is accepted, and the message names what was found.

Uploads are untrusted: loading goes through `torch.load(weights_only=True)`, which rebuilds tensors and plain
containers only and refuses any other pickled object.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The official process_ckpt marks files by their first two bytes instead of the zip's "PK".
VERSION_MARKERS = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3 (LoRA)",
    b"04": "v4 (LoRA)",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
    b"07": "v4",
}
V1_TEXT_SYMBOLS = 322
V2_TEXT_SYMBOLS = 732


class CheckpointError(ValueError):
    """A checkpoint file that Herald cannot use; the message says what was wrong and where."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{Path(path).name}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Checkpoint:
    path: str
    weights: dict[str, torch.Tensor]
    config: dict[str, Any]
    info: str
    version: str


def read_checkpoint(path: str | Path, *, kind: str) -> Checkpoint:
    """Open a GPT (`kind="gpt"`) or SoVITS (`kind="sovits"`) file; no model is built yet."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    if len(raw) < 64:
        raise CheckpointError(path, f"is only {len(raw)} bytes: not a checkpoint (empty or truncated upload?)")
    head = raw[:2]
    version = "v2"
    if head != b"PK":
        if head not in VERSION_MARKERS:
            raise CheckpointError(
                path, f"is not a PyTorch checkpoint (it starts with {head!r}; a torch.save file starts with b'PK')"
            )
        version = VERSION_MARKERS[head]
        if version != "v2":
            raise CheckpointError(
                path, f"is a GPT-SoVITS {version} {kind} file; Herald runs GPT-SoVITS v2 voices only"
            )
        raw = b"PK" + raw[2:]
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise CheckpointError(path, "is truncated or corrupted (its zip directory is missing)")
    # torch does not verify the stored checksums; a flipped byte inside a tensor would load silently.
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(path, f"is truncated or corrupted ({exc})") from exc
    if damaged is not None:
        raise CheckpointError(path, f"is corrupted: {damaged} fails its checksum (damaged upload or disk?)")
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            path,
            "contains Python objects other than tensors and plain containers; refusing to unpickle it "
            f"({str(exc).splitlines()[0][:200]})",
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError(path, f"is truncated or corrupted ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(payload, Mapping) or "weight" not in payload or "config" not in payload:
        found = sorted(payload)[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(
            path, f"is not a GPT-SoVITS {kind} file: expected keys 'weight' and 'config', found {found}"
        )
    weights, config = payload["weight"], payload["config"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(path, "its 'weight' entry is not a mapping of names to tensors")
    if not isinstance(config, Mapping):
        raise CheckpointError(path, "its 'config' entry is not a dictionary")
    return Checkpoint(
        path=str(path), weights=dict(weights), config=dict(config), info=str(payload.get("info", "")), version=version
    )


def gpt_state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The decoder's state dict: the Lightning "model." prefix removed, v1 files refused."""
    model_cfg = checkpoint.config.get("model", {})
    if not isinstance(model_cfg, Mapping):
        raise CheckpointError(checkpoint.path, "config['model'] is missing: not a GPT (s1) checkpoint")
    if "enc_p.text_embedding.weight" in checkpoint.weights:
        raise CheckpointError(checkpoint.path, "is a SoVITS (.pth) file, but a GPT (.ckpt) file was expected")
    embedding = checkpoint.weights.get("model.ar_text_embedding.word_embeddings.weight")
    symbols = int(embedding.shape[0]) if embedding is not None else model_cfg.get("phoneme_vocab_size")
    if symbols in (512, V1_TEXT_SYMBOLS):
        raise CheckpointError(checkpoint.path, f"is a GPT-SoVITS v1 GPT file ({symbols} phone symbols); "
                                               "Herald runs v2 voices only")
    state = {}
    for key, tensor in checkpoint.weights.items():
        if not key.startswith("model."):
            raise CheckpointError(checkpoint.path, f"unexpected key {key!r}: GPT weights are stored under 'model.'")
        state[key[len("model."):]] = tensor
    return state


def sovits_state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The synthesizer's state dict, with v1 and v2Pro files refused by their shapes."""
    if any(key.startswith("model.") for key in checkpoint.weights):
        raise CheckpointError(checkpoint.path, "is a GPT (.ckpt) file, but a SoVITS (.pth) file was expected")
    embedding = checkpoint.weights.get("enc_p.text_embedding.weight")
    if embedding is None:
        raise CheckpointError(checkpoint.path, "has no enc_p.text_embedding.weight: not a SoVITS checkpoint")
    if embedding.shape[0] == V1_TEXT_SYMBOLS:
        raise CheckpointError(
            checkpoint.path, f"is a GPT-SoVITS v1 SoVITS file ({V1_TEXT_SYMBOLS} text symbols); Herald runs v2 only"
        )
    declared = str(checkpoint.config.get("model", {}).get("version", "v2"))
    if declared not in ("v2",) or any(key.startswith("sv_emb") for key in checkpoint.weights):
        raise CheckpointError(checkpoint.path, f"is a GPT-SoVITS {declared} SoVITS file; Herald runs v2 only")
    return {key: tensor for key, tensor in checkpoint.weights.items() if not key.startswith("enc_q.")}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, path: str) -> None:
    """Every key, every shape, or a CheckpointError that lists what differs."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model expects {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if items:
            shown = ", ".join(items[:5]) + (f" … ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(path, "does not match the model its config describes — " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
