"""Random-weight checkpoints in the official file format, built from the shared key/shape manifests.

For tests and benchmarks only: a full-size v2 pair (or a v2Pro / v2ProPlus SoVITS file) that loads exactly like a trained voice, without
downloading anything. Weights are N(0, std) in fp16, as the official savers store them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

S2_DATA = {
    "max_wav_value": 32768.0,
    "sampling_rate": 32000,
    "filter_length": 2048,
    "hop_length": 640,
    "win_length": 2048,
    "n_mel_channels": 128,
    "mel_fmin": 0.0,
    "mel_fmax": None,
    "add_blank": True,
    "n_speakers": 300,
    "cleaned_text": True,
}


def _random_state(keys: dict, *, seed: int, std: float, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, spec in keys.items():
        if any(part in name for part in skip):
            continue
        shape = tuple(spec["shape"])
        if name.endswith("_codebook.inited"):
            tensor = torch.ones(shape)
        elif name.endswith(("alpha", "gamma", "norm1.weight", "norm2.weight", "weight_g", "cluster_size")):
            tensor = torch.ones(shape) + std * torch.randn(shape, generator=generator)
        else:
            tensor = std * torch.randn(shape, generator=generator)
        state[name] = tensor.half()
    return state


# process_ckpt's markers: the first two bytes of a v2Pro / v2ProPlus SoVITS file replace the zip's "PK".
MARKERS = {"v2Pro": b"05", "v2ProPlus": b"06"}


def save_official(payload: dict, path: str | Path, version: str = "v2") -> Path:
    """torch.save `payload` as the official savers write it: with the version marker for v2Pro/v2ProPlus."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path.write_bytes(MARKERS[version] + data[2:] if version in MARKERS else data)
    return path


def write_random_sovits(
    path: str | Path, manifest: str | Path, *, seed: int = 1, std: float = 0.02, version: str | None = None
) -> Path:
    """A full-size random SoVITS file from a key/shape manifest (v2, v2Pro or v2ProPlus), enc_q dropped."""
    sovits_manifest = json.loads(Path(manifest).read_text())
    hps_model = dict(sovits_manifest["hps_model"])
    version = version or str(hps_model.get("version", "v2"))
    return save_official(
        {
            "weight": _random_state(sovits_manifest["keys"], seed=seed, std=std, skip=("enc_q.",)),
            "config": {"data": dict(S2_DATA), "model": hps_model},
            "info": f"random full-size {version} SoVITS (seed {seed})",
        },
        path,
        version,
    )


def write_random_pair(folder: str | Path, manifests: str | Path, *, seed: int = 0, std: float = 0.02) -> tuple[Path, Path]:
    """Write `gpt.ckpt` and `sovits.pth` (full-size v2 layout) into `folder`; returns their paths."""
    folder, manifests = Path(folder), Path(manifests)
    folder.mkdir(parents=True, exist_ok=True)
    gpt_manifest = json.loads((manifests / "manifest_v2_gpt.json").read_text())
    gpt_path, sovits_path = folder / "gpt.ckpt", folder / "sovits.pth"
    torch.save(
        {
            "weight": _random_state(gpt_manifest["keys"], seed=seed, std=std),
            "config": {"model": dict(gpt_manifest["config"]), "data": {"pad_val": 1024}},
            "info": f"random full-size v2 GPT (seed {seed})",
        },
        gpt_path,
    )
    write_random_sovits(sovits_path, manifests / "manifest_v2_sovits.json", seed=seed + 1, std=std, version="v2")
    return gpt_path, sovits_path
