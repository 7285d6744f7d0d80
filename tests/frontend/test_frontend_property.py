"""Property tests of the text frontend (hypothesis, issue 17): any script text a contact field or a staff
member can produce is read without crashing, and what comes out is consistent.

Bounded for CI: few examples, no deadline, derandomized (the same examples every run).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthesis.frontend.normalize import normalize
from synthesis.frontend.pipeline import process

# Chinese that scripts use, digits and the symbols numbers come with, ASCII letters, Chinese and ASCII
# punctuation, full-width forms, the reading-mark characters and a few oddities (NUL, emoji, combining).
ALPHABET = st.sampled_from(
    list("您好的订单号余额为元积分将于明天上午点送达请按改期单曾")
    + list("0123456789" * 3)
    + list("abcxyzSFPMkgVIP")
    + list(" ,.!?-+*/:%$¥￥@#~，。！？；：、（）《》“”…·×")
    + list("０１２３ＡＢ　")
    + ["⟪", "⟫", "⟪digits:", "⟪money:", "⟪name:", "\x00", "\n", "😀", "e\u0301", "訂單"]
)
TEXTS = st.lists(ALPHABET, max_size=40).map("".join)
NUMBERS = st.integers(min_value=0, max_value=10**40).map(str)
SETTINGS = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _check(text: str) -> None:
    try:
        result = process(text)
    except ValueError as exc:  # the frontend's one way of saying "cannot read this", with a message
        assert str(exc)
        return
    assert len(result.phones) == len(result.phone_ids)
    if result.word2ph is not None:
        assert sum(result.word2ph) == len(result.phones)
        assert len(result.word2ph) == len(result.norm_text)
    assert all(isinstance(p, str) and p for p in result.phones)


@SETTINGS
@given(TEXTS)
def test_any_script_text_is_read_or_refused_with_a_message(text):
    _check(text)


@SETTINGS
@given(NUMBERS, st.sampled_from(["元", "分", "个", "号", "%", "kg", "", ".5元", "年"]), st.sampled_from(["", "-", "¥", "第"]))
def test_any_number_with_any_unit_is_read(number, unit, prefix):
    text = f"余额{prefix}{number}{unit}"
    assert normalize(text)
    _check(text)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(TEXTS, st.lists(st.tuples(st.integers(-3, 45), st.integers(-3, 45), st.sampled_from(
    ["digits", "money", "date", "time", "phone", "number", "text", "name", "bogus", None])), max_size=3))
def test_any_hint_spans_are_honoured_or_ignored(text, hints):
    try:
        process(text, hints=hints)
    except ValueError as exc:
        assert str(exc)
