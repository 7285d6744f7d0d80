"""The official base models that instant (zero-shot) voices speak with, and the manifest that vouches for them.

An instant voice is a reference clip and its transcript rendered by the pretrained GPT + SoVITS pair of its
version, with no training. The base directory (HERALD_GPTSOVITS_BASE_DIR) is laid out like the official
`GPT_SoVITS/pretrained_models` folder, so a copy of that folder works as it is:

    s1v3.ckpt                                        GPT of v2Pro / v2ProPlus
    v2Pro/s2Gv2Pro.pth, v2Pro/s2Gv2ProPlus.pth       SoVITS of v2Pro / v2ProPlus
    gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt, .../s2G2333k.pth   (v2)
    sv/pretrained_eres2netv2w24s4ep4.ckpt            speaker verification (every v2Pro/v2ProPlus voice)
    chinese-roberta-wwm-ext-large/, chinese-hubert-base/   text and reference features
    SHA256SUMS                                       `sha256sum` lines for every file above

The manifest is checked when a synthesis worker starts (every file present and matching), so a truncated
copy or a swapped file is named then, not discovered as noise in 10,000 calls. Pure: no Django import.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

ENV_BASE = "HERALD_GPTSOVITS_BASE_DIR"
MANIFEST = "SHA256SUMS"
VERSIONS = ("v2", "v2Pro", "v2ProPlus")
PAIRS = {
    "v2": (
        "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
        "gsv-v2final-pretrained/s2G2333k.pth",
    ),
    "v2Pro": ("s1v3.ckpt", "v2Pro/s2Gv2Pro.pth"),
    "v2ProPlus": ("s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth"),
}
SV_MODEL = "sv/pretrained_eres2netv2w24s4ep4.ckpt"
# Fine-tuning starts its discriminator from these when present (optional: otherwise from random weights).
DISCRIMINATORS = {"v2": "gsv-v2final-pretrained/s2D2333k.pth"}
BERT_DIR = "chinese-roberta-wwm-ext-large"
HUBERT_DIR = "chinese-hubert-base"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class BaseModelError(ValueError):
    """The base directory cannot serve a voice; the message names every missing or wrong file."""


@dataclass(frozen=True)
class BasePair:
    version: str
    gpt: Path
    sovits: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 this process computed
_verified_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per process for each (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(key)
    if known is None:
        known = _sha256(path)
        with _verified_lock:
            _verified[key] = known
    return known


def read_manifest(base: Path) -> dict[str, str]:
    """relative path -> sha256, from base/SHA256SUMS; BaseModelError for a missing or malformed manifest."""
    path = base / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaseModelError(
            f"{path} cannot be read ({exc.strerror}): once the base models are in place, write it with "
            "`sha256sum` (relative paths) or synthesis.gptsovits.basemodels.write_manifest"
        ) from exc
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise BaseModelError(f"{path} line {number} is not '<sha256>  <path>': {line[:80]!r}")
        entries[match.group(2).removeprefix("./")] = match.group(1).lower()
    return entries


def required_files(base: Path, version: str) -> list[str]:
    """Every file (relative to base) a voice of `version` renders with: pair, SV model, BERT and HuBERT."""
    if version not in PAIRS:
        raise BaseModelError(f"no base models for GPT-SoVITS {version!r} (Herald has {', '.join(VERSIONS)})")
    files = list(PAIRS[version]) + ([SV_MODEL] if version != "v2" else [])
    for folder in (BERT_DIR, HUBERT_DIR):
        found = sorted(
            str(p.relative_to(base)) for p in (base / folder).rglob("*") if p.is_file()
        ) if (base / folder).is_dir() else []
        files += found or [f"{folder}/"]  # an absent folder is reported as itself
    return files


def base_dir() -> Path | None:
    """HERALD_GPTSOVITS_BASE_DIR, or None when instant voices are not set up here."""
    configured = os.environ.get(ENV_BASE, "")
    return Path(configured) if configured else None


def problems(base: Path | None, version: str, *, verify: bool = True) -> list[str]:
    """What keeps `base` from serving `version`: each missing, unlisted or altered file, by name (or that no
    base directory is set, for `base` None as `base_dir()` returns it).

    `verify=False` skips hashing (a web process checking a form); workers always verify (once per file).
    """
    if base is None:
        return [f"no base directory is set ({ENV_BASE})"]
    try:
        manifest = read_manifest(base)
        wanted = required_files(base, version)
    except BaseModelError as exc:
        return [str(exc)]
    found = []
    for relative in wanted:
        path = base / relative
        if relative.endswith("/") or not path.is_file():
            found.append(f"{relative} is missing")
        elif relative not in manifest:
            found.append(f"{relative} is not listed in {MANIFEST}")
        elif verify and file_sha256(path) != manifest[relative]:
            found.append(f"{relative} does not match its sha256 in {MANIFEST} (damaged or replaced copy?)")
    return found


def base_pair(base: str | os.PathLike[str] | None, version: str) -> BasePair:
    """The verified base pair of `version` under `base`; BaseModelError naming every problem otherwise."""
    base = None if base is None else Path(base)
    found = problems(base, version)
    if found:
        raise BaseModelError(f"GPT-SoVITS {version} base models{f' in {base}' if base else ''}: " + "; ".join(found))
    gpt, sovits = PAIRS[version]
    return BasePair(version=version, gpt=base / gpt, sovits=base / sovits)


def training_discriminator(base: Path | None, version: str) -> Path | None:
    """The pretrained discriminator fine-tuning of `version` starts from, when `base` has it and the manifest
    vouches for it; None when it is absent (training then starts the discriminator from random weights)."""
    relative = DISCRIMINATORS.get(version)
    if base is None or relative is None or not (base / relative).is_file():
        return None
    manifest = read_manifest(base)
    if manifest.get(relative) != file_sha256(base / relative):
        raise BaseModelError(f"{relative} is not listed in {MANIFEST} or does not match its sha256 there")
    return base / relative


def manifest_digest(base: Path, version: str) -> str:
    """sha256 over the manifest entries of what `version` renders with (cheap: reads SHA256SUMS only).

    Part of an instant voice's digest, so its render keys change when its base models are replaced."""
    manifest = read_manifest(base)
    digest = hashlib.sha256(f"herald.base.{version}\x00".encode())
    for relative in required_files(base, version):
        digest.update(f"{relative}:{manifest.get(relative, '-')}\x00".encode())
    return digest.hexdigest()


def write_manifest(base: str | os.PathLike[str]) -> Path:
    """Hash every file under `base` into base/SHA256SUMS (sha256sum's format); returns its path."""
    base = Path(base)
    lines = [
        f"{_sha256(path)}  {path.relative_to(base).as_posix()}"
        for path in sorted(base.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    ]
    target = base / MANIFEST
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
