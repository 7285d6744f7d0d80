"""Reading hints from a script template reach the frontend: planning marks them, the frontend honours them."""

from __future__ import annotations

import pytest

from campaigns.templating import has_reading_hints, parse_template, render_marked
from synthesis.frontend.marks import split_marks, spoken_text, strip_marks
from synthesis.frontend.normalize import normalize
from synthesis.frontend.pipeline import process


def test_marks_round_trip_to_spans():
    template = parse_template("您的订单{order_id:digits}，金额{amount:money}，{name}您好")
    assert has_reading_hints(template) and not has_reading_hints(parse_template("{name:text}您好"))
    marked = render_marked(template, {"order_id": "20261125", "amount": "325.5", "name": "张⟪先生"})
    plain, spans = split_marks(marked)
    assert plain == "您的订单20261125，金额325.5，张先生您好"
    assert [(plain[a:b], hint) for a, b, hint in spans] == [("20261125", "digits"), ("325.5", "money")]
    assert strip_marks(marked) == plain


def test_a_hint_changes_how_a_value_is_read():
    def say(template: str, value: str) -> str:
        return spoken_text(render_marked(parse_template(template), {"n": value}), "zh")

    as_digits = say("您的订单{n:digits}已发货", "20261125")
    as_number = say("一共{n:number}件", "20261125")
    assert "二零二六一一二五" in as_digits
    assert "万" in as_number and "二零二六" not in as_number
    assert say("订单{n}已发货", "20261125") == normalize("订单20261125已发货")  # no hint: the usual rules
    assert process(render_marked(parse_template("金额{n:money}"), {"n": "12.5"})).norm_text.endswith("元")


@pytest.mark.django_db
def test_planning_carries_hints_into_the_render_key_and_text(make_campaign):
    from campaigns.launch import launch_campaign
    from synthesis.models import RenderedAudio

    plain = make_campaign(1, text="订单{order_id}明天到")
    hinted = make_campaign(1, text="订单{order_id:digits}明天到")
    launch_campaign(plain)
    launch_campaign(hinted)
    a, b = plain.calls.get(), hinted.calls.get()
    assert a.text == b.text  # staff see the same script text
    assert a.audio_id != b.audio_id  # but a different reading is different audio
    spoken = RenderedAudio.objects.get(render_key=b.audio_id).text
    assert "\u27eadigits:" in spoken and strip_marks(spoken) == b.text
