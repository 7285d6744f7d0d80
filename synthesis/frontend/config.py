"""Where the frontend's models live (torch-free, so web processes can check it before a launch)."""

from __future__ import annotations

import os
from pathlib import Path

from .g2p_model import model_problem

ENV_BERT, ENV_HUBERT = "HERALD_BERT_DIR", "HERALD_HUBERT_DIR"


def configuration_problem() -> str | None:
    """Why the GPT-SoVITS frontend cannot be built from this environment, or None."""
    for name, what in ((ENV_BERT, "chinese-roberta-wwm-ext-large"), (ENV_HUBERT, "chinese-hubert-base")):
        folder = os.environ.get(name, "")
        if not folder:
            return f"set {name} to a local directory holding {what} (nothing is downloaded)"
        if not (Path(folder) / "config.json").is_file():
            return f"{name}={folder} does not hold a {what} model (no config.json there)"
    problem = model_problem()
    return f"English words outside the dictionary cannot be read: {problem}" if problem else None
