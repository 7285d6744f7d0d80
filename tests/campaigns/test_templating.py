"""Pure tests for campaigns.templating."""

import pytest

from campaigns.templating import (
    KNOWN_HINTS,
    MissingVariables,
    Placeholder,
    TemplateSyntaxError,
    parse_template,
    render_template,
    render_with_spans,
    template_variables,
    validate_template,
)

SCRIPT = "您好{name}，您的订单 {order_id:digits} 将于{date}{time}送达，确认请按1，改期请按2"
VALUES = {"name": "张三", "order_id": "20240615", "date": "6月15日", "time": "下午3点"}


# --------------------------------------------------------------------------- parsing


def test_parse_literals_and_placeholders():
    assert parse_template(SCRIPT) == [
        "您好",
        Placeholder("name", None, 2, 8),
        "，您的订单 ",
        Placeholder("order_id", "digits", 14, 31),
        " 将于",
        Placeholder("date", None, 34, 40),
        Placeholder("time", None, 40, 46),
        "送达，确认请按1，改期请按2",
    ]


def test_placeholder_offsets_point_at_the_braces():
    for part in parse_template(SCRIPT):
        if isinstance(part, Placeholder):
            assert SCRIPT[part.start] == "{" and SCRIPT[part.end - 1] == "}"
            assert part.name in SCRIPT[part.start : part.end]


def test_plain_text_and_empty_template():
    assert parse_template("no placeholders") == ["no placeholders"]
    assert parse_template("") == []


def test_escaped_braces():
    assert parse_template("{{literal}} and {{{name}}}") == [
        "{literal} and {",
        Placeholder("name", None, 18, 24),
        "}",
    ]
    assert render_template("{{x}} {x}", {"x": "1"}) == "{x} 1"
    assert render_template("}}{{", {}) == "}{"


def test_unicode_identifiers():
    parts = parse_template("您的{订单号:digits}已发货，收件人{收件人}")
    assert [p.name for p in parts if isinstance(p, Placeholder)] == ["订单号", "收件人"]
    assert render_template(parts, {"订单号": "123", "收件人": "李四"}) == "您的123已发货，收件人李四"


def test_whitespace_hint_case_and_full_width_colon():
    parts = parse_template("{ order_id : DIGITS }{amount：money}")
    assert parts == [Placeholder("order_id", "digits", 0, 21), Placeholder("amount", "money", 21, 35)]


def test_template_variables_distinct_in_order():
    assert template_variables("{b}{a}{b:digits}{c}{a}") == ["b", "a", "c"]
    assert template_variables(parse_template(SCRIPT)) == ["name", "order_id", "date", "time"]


def test_known_hints():
    assert KNOWN_HINTS == {"digits", "money", "date", "time", "phone", "number", "text", "name"}
    for hint in KNOWN_HINTS:
        validate_template(f"{{x:{hint}}}")


# --------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("您好{name", 2, "unclosed"),
        ("abc {", 4, "unclosed"),
        ("您好}name", 2, "stray"),
        ("{name}}", 6, "stray"),
        ("a {} b", 2, "empty placeholder name"),
        ("{ }", 0, "empty placeholder name"),
        ("{:digits}", 0, "empty placeholder name"),
        ("{name:}", 0, "empty hint"),
        ("xx{a{b}}", 4, "nested"),
        ("{order id}", 0, "not a valid variable name"),
        ("{1abc}", 0, "not a valid variable name"),
        ("{a-b}", 0, "not a valid variable name"),
        ("{0}", 0, "numbered"),
        ("{name!r}", 0, "conversions"),
        ("hi {name.__class__}", 3, "attribute or index access"),
        ("{name.__class__.__init__.__globals__}", 0, "attribute or index access"),
        ("{items[0]}", 0, "attribute or index access"),
        ("{amount:.2f}", 0, "unknown hint"),
    ],
)
def test_syntax_errors_name_position_and_problem(text, position, words):
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template(text)
    error = info.value
    assert error.position == position
    assert words in str(error)
    assert f"position {position}" in str(error)
    assert error.snippet.strip("…") in text
    with pytest.raises(TemplateSyntaxError):
        parse_template(text)


def test_unknown_hint_lists_known_hints():
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template("{amount:currency}")
    message = str(info.value)
    assert "'currency'" in message
    for hint in KNOWN_HINTS:
        assert hint in message


def test_custom_allowed_hints():
    validate_template("{x:spell}", allowed_hints={"spell"})
    with pytest.raises(TemplateSyntaxError):
        validate_template("{x:digits}", allowed_hints={"spell"})
    assert parse_template("{x:anything}", allowed_hints=None) == [Placeholder("x", "anything", 0, 12)]


def test_snippet_shows_context_of_long_templates():
    text = "这是一段很长的脚本内容，" * 5 + "{坏 名字}" + "后面还有很多内容。" * 5
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template(text)
    assert info.value.position == text.index("{坏")
    assert "{坏 名字}" in info.value.snippet
    assert len(info.value.snippet) < 40


def test_validate_returns_none_for_valid():
    assert validate_template(SCRIPT) is None


# --------------------------------------------------------------------------- rendering


def test_render_from_text_and_from_parsed():
    expected = "您好张三，您的订单 20240615 将于6月15日下午3点送达，确认请按1，改期请按2"
    assert render_template(SCRIPT, VALUES) == expected
    parsed = parse_template(SCRIPT)
    assert render_template(parsed, VALUES) == expected
    assert render_template(parsed, {**VALUES, "name": "李四"}).startswith("您好李四")


def test_values_are_not_reinterpreted():
    assert render_template("{a}", {"a": "{b} {{ }"}) == "{b} {{ }"


def test_extra_variables_ignored_and_non_strings_converted():
    assert render_template("{n}件", {"n": 3, "unused": "x"}) == "3件"


def test_missing_variables_lists_all_names():
    with pytest.raises(MissingVariables) as info:
        render_template(SCRIPT, {"name": "张三", "order_id": "", "time": "   "})
    error = info.value
    assert isinstance(error, KeyError)
    assert error.names == ("order_id", "date", "time")
    assert str(error) == "missing variables: order_id, date, time"


def test_none_counts_as_missing_and_names_are_distinct():
    with pytest.raises(MissingVariables) as info:
        render_template("{a}{b}{a}", {"a": None})
    assert info.value.names == ("a", "b")


def test_render_with_spans():
    text, spans = render_with_spans(SCRIPT, VALUES)
    assert text == render_template(SCRIPT, VALUES)
    assert [(text[s:e], hint) for s, e, hint in spans] == [
        ("张三", None),
        ("20240615", "digits"),
        ("6月15日", None),
        ("下午3点", None),
    ]
    assert spans[0] == (2, 4, None)


def test_render_with_spans_handles_escapes_and_repeats():
    text, spans = render_with_spans("{{{x:number}}} {x}", {"x": "42"})
    assert text == "{42} 42"
    assert spans == [(1, 3, "number"), (5, 7, None)]


def test_render_with_spans_missing():
    with pytest.raises(MissingVariables) as info:
        render_with_spans("{a}{b}", {})
    assert info.value.names == ("a", "b")


def test_parse_result_is_a_fresh_list():
    first = parse_template(SCRIPT)
    first.clear()
    assert len(parse_template(SCRIPT)) == 8
