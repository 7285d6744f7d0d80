"""Where the frontend's models live (torch-free, so web processes can check it before a launch)."""

from __future__ import annotations

import os
from pathlib import Path

from synthesis.gptsovits.basemodels import BERT_DIR, ENV_BASE, HUBERT_DIR

from .g2p_model import model_problem

ENV_BERT, ENV_HUBERT = "HERALD_BERT_DIR", "HERALD_HUBERT_DIR"
_FOLDERS = {ENV_BERT: BERT_DIR, ENV_HUBERT: HUBERT_DIR}  # their folders in the base directory


def model_dir(name: str) -> str:
    """The directory named by `name` (HERALD_BERT_DIR / HERALD_HUBERT_DIR), else its folder in the base
    directory when one is set; "" when neither is."""
    folder = os.environ.get(name, "")
    base = os.environ.get(ENV_BASE, "")
    if not folder and base:
        folder = str(Path(base) / _FOLDERS[name])
    return folder


def configuration_problem() -> str | None:
    """Why the GPT-SoVITS frontend cannot be built from this environment, or None."""
    for name, what in _FOLDERS.items():
        folder = model_dir(name)
        if not folder:
            return f"set {name} (or {ENV_BASE}) to a local directory holding {what} (nothing is downloaded)"
        if not (Path(folder) / "config.json").is_file():
            where = f"{name}={folder}" if os.environ.get(name) else f"{ENV_BASE} folder {folder}"
            return f"{where} does not hold a {what} model (no config.json there)"
    problem = model_problem()
    return f"English words outside the dictionary cannot be read: {problem}" if problem else None
