"""Script text → what the GPT-SoVITS models read: normalised text, phones, phone ids, word2ph.

normalize (numbers, codes, dates, money, hints) → split into Chinese and English runs → g2p per run →
v2 phone ids. word2ph (phones per character, for spreading BERT features) exists only when the whole text
is Chinese, as in the official frontend; English runs get zero BERT features. Values hinted as a person's
name (a template's {name}) are found again in the normalised text and handed to g2p, which reads a
polyphonic surname at their start as a surname.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from synthesis.frontend.g2p import g2p_en_segment, g2p_zh
from synthesis.frontend.hanzi import to_simplified
from synthesis.frontend.marks import split_marks
from synthesis.frontend.normalize import normalize, normalize_en
from synthesis.frontend.symbols import phone_ids

# English runs: Latin words, possibly joined by spaces, apostrophes or hyphens (Wi-Fi, don't, New York),
# or by dots between letters (www.sf-express.com is one run, read as the official does).
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z'\-]*(?:(?:\s+|\.(?=[A-Za-z]))[A-Za-z][A-Za-z'\-]*)*")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])")
_HAN_RUN = re.compile(r"[\u4e00-\u9fa5]+")
MAX_SENTENCE_CHARS = 60


@dataclass(frozen=True)
class Segment:
    language: str  # "zh" or "en"
    text: str
    phones: tuple[str, ...] = ()
    word2ph: tuple[int, ...] | None = None  # zh only: phones per character of `text`


@dataclass(frozen=True)
class FrontendResult:
    text: str
    norm_text: str
    phones: list[str]
    phone_ids: list[int]
    word2ph: list[int] | None
    segments: tuple[Segment, ...] = ()

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("segments")
        return data


def split_languages(norm_text: str) -> list[Segment]:
    """Alternating Chinese and English runs, in order; whitespace between runs is dropped."""
    segments: list[Segment] = []
    position = 0
    for match in _ENGLISH.finditer(norm_text):
        before = norm_text[position : match.start()].strip()
        if before:
            segments.append(Segment("zh", before))
        segments.append(Segment("en", match.group(0)))
        position = match.end()
    rest = norm_text[position:].strip()
    if rest:
        segments.append(Segment("zh", rest))
    return segments


def process(text: str, *, language: str = "zh", hints: list[tuple[int, int, str | None]] | None = None) -> FrontendResult:
    """The frontend for one sentence (or a short script). Reading hints come as spans, or as ⟪hint:value⟫
    marks inside the text (how planning hands them over; see synthesis.frontend.marks)."""
    text, marked = split_marks(text)
    if marked:
        hints = [*marked, *(hints or [])]
    names: list[tuple[int, int]] = []
    if language == "en":
        norm = normalize_en(re.sub(r"\s+", " ", text))
        segments = [Segment("en", norm)] if norm else []
    else:
        norm_parts = normalize(text, hints)
        segments = split_languages(norm_parts)
        norm = "".join(s.text for s in segments)
        if hints:
            names = name_spans(text, hints, norm_parts)
    phones: list[str] = []
    word2ph: list[int] | None = []
    done: list[Segment] = []
    searched = 0
    for segment in segments:
        if segment.language == "zh":
            inside: list[tuple[int, int]] = []
            if names:  # the name spans, moved to the segment's own offsets
                start = norm_parts.find(segment.text, searched)
                searched = start + len(segment.text)
                inside = [(s - start, e - start) for s, e in names if start <= s < searched]
            seg_phones, seg_word2ph = g2p_zh(segment.text, names=inside)
            done.append(Segment("zh", segment.text, tuple(seg_phones), tuple(seg_word2ph)))
            if word2ph is not None:
                word2ph.extend(seg_word2ph)
        else:
            seg_phones = g2p_en_segment(segment.text)
            done.append(Segment("en", segment.text, tuple(seg_phones)))
            word2ph = None
        phones.extend(seg_phones)
    return FrontendResult(
        text=text,
        norm_text=norm,
        phones=phones,
        phone_ids=phone_ids(phones),
        word2ph=word2ph,
        segments=tuple(done),
    )


def name_spans(text: str, hints: list[tuple[int, int, str | None]], norm: str) -> list[tuple[int, int]]:
    """Where the values hinted as names ("name" spans of `text`) are in `norm`, the normalised text.

    Normalisation keeps Chinese characters, in order, and only adds readings of digits and symbols, so the
    k-th time a name is written is the k-th time it appears in `norm`; where the counts differ (the name
    also came out of a reading) the name is left out rather than guessed.
    """
    plain = to_simplified(text)
    spans: list[tuple[int, int]] = []
    for start, end, hint in hints:
        if hint != "name" or not 0 <= start <= end <= len(plain):
            continue
        run = _HAN_RUN.search(plain, start, end)
        if run is None or plain[start : run.start()].strip():
            continue  # a name that does not start with Chinese characters
        name = run.group()
        written = [m.start() for m in re.finditer(re.escape(name), plain)]
        said = [m.start() for m in re.finditer(re.escape(name), norm)]
        if len(written) == len(said) and run.start() in written:
            at = said[written.index(run.start())]
            spans.append((at, at + len(name)))
    return spans


def split_sentences(script: str, *, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Long scripts are rendered sentence by sentence: split after 。！？；…, then on ，if still too long."""
    sentences = [s.strip() for s in _SENTENCE_END.split(script) if s.strip()]
    out: list[str] = []
    for sentence in sentences:
        while len(sentence) > max_chars:
            cut = max((sentence.rfind(p, 0, max_chars) for p in "，,、"), default=-1)
            if cut <= 0:
                cut = max_chars - 1
            out.append(sentence[: cut + 1])
            sentence = sentence[cut + 1 :].strip()
        if sentence:
            out.append(sentence)
    return out
