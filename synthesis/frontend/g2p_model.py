"""English words that no dictionary knows (Xiaomi, Pinduoduo, Meituan): the g2p_en neural model, in numpy.

The official GPT-SoVITS English G2P sends a word that is neither in its dictionary, nor three letters or
shorter, nor split by wordsegment to g2p_en's `predict`: a one-layer GRU encoder over the letters and a
GRU decoder that emits ARPAbet phones greedily (at most 20). This module runs the same network from the
weights g2p_en 2.1.0 ships (`checkpoint20.npz`, a plain numpy archive, read with pickling disabled).

The package is never imported (its import calls nltk.download); the file is found next to it, or at
$HERALD_G2P_EN_MODEL. Tests build tiny random-weight archives of the same layout.

    NeuralG2p.from_file(path).predict("xiaomi") -> ["SH", "AW1", "M", "IY0"]   # whatever the weights say
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "ENV_MODEL", "GRAPHEMES", "PHONEMES", "NeuralG2p", "default_model", "homograph_path", "model_path", "model_problem",
]

ENV_MODEL = "HERALD_G2P_EN_MODEL"
MAX_PHONES = 20  # the decoder's step limit

# Input symbols: three specials, then the lowercase letters; anything else is <unk>.
GRAPHEMES = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
               "T", "TH", "V", "W", "Y", "Z", "ZH")
# Output symbols: four specials, then the model's 70 phones in code-point order (an unstressed "UW" is one).
PHONEMES = ("<pad>", "<unk>", "<s>", "</s>",
            *sorted({f"{v}{s}" for v in _VOWELS for s in "012"} | set(_CONSONANTS) | {"UW"}))
_START, _END = PHONEMES.index("<s>"), PHONEMES.index("</s>")
_LETTER_ID = {g: i for i, g in enumerate(GRAPHEMES)}
_UNKNOWN = GRAPHEMES.index("<unk>")


def _shape_problem(arrays: dict[str, np.ndarray]) -> str | None:
    emb = arrays["enc_emb"].shape
    if len(emb) != 2 or emb[0] != len(GRAPHEMES):
        return f"enc_emb is {emb}, expected ({len(GRAPHEMES)}, embedding size)"
    width = arrays["enc_w_hh"].shape[-1]
    expected = {
        "enc_w_ih": (3 * width, emb[1]), "enc_w_hh": (3 * width, width),
        "enc_b_ih": (3 * width,), "enc_b_hh": (3 * width,),
        "dec_emb": (len(PHONEMES), emb[1]), "dec_w_ih": (3 * width, emb[1]), "dec_w_hh": (3 * width, width),
        "dec_b_ih": (3 * width,), "dec_b_hh": (3 * width,),
        "fc_w": (len(PHONEMES), width), "fc_b": (len(PHONEMES),),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            return f"{name} is {arrays[name].shape}, expected {shape}"
    return None


class NeuralG2p:
    """Greedy GRU encoder-decoder from letters to ARPAbet phones (g2p_en's network and weights layout)."""

    KEYS = ("enc_emb", "enc_w_ih", "enc_w_hh", "enc_b_ih", "enc_b_hh",
            "dec_emb", "dec_w_ih", "dec_w_hh", "dec_b_ih", "dec_b_hh", "fc_w", "fc_b")

    def __init__(self, arrays: dict[str, np.ndarray]):
        missing = [key for key in self.KEYS if key not in arrays]
        if missing:
            raise ValueError(f"not a g2p_en model: missing {', '.join(missing)}")
        problem = _shape_problem(arrays)
        if problem:
            raise ValueError(f"not a g2p_en model: {problem}")
        for key in self.KEYS:
            setattr(self, key, np.asarray(arrays[key], dtype=np.float32))
        self._predict = lru_cache(maxsize=4096)(self._run)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> NeuralG2p:
        """Load a g2p_en weights archive; a damaged, pickled or mis-shaped file is a ValueError naming it."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: not a readable numpy archive ({exc})") from exc
        try:
            return cls(arrays)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @staticmethod
    def _gru(x: np.ndarray, h: np.ndarray, w_ih, w_hh, b_ih, b_hh) -> np.ndarray:
        """One GRU step (reset, update, new gates; the reset gate scales the hidden part of the new gate)."""
        gates_x = x @ w_ih.T + b_ih
        gates_h = h @ w_hh.T + b_hh
        width = h.shape[-1]
        reset_update = 1 / (1 + np.exp(-(gates_x[:, : 2 * width] + gates_h[:, : 2 * width])))
        reset, update = reset_update[:, :width], reset_update[:, width:]
        new = np.tanh(gates_x[:, 2 * width:] + reset * gates_h[:, 2 * width:])
        return (1 - update) * new + update * h

    def _run(self, word: str) -> tuple[str, ...]:
        letters = [_LETTER_ID.get(char, _UNKNOWN) for char in word] + [_LETTER_ID["</s>"]]
        h = np.zeros((1, self.enc_w_hh.shape[-1]), np.float32)
        for letter in letters:
            h = self._gru(self.enc_emb[[letter]], h, self.enc_w_ih, self.enc_w_hh, self.enc_b_ih, self.enc_b_hh)
        phones: list[str] = []
        previous = _START
        for _ in range(MAX_PHONES):
            h = self._gru(self.dec_emb[[previous]], h, self.dec_w_ih, self.dec_w_hh, self.dec_b_ih, self.dec_b_hh)
            previous = int((h @ self.fc_w.T + self.fc_b).argmax())
            if previous == _END:
                break
            phones.append(PHONEMES[previous])
        return tuple(phones)

    def predict(self, word: str) -> list[str]:
        """Phones of one word as the model reads it (specials such as <unk> included, as g2p_en returns them)."""
        return list(self._predict(word))


def model_path() -> Path | None:
    """$HERALD_G2P_EN_MODEL, else the checkpoint installed with g2p_en (found without importing it)."""
    configured = os.environ.get(ENV_MODEL, "")
    if configured:
        return Path(configured)
    return _installed_checkpoint()


@functools.cache
def _installed_checkpoint() -> Path | None:
    """Where pip put g2p_en's weights (looked up once: installed packages do not move while we run)."""
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"


def homograph_path() -> Path | None:
    """g2p_en's homograph table (homographs.en) next to its weights, or None when g2p_en is not installed."""
    path = model_path()
    return None if path is None else path.with_name("homographs.en")


def model_problem() -> str | None:
    """Why English words outside the dictionary cannot be read here, or None."""
    path = model_path()
    if path is None:
        return f"install g2p_en==2.1.0 (the synthesis extra) or set {ENV_MODEL} to its checkpoint20.npz"
    if not path.is_file():
        return f"{ENV_MODEL}={path} is not a file" if os.environ.get(ENV_MODEL) else f"{path} is missing"
    return None


_lock = threading.Lock()
_models: dict[Path, NeuralG2p] = {}


def default_model() -> NeuralG2p:
    """The configured model, loaded once per process per path; a clear error when there is none."""
    path = model_path()
    if path in _models:  # the common case, on every unknown word: no file system access
        return _models[path]
    problem = model_problem()
    if problem:
        raise RuntimeError(f"an English word is not in the dictionary and there is no g2p model: {problem}")
    assert path is not None
    with _lock:
        if path not in _models:
            _models[path] = NeuralG2p.from_file(path)
    return _models[path]
