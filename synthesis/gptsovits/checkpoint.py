"""Reading official GPT-SoVITS checkpoint files safely and strictly.

GPT `.ckpt` = torch.save({"weight": {"model.…": fp16 tensor}, "config": s1 yaml dict, "info": str}).
SoVITS `.pth` = the same shape of dict with the s2 hps as "config" and no training-only `enc_q.*` keys. The
training WebUI (`process_ckpt.savee`) stores that config as a pickled `utils.HParams` object, and for v2Pro /
v2ProPlus (and v3/v4 LoRA) overwrites the zip's first two bytes "PK" with a version marker (`my_save2`).
v1 files are plain zips whose text embedding has 322 rows (v2: 732).

Uploads are untrusted. Loading goes through `torch.load(weights_only=True)`, which rebuilds tensors and plain
containers only; the one extra name it is allowed to rebuild is `utils.HParams`, and what it builds for that
name is `_InertHParams`, a stand-in of ours that only keeps a dictionary (never the official class, never
code from the file). Before anything is unpickled, the zip directory is checked: torch writes every member
uncompressed, so a compressed member (a zip bomb) is refused without inflating a byte.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
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
SUPPORTED_VERSIONS = ("v2", "v2Pro", "v2ProPlus")
V1_TEXT_SYMBOLS = 322
V2_TEXT_SYMBOLS = 732
MAX_CHECKPOINT_BYTES = 1 << 30  # the largest official file (v3 SoVITS) is ~750 MB; Herald's are under 200 MB

_ADVICE = {
    "v1": "retrain the voice as v2Pro (the official WebUI's default since June 2025) or v2",
    "v3": "v3 and v4 decode with a diffusion model Herald does not run: train the voice as v2Pro or "
    "v2ProPlus instead (same data, similar quality at a fraction of the cost), or make an instant voice from "
    "its reference clip",
}
_ADVICE["v4"] = _ADVICE["v3"]
_ADVICE["LoRA"] = (
    "LoRA files hold only the changes to the v3/v4 base model, which Herald does not run: train the voice as "
    "v2Pro or v2ProPlus instead, or make an instant voice from its reference clip"
)


def refusal(version: str, kind: str, detail: str = "") -> str:
    """The message for a file of an unsupported version: what was found and what to do instead."""
    family = "LoRA" if "LoRA" in version else version.split()[0].split("/")[0]
    advice = _ADVICE.get(family, "upload a v2, v2Pro or v2ProPlus file")
    return f"is a GPT-SoVITS {version} {kind} file{detail}; Herald runs v2, v2Pro and v2ProPlus voices: {advice}"


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
    version: str  # from the header marker: "v2" for a plain zip (v1 is told apart later, by shapes)


class _InertHParams:
    """What `utils.HParams` in a WebUI file is rebuilt as: a dictionary of its attributes, nothing more.

    torch's weights-only unpickler creates it with `__new__` and hands it the pickled attribute dict through
    `__setstate__`; no method of the official class exists here, so nothing from the file can run.
    """

    __slots__ = ("values",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError("utils.HParams state is not a dictionary of names")
        self.values = state


_ALLOWED = [(_InertHParams, "utils.HParams")]


def _plain(value: Any, depth: int = 0) -> Any:
    """HParams stand-ins and OrderedDicts -> plain dicts, recursively (configs nest three levels deep)."""
    if depth > 16:
        raise ValueError("config nests more than 16 levels")
    if isinstance(value, _InertHParams):
        value = getattr(value, "values", {})
    if isinstance(value, Mapping):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    return value


def _check_archive(path: Path, raw: bytes) -> None:
    """The zip directory describes an uncompressed torch archive that fits in the file; checksums match.

    Reads the directory only, then CRC-checks members whose bytes are already in memory: nothing is
    inflated, so a crafted archive costs no more than its own size.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(path, f"is truncated or corrupted ({exc})") from exc
    with archive:
        members = archive.infolist()
        declared = sum(m.file_size for m in members)
        compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise CheckpointError(
                path,
                f"is not a torch.save file: {len(compressed)} member(s) are compressed ({compressed[0]}, "
                f"{declared:,} bytes declared in all); torch writes checkpoints uncompressed",
            )
        if declared > len(raw):
            raise CheckpointError(path, f"is corrupted: its members declare {declared:,} bytes in a "
                                        f"{len(raw):,}-byte file")
        # torch does not verify the stored checksums; a flipped byte inside a tensor would load silently.
        try:
            damaged = archive.testzip()  # stored members only: reads each once, inflates nothing
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(path, f"is truncated or corrupted ({exc})") from exc
    if damaged is not None:
        raise CheckpointError(path, f"is corrupted: {damaged} fails its checksum (damaged upload or disk?)")


def _why(exc: Exception) -> str:
    """The line of torch's weights-only refusal that says what was refused (its first line is boilerplate)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def unpickle_weights(path: Path, raw: bytes) -> Any:
    """`torch.load(weights_only=True)` of a torch.save file held in `raw` (a zip, or a legacy pickle): the
    zip directory checked first, `utils.HParams` rebuilt inert, anything else refused with the reason."""
    if raw[:2] == b"PK":
        _check_archive(path, raw)
    try:
        with torch.serialization.safe_globals(_ALLOWED):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            path,
            f"contains Python objects other than tensors and plain containers; refusing to unpickle it ({_why(exc)})",
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError(path, f"is truncated or corrupted ({type(exc).__name__}: {str(exc)[:200]})") from exc


def read_checkpoint(path: str | Path, *, kind: str, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Checkpoint:
    """Open a GPT (`kind="gpt"`) or SoVITS (`kind="sovits"`) file; no model is built yet."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(
                path, f"is {size / 2**20:,.0f} MB; the largest checkpoint accepted is {max_bytes / 2**20:,.0f} MB"
            )
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
        if version not in SUPPORTED_VERSIONS:
            raise CheckpointError(path, refusal(version, kind))
        raw = b"PK" + raw[2:]
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise CheckpointError(path, "is truncated or corrupted (its zip directory is missing)")
    payload = unpickle_weights(path, raw)
    del raw
    if not isinstance(payload, Mapping) or "weight" not in payload or "config" not in payload:
        found = sorted(payload)[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(
            path, f"is not a GPT-SoVITS {kind} file: expected keys 'weight' and 'config', found {found}"
        )
    if "lora_rank" in payload:
        raise CheckpointError(path, refusal("LoRA", kind))
    weights = payload["weight"]
    try:
        config = _plain(payload["config"])
    except ValueError as exc:
        raise CheckpointError(path, f"its 'config' entry is not usable ({exc})") from exc
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(path, "its 'weight' entry is not a mapping of names to tensors")
    if not isinstance(config, Mapping):
        raise CheckpointError(path, "its 'config' entry is not a dictionary")
    # A tensor may be a view far larger than its stored bytes (stride 0); converting it would allocate that.
    claimed = sum(t.numel() * t.element_size() for t in weights.values())
    if claimed > size + (1 << 20):
        raise CheckpointError(
            path, f"is crafted: its tensors claim {claimed:,} bytes but the whole file is {size:,} bytes"
        )
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
        raise CheckpointError(checkpoint.path, refusal("v1", "GPT", f" ({symbols} phone symbols)"))
    state = {}
    for key, tensor in checkpoint.weights.items():
        if not key.startswith("model."):
            raise CheckpointError(checkpoint.path, f"unexpected key {key!r}: GPT weights are stored under 'model.'")
        state[key[len("model."):]] = tensor
    return state


def sovits_version(checkpoint: Checkpoint) -> str:
    """v2, v2Pro or v2ProPlus, from the header marker and the weights; anything else is refused.

    Marked files say it in their first two bytes. Plain zips are v2 unless they carry the speaker-verification
    projection (`sv_emb`): the official pretrained s2Gv2Pro/s2Gv2ProPlus files are plain zips told apart by
    hash, so here their config (or, failing that, v2ProPlus's 20-wide first upsampling kernel) names them.
    """
    weights = checkpoint.weights
    embedding = weights.get("enc_p.text_embedding.weight")
    if embedding is None:
        raise CheckpointError(checkpoint.path, "has no enc_p.text_embedding.weight: not a SoVITS checkpoint")
    if embedding.shape[0] == V1_TEXT_SYMBOLS:
        raise CheckpointError(
            checkpoint.path, refusal("v1", "SoVITS", f" ({V1_TEXT_SYMBOLS} text symbols)")
        )
    if any(key.startswith(("cfm.", "bridge.")) for key in weights):
        raise CheckpointError(checkpoint.path, refusal("v3/v4", "SoVITS"))
    model_cfg = checkpoint.config.get("model", {})
    declared = str(model_cfg.get("version", "v2")) if isinstance(model_cfg, Mapping) else "v2"
    pro = "sv_emb.weight" in weights
    if checkpoint.version != "v2":  # a marked v2Pro / v2ProPlus file
        if not pro:
            raise CheckpointError(
                checkpoint.path,
                f"is marked {checkpoint.version} but has no speaker-verification layers (sv_emb): damaged or "
                "re-saved by another tool",
            )
        return checkpoint.version
    if not pro:
        return "v2"
    if declared in ("v2Pro", "v2ProPlus"):
        return declared
    kernels = model_cfg.get("upsample_kernel_sizes", [16]) if isinstance(model_cfg, Mapping) else [16]
    return "v2ProPlus" if list(kernels)[:1] == [20] else "v2Pro"


def sovits_state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The synthesizer's state dict (training-only enc_q removed); v1, v3 and v4 files refused."""
    if any(key.startswith("model.") for key in checkpoint.weights):
        raise CheckpointError(checkpoint.path, "is a GPT (.ckpt) file, but a SoVITS (.pth) file was expected")
    sovits_version(checkpoint)
    return {key: tensor for key, tensor in checkpoint.weights.items() if not key.startswith("enc_q.")}


def state_problems(module: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps `state` from strict-loading into `module` (which may live on the meta device)."""
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
    return problems


def check_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], *, path: str, what: str = "the model its config describes"
) -> None:
    """CheckpointError listing every missing, unexpected and misshaped key; `module` may be on the meta device."""
    problems = state_problems(module, state)
    if problems:
        raise CheckpointError(path, f"does not match {what} — " + "; ".join(problems))


def load_strict(
    module: nn.Module, state: Mapping[str, torch.Tensor], *, path: str, what: str = "the model its config describes"
) -> None:
    """Every key, every shape, or a CheckpointError that lists what differs."""
    check_state(module, state, path=path, what=what)
    expected = module.state_dict()
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def read_discriminator(path: str | Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """The weights of an official pretrained SoVITS discriminator (`s2D*.pth`, saved by the training code as
    {"model": state dict, "iteration", "optimizer", "learning_rate"}); only the "model" entry is kept."""
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise CheckpointError(path, f"is larger than {max_bytes / 2**20:,.0f} MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror})") from exc
    payload = unpickle_weights(path, raw)
    weights = payload.get("model", payload.get("weight")) if isinstance(payload, Mapping) else None
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(path, "is not a discriminator checkpoint: no 'model' mapping of names to tensors")
    if not any(str(k).startswith("discriminators.") for k in weights):
        raise CheckpointError(path, "holds no 'discriminators.…' weights: not a SoVITS discriminator")
    return {str(k): v for k, v in weights.items()}


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, rename, fsync the folder: a reader (or a worker
    killed midway) sees the old file or the new one, never part of either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
