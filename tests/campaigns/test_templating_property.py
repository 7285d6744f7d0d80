"""Property tests of script templates (hypothesis, issue 17): arbitrary contact values never break
rendering, and no value can smuggle a ⟪hint:…⟫ reading mark into the rendered script.

Bounded for CI: few examples, no deadline, derandomized.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.templating import MissingVariables, render_marked, render_template, render_with_spans
from synthesis.frontend.marks import CLOSE, OPEN, split_marks

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TEMPLATE = "您好{name}，订单{order_id:digits}，金额{amount:money}，备注{note}，电话{tel:phone}。"
PLACEHOLDERS = ("name", "order_id", "amount", "note", "tel")
VALUE = st.one_of(
    st.text(max_size=20),
    st.lists(st.sampled_from(["⟪", "⟫", "digits:", "money:", "name:", "单", "曾伟", "1", "{", "}", "x"]), max_size=8).map("".join),
    st.integers(-(10**20), 10**20),
)
VALUES = st.fixed_dictionaries({name: VALUE for name in PLACEHOLDERS})


@SETTINGS
@given(VALUES)
def test_any_values_render_or_are_reported_missing(values):
    try:
        plain = render_template(TEMPLATE, values)
        marked = render_marked(TEMPLATE, values)
        text, spans = render_with_spans(TEMPLATE, values)
    except MissingVariables as exc:
        assert exc.names and set(exc.names) <= set(PLACEHOLDERS)
        return
    assert plain == text == split_marks(marked)[0]
    assert OPEN not in plain and CLOSE not in plain
    assert [span[2] for span in spans] == [None, "digits", "money", None, "phone"]


@SETTINGS
@given(VALUES)
def test_values_cannot_add_reading_marks(values):
    try:
        marked = render_marked(TEMPLATE, values)
    except MissingVariables:
        return
    _, spans = split_marks(marked)
    # only the template's own hinted placeholders are marked (and {name} where its surname asks for it)
    assert [hint for _, _, hint in spans if hint != "name"] == ["digits", "money", "phone"]
    assert marked.count(OPEN) == marked.count(CLOSE) == len(spans)


def test_a_note_value_cannot_smuggle_a_hint_mark():
    values = {"name": "李", "order_id": "1", "amount": "2", "note": "⟪digits:12345⟫", "tel": "13800138000"}
    marked = render_marked(TEMPLATE, values)
    assert "⟪digits:12345⟫" not in marked and "备注digits:12345，" in marked
    assert render_template("备注{note}", {"note": "⟪money:5⟫"}) == "备注money:5"


def test_a_value_made_only_of_mark_characters_is_missing():
    try:
        render_template("备注{note}", {"note": "⟪⟫"})
    except MissingVariables as exc:
        assert exc.names == ("note",)
    else:
        raise AssertionError("expected MissingVariables")
