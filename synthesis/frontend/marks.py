"""Reading hints carried inside a rendered script: ⟪hint:value⟫.

A template placeholder like {order_id:digits} tells the frontend how to read its value. Planning renders
such values as ⟪digits:SF1234567890⟫, so the hint travels with the text through the render cache (and is
part of the render key: a different reading is different audio); the frontend turns the marks back into
spans for `normalize`. Values never contain the mark characters (they are removed from values). A person's
name ({name}) is marked ⟪name:单晓东⟫ only when it starts with a polyphonic surname (see `mark_name`).
"""

from __future__ import annotations

import re

from synthesis.frontend.normalize import normalize
from synthesis.frontend.readings import begins_with_surname

OPEN, CLOSE = "\u27ea", "\u27eb"  # ⟪ ⟫
_MARK = re.compile(f"{OPEN}([a-z]+):(.*?){CLOSE}", re.S)


def mark(value: str, hint: str) -> str:
    clean = value.replace(OPEN, "").replace(CLOSE, "")
    return f"{OPEN}{hint}:{clean}{CLOSE}"


def split_marks(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Plain text and the (start, end, hint) spans of its marked values."""
    if OPEN not in text:
        return text, []
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    position = length = 0
    for match in _MARK.finditer(text):
        before = text[position : match.start()]
        out.append(before)
        length += len(before)
        value = match.group(2)
        spans.append((length, length + len(value), match.group(1)))
        out.append(value)
        length += len(value)
        position = match.end()
    out.append(text[position:])
    return "".join(out).replace(OPEN, "").replace(CLOSE, ""), spans


def mark_name(value: str) -> str:
    """A person's name, marked ⟪name:value⟫ only where reading it as a name changes what is said (it starts
    with a polyphonic surname: 单晓东, 曾伟); any other name stays plain, so its script keeps its render key."""
    return mark(value, "name") if begins_with_surname(value) else value


def strip_marks(text: str) -> str:
    return split_marks(text)[0]


def spoken_text(text: str, language: str) -> str:
    """What an engine without its own frontend should say: Chinese scripts normalised for the phone (codes
    digit by digit, money, dates, hints honoured), anything else with the marks removed."""
    plain, spans = split_marks(text)
    if language.startswith("zh"):
        return normalize(plain, spans or None)
    return plain
