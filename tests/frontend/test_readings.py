"""What a listener expects to hear: polyphonic surnames in name positions, and 的/地/得 by their role.

Each case is written from the listener's side (a dictionary reading of the word in that sentence), not from
what the official frontend says; the official differs on most of the positive cases.
"""

from __future__ import annotations

import pytest

from campaigns.templating import parse_template, render_marked
from synthesis.frontend.g2p import _parse_syllable, _syllable_phones, g2p_zh
from synthesis.frontend.pipeline import process
from synthesis.frontend.readings import surnames


def _syllable(text: str, fragment: str, index: int = 0) -> str:
    """The phones said for fragment[index] in the processed text, as 'initial final'."""
    result = process(text)
    assert result.word2ph is not None, result
    at = result.norm_text.index(fragment) + index
    start = sum(result.word2ph[:at])
    return " ".join(result.phones[start : start + result.word2ph[at]])


def _named(template: str, **values: str) -> str:
    """A script rendered the way planning renders it (hints and {name} travel as marks)."""
    return render_marked(parse_template(template), values)


# ------------------------------------------------------------------------------------------- surnames


@pytest.mark.parametrize(
    ("text", "fragment", "index", "expected"),
    [
        ("请问是单先生吗？", "单先生", 0, "sh an4"),
        ("曾女士您好，您的快递到了。", "曾女士", 0, "z eng1"),
        ("解晓东先生，您的包裹今天下午送达。", "解晓东", 0, "x ie4"),
        ("您好，仇志强先生。", "仇志强", 0, "q iu2"),
        ("曾经理，您的货到了。", "曾经理", 0, "z eng1"),  # 经理 is the title, not 曾经
        ("请曾总签收一下。", "曾总", 0, "z eng1"),
        ("单总经理您好。", "单总经理", 0, "sh an4"),
        ("查女士，您的退货申请已经通过了。", "查女士", 0, "zh a1"),
        ("朴小姐，麻烦您核对一下收件信息。", "朴小姐", 0, "p iao2"),
        ("区经理您好。", "区经理", 0, "OO ou1"),
        ("翟师傅，您的快递放在门卫了。", "翟师傅", 0, "zh ai2"),
        ("缪老师您好。", "缪老师", 0, "m iao4"),
        ("覃女士，您的包裹到了。", "覃女士", 0, "q in2"),
        ("肖先生，您的外卖到了。", "肖先生", 0, "x iao1"),
        ("您好，我姓单，单独的单。", "姓单", 1, "sh an4"),
        ("免贵姓曾。", "姓曾", 1, "z eng1"),
        ("配送员姓解，电话是一三八。", "姓解", 1, "x ie4"),
        ("请问是尉迟先生吗？", "尉迟", 0, "y v4"),
        ("请问是尉迟先生吗？", "尉迟", 1, "ch ir2"),
        ("万俟女士您好。", "万俟", 0, "m o4"),
    ],
)
def test_a_surname_before_a_title_or_after_xing_reads_as_a_surname(text, fragment, index, expected):
    assert _syllable(text, fragment, index) == expected


@pytest.mark.parametrize(
    ("text", "fragment", "index", "expected"),
    [
        ("您好，我姓单，单独的单。", "单独", 0, "d an1"),
        ("您的订单已发货。", "订单", 1, "d an1"),
        ("我曾经来过这里。", "曾经", 0, "c eng2"),
        ("这个问题已经解决了。", "解决", 0, "j ie3"),
        ("这件事很重要。", "重要", 0, "zh ong4"),
        ("老百姓重视服务。", "重视", 0, "zh ong4"),  # 姓 ends 老百姓 here
        ("我帮您查询先生的订单。", "查询", 0, "ch a2"),  # 查询 is a word; 先生 addresses the listener
        ("我帮您查一下先生。", "查一下", 0, "ch a2"),
        ("我帮您查先生的快递。", "查先生", 0, "ch a2"),  # after 您 查 is the verb
        ("这单先生您签收一下。", "这单", 1, "d an1"),  # this order, sir
        ("请跟快递员师傅说。", "快递员", 2, "y van2"),  # 员 ends 快递员, 师傅 is the courier
        ("我们查总账。", "查总账", 0, "ch a2"),
        ("小区经理会联系您。", "小区", 1, "q v1"),
    ],
)
def test_the_same_characters_outside_a_name_keep_their_reading(text, fragment, index, expected):
    assert _syllable(text, fragment, index) == expected


def test_a_name_from_the_template_starts_with_a_surname():
    text = _named("您好{name}，您的快递到了。", name="单晓东")
    assert text == "您好\u27eaname:单晓东\u27eb，您的快递到了。"
    assert _syllable(text, "单晓东") == "sh an4"
    assert _syllable(_named("您好{name}，您的快递到了。", name="曾伟"), "曾伟") == "z eng1"
    assert _syllable(_named("您好{name}，您的快递到了。", name="單曉東"), "单晓东") == "sh an4"  # traditional


def test_only_names_whose_reading_changes_are_marked():
    # a plain name leaves the script text, and so its render key, as it was
    assert _named("您好{name}，您的快递到了。", name="张三") == "您好张三，您的快递到了。"
    assert _named("您好{name}，您的快递到了。", name="单单") == "您好单单，您的快递到了。"


def test_a_template_name_is_found_after_numbers_are_read_out():
    text = _named("订单123号已到，{name}请查收，您的订单单号不变。", name="单丽")
    assert _syllable(text, "单丽") == "sh an4"
    assert _syllable(text, "单号") == "d an1"  # the other 单 in the script stays an ordinary word


def test_any_variable_can_be_marked_as_a_name_and_name_can_opt_out():
    assert _syllable(_named("收件人{收件人:name}，请到门口取件。", 收件人="解放"), "解放") == "x ie4"
    assert _syllable(_named("{name:text}您好。", name="解放"), "解放") == "j ie3"


def test_a_doubled_given_name_alone_is_not_a_surname():
    assert _syllable(_named("{name}小朋友你好。", name="单单"), "单单") == "d an1"


def test_every_surname_in_the_table_is_read_as_one_after_xing():
    table = surnames()
    assert {"单", "曾", "解", "尉迟", "万俟"} <= set(table)
    for surname, syllables in table.items():
        phones = g2p_zh(f"我姓{surname}.")[0]
        expected = [phone for syllable in syllables for phone in _syllable_phones(*_parse_syllable(syllable))]
        assert phones[4 : 4 + len(expected)] == expected, surname


def test_official_mode_reads_surnames_the_official_way():
    assert g2p_zh("解晓东先生", fix_readings=False)[0][:2] == ["j", "ie3"]
    assert g2p_zh("解晓东先生")[0][:2] == ["x", "ie4"]


# -------------------------------------------------------------------------------------------- 的 地 得


@pytest.mark.parametrize(
    ("text", "fragment", "index", "expected"),
    [
        # adverbial 地 before a verb: de5
        ("快递员会认真地检查包裹。", "认真地", 2, "d e5"),
        ("您慢慢地走。", "慢慢地", 2, "d e5"),
        ("他慢慢地走了。", "慢慢地", 2, "d e5"),
        ("我们会准时地送达。", "准时地", 2, "d e5"),
        ("他高兴地拿着快递回家了。", "高兴地", 2, "d e5"),
        ("请把包裹轻轻地放在门口。", "轻轻地", 2, "d e5"),
        # 地 the noun: di4
        ("请核对收货地址。", "地址", 0, "d i4"),
        ("包裹已到达目的地。", "目的地", 2, "d i4"),
        ("地图上能找到这个小区。", "地图", 0, "d i4"),
        ("这片土地很大。", "土地", 1, "d i4"),
        ("这块地很大。", "这块地", 2, "d i4"),
        ("外地的客户也能下单。", "外地", 1, "d i4"),
        # 的: de5, except in words where it is di
        ("我的快递到了吗？", "我的", 1, "d e5"),
        ("包裹已到达目的地。", "目的地", 1, "d i4"),
        ("这次来的目的是送货。", "目的", 1, "d i4"),
        ("的确是您的包裹。", "的确", 0, "d i2"),
        ("您可以坐的士过来。", "的士", 0, "d i1"),
        ("我打的去机场。", "打的", 1, "d i1"),
        ("您打的电话是空号。", "打的", 1, "d e5"),
        ("说话要有的放矢。", "有的放矢", 1, "d i4"),
        # 得 the complement particle: de5
        ("他跑得快。", "跑得快", 1, "d e5"),
        ("您说得好。", "说得好", 1, "d e5"),
        ("现在下单还来得及。", "来得及", 1, "d e5"),
        ("快递员说得对，这个包裹确实破了。", "说得对", 1, "d e5"),
        ("地址写得很清楚。", "写得", 1, "d e5"),
        ("您还记得订单号吗？", "记得", 1, "d e5"),
        # 得 'obtain': de2
        ("您已得到补偿。", "得到", 0, "d e2"),
        ("您获得了一张优惠券。", "获得", 1, "d e2"),
        ("请及时取得联系。", "取得", 1, "d e2"),
        # 得 'must': dei3
        ("你得去驿站取件。", "你得去", 1, "d ei3"),
        ("我得走了。", "我得", 1, "d ei3"),
        ("得赶紧签收。", "得赶紧", 0, "d ei3"),
        ("我们还得等两天。", "还得", 1, "d ei3"),
        ("您得先签字，我才能给您开门。", "您得", 1, "d ei3"),
        ("这个箱子很重，您得小心搬。", "您得", 1, "d ei3"),
    ],
)
def test_de_di_de_read_by_their_role(text, fragment, index, expected):
    assert _syllable(text, fragment, index) == expected


def test_de_that_means_got_is_not_must():
    assert _syllable("我得了感冒。", "我得", 1) != "d ei3"
    assert _syllable("我等得不耐烦了。", "等得", 1) == "d e5"  # after a verb: the complement particle
