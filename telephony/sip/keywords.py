"""Carrier announcements recognised by their words, where a speech recogniser is configured: for announcements no
reference recording in the library matches (a carrier's new recording, another carrier's wording).

The user agent hands the early media (and the first seconds after an answer) to the recogniser every few
seconds; the text is searched for the phrases carriers use, each meaning one outcome. Phrases are checked in the
order of OUTCOME_ORDER, so "您拨打的号码是空号" is an invalid number even though it also says "您拨打的". A voicemail
greeting says "暂时无法接听" (cannot answer now), never "无法接通" (cannot be connected): the phrases keep them apart.
"""

from __future__ import annotations

import re
import unicodedata

OUTCOME_ORDER = ("invalid_number", "suspended", "powered_off", "unreachable", "busy")
DEFAULT_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("invalid_number", "空号"),
    ("invalid_number", "号码不存在"),
    ("invalid_number", "号码有误"),
    ("invalid_number", "查证后再拨"),
    ("invalid_number", "核对后再拨"),
    ("suspended", "停机"),
    ("suspended", "暂停服务"),
    ("powered_off", "关机"),
    ("unreachable", "无法接通"),
    ("unreachable", "不在服务区"),
    ("busy", "正在通话中"),
    ("busy", "用户忙"),
    ("busy", "用户正忙"),
)
_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Width-folded, lower-case, without spaces or punctuation: recognisers differ in all three."""
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def find(text: str, keywords: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """(outcome, phrase) of the first phrase the text says, by OUTCOME_ORDER; None when it says none."""
    heard = normalise(text)
    if not heard:
        return None
    for outcome in OUTCOME_ORDER:
        for said_outcome, phrase in keywords:
            if said_outcome == outcome and normalise(phrase) and normalise(phrase) in heard:
                return outcome, phrase
    return None
