"""Traditional Chinese characters to simplified ones, one character for one, before anything else is read.

The official GPT-SoVITS normaliser does this first (zh_normalization's char_convert), so that 訂單 reads
like 订单, 3點半 is a time, and jieba and the polyphone phrases see the text they know. The tables are
OpenCC's TSPhrases and TSCharacters (opencc-python-reimplemented ships them, Apache-2.0), read as data;
the package is not imported. As in OpenCC, the longest phrase wins, then the character's first choice:
乾燥 -> 干燥 but 乾隆 stays, 瞭望 stays. Every entry keeps the length, so character offsets stay valid.

    to_simplified("您的訂單將於明天下午3點送達") -> "您的订单将于明天下午3点送达"
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .once import load_once

__all__ = ["table_dir", "to_simplified"]


def table_dir() -> Path:
    spec = importlib.util.find_spec("opencc")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("traditional characters cannot be converted: install opencc-python-reimplemented==0.1.7")
    return Path(next(iter(spec.submodule_search_locations))) / "dictionary"


def _entries(path: Path) -> dict[str, str]:
    """Traditional -> first simplified choice; an entry that would change the length is an error naming its line."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        traditional, _, choices = line.partition("\t")
        first = choices.split()[0] if choices.split() else ""
        if not traditional or len(first) != len(traditional):
            raise ValueError(f"{path}:{number}: expected a word, a tab and same-length choices, got {line!r}")
        entries[traditional] = first
    return entries


@load_once
def _load() -> tuple[dict[str, str], dict[int, str], frozenset[str], int]:
    """(phrases, character translation table, first characters of phrases, longest phrase)."""
    folder = table_dir()
    phrases = {k: v for k, v in _entries(folder / "TSPhrases.txt").items() if len(k) > 1}
    chars = {ord(k): v for k, v in _entries(folder / "TSCharacters.txt").items() if len(k) == 1}
    starts = frozenset(phrase[0] for phrase in phrases)
    return phrases, chars, starts, max(map(len, phrases), default=1)


def to_simplified(text: str) -> str:
    """``text`` with traditional characters replaced; same length, so character offsets stay valid."""
    phrases, chars, starts, longest = _load()
    if not any(char in starts for char in text):
        return text.translate(chars)
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] in starts:
            sizes = range(min(longest, len(text) - i), 1, -1)
            size = next((n for n in sizes if text[i : i + n] in phrases), 0)
            if size:
                out.append(phrases[text[i : i + size]])
                i += size
                continue
        out.append(text[i].translate(chars))
        i += 1
    return "".join(out)
