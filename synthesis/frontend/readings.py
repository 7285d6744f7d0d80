"""Readings a listener expects where the official reading (pypinyin, then PaddleSpeech's tone sandhi) is wrong
because it ignores the role of a character in the sentence.

- A polyphonic surname reads as a surname (单 shan4, 曾 zeng1, 解 xie4, 尉迟 yu4 chi2; data/surnames.txt)
  where it stands in a name position: before a title (单先生, 曾经理, 解晓东先生: the surname, an optional
  given name of one or two characters that jieba takes for a name, then the title), right after 姓/贵姓
  (我姓单), and at the start of a name a script template put in (the ``name`` hint, see
  campaigns.templating). Elsewhere the ordinary reading stays: 单独 dan1, 曾经 ceng2, 解决 jie3, 重要 zhong4.
- 的/地/得 by role. The sandhi rules make every word-final 的/地/得 neutral (a PaddleSpeech rule), which is
  right for the particles and wrong for the words: 目的 mu4 di4, 土地 tu3 di4, 获得 huo4 de2. Adverbial 地
  before a verb is de5 (认真地检查), a noun 地 keeps di4 (这块地, 外地); 得 after a verb or adjective is the
  complement particle de5 (跑得快, 说得好), and 得 between a subject or adverb and a verb is děi 'must'
  (你得去, 我们还得等, 得赶紧).

Applied after tone sandhi, only when g2p_zh fixes readings, so the official output stays reproducible. The
decisions use the jieba words and POS tags the sentence was cut into; where the cut gives no clear cue the
official reading stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .hanzi import to_simplified
from .once import load_once
from .symbols import PUNCTUATION

__all__ = ["TITLES", "Word", "begins_with_surname", "role_readings", "surnames"]

# What follows a surname when someone is addressed or named: 单先生, 曾经理, 解晓东先生, 覃总.
TITLES = ("先生", "女士", "小姐", "太太", "老师", "师傅", "经理", "总经理", "主任", "阿姨", "总")
# Surnames that are also a word's last character that jieba cuts off on its own (快递/员 师傅).
_NOT_BEFORE_TITLES = frozenset("员")
# After these the character is not a name but a verb (我帮您查先生的快递) or a measure word (这单先生您签收一下).
_NOT_A_NAME_AFTER = frozenset("我 你 您 他 她 我们 你们 他们 她们 咱们 这 每".split())


class Word(NamedTuple):
    start: int  # offset of its first character in the sentence
    text: str
    pos: str  # jieba POS tag


@load_once
def surnames() -> dict[str, tuple[str, ...]]:
    """Polyphonic surname -> its toned reading as a surname, one syllable per character (data/surnames.txt)."""
    table: dict[str, tuple[str, ...]] = {}
    path = Path(__file__).with_name("data") / "surnames.txt"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        surname, *syllables = fields
        if len(syllables) != len(surname):
            raise ValueError(f"{path}:{number}: {len(syllables)} syllables for {surname!r}")
        table[surname] = tuple(syllables)
    return table


def begins_with_surname(name: str) -> bool:
    """Does reading `name` as a person's name change what is said: does it start with a polyphonic surname
    from the table (单晓东, 曾伟; not 乐乐 or 单单, a doubled given name on its own)?"""
    name = to_simplified(name.strip())
    return _surname_at(name, 0) is not None and not (len(name) == 2 and name[0] == name[1])


def role_readings(
    sentence: str, words: Sequence[Word], merged: Sequence[Word], names: Iterable[tuple[int, int]] = ()
) -> dict[int, str]:
    """Character offset in `sentence` -> the toned syllable a listener expects there (only where it differs
    by role). `words` is jieba's cut, `merged` the words as the sandhi rules saw them, `names` the spans of
    person names a template put into the sentence."""
    readings = _particle_readings(words, merged)
    readings.update(_surname_readings(sentence, words, names))
    return readings


# ------------------------------------------------------------------------------------------- surnames


def _surname_at(text: str, at: int) -> str | None:
    table = surnames()
    for length in (2, 1):  # a compound surname first: 尉迟 before 尉
        candidate = text[at : at + length]
        if len(candidate) == length and candidate in table:
            return candidate
    return None


def _is_name(pos: str) -> bool:
    return pos.startswith("nr")


def _is_han(text: str) -> bool:
    return all("\u4e00" <= char <= "\u9fa5" for char in text)


def _surname_readings(
    sentence: str, words: Sequence[Word], names: Iterable[tuple[int, int]]
) -> dict[int, str]:
    table = surnames()
    at = {word.start: word for word in words}
    ends = {word.start + len(word.text) for word in words}
    readings: dict[int, str] = {}

    def read_as_surname(start: int, surname: str) -> None:
        for k, syllable in enumerate(table[surname]):
            readings[start + k] = syllable

    for start, end in names:
        surname = _surname_at(sentence, start)
        if surname and begins_with_surname(sentence[start:end]):
            read_as_surname(start, surname)
    word_of = {word.start + k: word for word in words for k in range(len(word.text))}
    for at_xing in (k for k, char in enumerate(sentence) if char == "姓"):
        host = word_of[at_xing]
        if host.text not in ("姓", "贵姓") and _is_dictionary_word(host.text):
            continue  # 百姓, 老百姓, 姓名
        start = at_xing + 1
        surname = _surname_at(sentence, start)
        if surname is None:
            continue
        if word_of[start] is host:  # jieba's 姓单: the surname is the end of the same word
            alone = host.start + len(host.text) == start + len(surname)
        else:
            alone = _stands_alone(at.get(start), surname)
        if alone:
            read_as_surname(start, surname)
    for i, word in enumerate(words):
        surname = _surname_at(sentence, word.start)
        if not surname or surname in _NOT_BEFORE_TITLES or (i and words[i - 1].text in _NOT_A_NAME_AFTER):
            continue
        if _before_title(sentence, word, surname, at, ends):
            read_as_surname(word.start, surname)
    return readings


def _stands_alone(word: Word | None, surname: str) -> bool:
    """After 姓: the surname is a word of its own or begins a name, not the start of a word (姓重要吗)."""
    if word is None:
        return False
    return len(word.text) <= len(surname) or _is_name(word.pos) or not _is_dictionary_word(word.text)


def _before_title(sentence: str, word: Word, surname: str, at: dict[int, Word], ends: set[int]) -> bool:
    """Surname, then a given name of 0-2 characters, then a title that ends a jieba word (not 查总账)."""
    start, after_surname = word.start, word.start + len(surname)
    word_end = start + len(word.text)
    for given in (0, 1, 2):
        title_at = after_surname + given
        title = next((t for t in TITLES if sentence.startswith(t, title_at)), None)
        if (
            title is None
            or title_at + len(title) not in ends
            or not _is_han(sentence[after_surname:title_at])
        ):
            continue
        if given == 0:
            # 单/先生, 曾总 (one word), 长/孙先生: not a word that runs on past the surname (单独先生, 重新给先生)
            if word_end <= after_surname or word_end == title_at + len(title) or _is_name(word.pos):
                return True
            continue
        # a given name jieba recognises: 单晓东/nr 先生, 仇/n 志强/nrfg 先生 (not 查/一下/先生)
        if word_end == title_at and _is_name(word.pos):
            return True
        name = at.get(after_surname)
        if word_end <= after_surname and name is not None and name.start + len(name.text) == title_at:
            return _is_name(name.pos)
    return False


# ------------------------------------------------------------------------------------------- 的 地 得

_NEUTRAL_FUNCTION_WORDS = ("了", "着", "过")
# POS tags of what comes before adverbial 地: adverbs, adjectives, descriptive and idiomatic words, verbs, and
# the nouns jieba tags 热情/小心 with. Pronouns and measure words come before the noun 地 (这块地, 这片地).
_BEFORE_ADVERBIAL_DI = ("d", "a", "z", "b", "i", "l", "v", "c", "n")
# POS tags of what comes before modal 得 ('must'): a subject (pronoun, noun, time, measure word), an adverb
# (还得, 就得), a conjunction (否则得). After a verb or an adjective 得 is the complement particle.
_BEFORE_MODAL_DE = ("r", "n", "t", "d", "c", "q", "m", "s", "f", "zg")
_DEGREE_ADVERBS = frozenset({"很", "太", "最", "更", "挺", "非常", "十分", "特别", "比较"})  # 很得人心: de2
# POS tags that cannot follow modal 得: numbers (得第一名), particles, interjections.
_NOT_AFTER_MODAL_DE = ("m", "y", "e", "o", "x", "w")
_GLUED_MODAL_DE = frozenset({"得去", "得来"})  # jieba's cut of 你得去, 您得来一趟 (得到, 得知 are words)


@lru_cache(maxsize=4096)
def _word_reading(word: str) -> tuple[str, ...]:
    """pypinyin's reading of a word (its phrase dictionary), tone 5 for neutral."""
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True))


def _is_dictionary_word(word: str) -> bool:
    """In pypinyin's phrase dictionary (imported here, not at import: planning asks begins_with_surname)."""
    from pypinyin.constants import PHRASES_DICT

    return word in PHRASES_DICT


def _is_punctuation(word: Word) -> bool:
    return all(char in PUNCTUATION for char in word.text)


def _neighbours(words: Sequence[Word], i: int) -> tuple[Word | None, Word | None]:
    prev = words[i - 1] if i > 0 and not _is_punctuation(words[i - 1]) else None
    nxt = words[i + 1] if i + 1 < len(words) and not _is_punctuation(words[i + 1]) else None
    return prev, nxt


def _particle_readings(words: Sequence[Word], merged: Sequence[Word]) -> dict[int, str]:
    readings: dict[int, str] = {}
    # Words whose last 的/地/得 the sandhi made neutral (it does so for every word-final one, on the merged
    # words): give the words their own reading back, keep the particles neutral.
    for word in merged:
        text, last = word.text, word.start + len(word.text) - 1
        if len(text) < 2 or text[-1] not in "的地得":
            continue
        syllable = _word_reading(text)[-1]
        if text[-1] == "的":
            if syllable.startswith("di"):  # 目的 di4, 打的 di1
                readings[last] = syllable
        elif text[-1] == "地":
            if _is_dictionary_word(text):
                readings[last] = syllable  # 土地, 目的地, 特地: di4
            elif word.pos[:1] in ("d", "z") or word.pos in ("ad", "i", "l") or text[0] == text[1]:
                readings[last] = "de5"  # 轻轻地, 偷偷地
            else:
                readings[last] = "di4"  # 各地, 外地, 一地
        elif len(text) != 3 and _is_dictionary_word(text) and syllable != "de5":
            # 获得, 取得, 只得 de2, 总得 dei3, 一举两得 de2; 记得, 觉得 are neutral there too, and so are 舍不得,
            # 怪不得 (three characters: left as the sandhi read them)
            readings[last] = syllable
    # 地 and 得 standing alone, decided by the words around them (jieba's words: the merging above joins
    # third tones across them, 我等/得).
    for i, word in enumerate(words):
        text = word.text
        if "地" not in text and "得" not in text:
            continue
        prev, nxt = _neighbours(words, i)
        if text == "地":
            readings[word.start] = "de5" if _adverbial_di(word, prev, nxt) else "di4"
        elif text == "得":
            if _modal_de(prev, nxt):
                readings[word.start] = "dei3"
        elif text[0] == "地" and not _is_dictionary_word(text) and _adverbial_di(word, prev, nxt):
            readings[word.start] = "de5"  # jieba's 慢慢/地走了
        elif (
            text in _GLUED_MODAL_DE
            and prev is not None
            and _modal_de(prev, Word(word.start + 1, text[1:], "v"))
        ):
            readings[word.start] = "dei3"  # jieba's 你/得去
        elif 0 < text.find("得") < len(text) - 1 and not _is_dictionary_word(text):
            at = text.find("得")
            if not _is_dictionary_word(text[: at + 1]):  # not 获得者, whose 获得 is a word
                readings[word.start + at] = "de5"  # 跑得快, 看得见: the complement particle
    return readings


def _adverbial_di(word: Word, prev: Word | None, nxt: Word | None) -> bool:
    """地 after an adverb or adjective and before a verb phrase: 认真地检查, 一步步地, not 这块地, 两亩地."""
    if prev is None or (nxt is None and len(word.text) == 1):
        return False
    if word.text == "地" and word.pos != "uv":
        return False
    if prev.pos.startswith("m"):
        return len(prev.text) >= 2 and prev.text[-1] == prev.text[-2]  # 一步步地, not 两亩地
    return prev.pos.startswith(_BEFORE_ADVERBIAL_DI)


def _modal_de(prev: Word | None, nxt: Word | None) -> bool:
    """得 'must' (děi): after a subject or adverb, before a verb phrase: 你得去, 还得等, 得赶紧."""
    if nxt is None or nxt.text in _NEUTRAL_FUNCTION_WORDS or nxt.pos.startswith(_NOT_AFTER_MODAL_DE):
        return False
    return prev is None or (prev.pos.startswith(_BEFORE_MODAL_DE) and prev.text not in _DEGREE_ADVERBS)
