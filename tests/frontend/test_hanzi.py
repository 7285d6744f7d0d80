"""Scripts typed in traditional characters read exactly like their simplified form."""

from __future__ import annotations

import importlib.util

import pytest

from synthesis.frontend import hanzi
from synthesis.frontend.hanzi import to_simplified
from synthesis.frontend.normalize import normalize
from synthesis.frontend.pipeline import process
from tests.frontend.test_normalize import _rows

# (typed in traditional characters, the same script in simplified ones), written by hand.
PAIRS = [
    ("您好張先生，您的訂單SF1234567890將於明天下午3點送達，確認請按1，改期請按2。",
     "您好张先生，您的订单SF1234567890将于明天下午3点送达，确认请按1，改期请按2。"),
    ("您的包裹已到達驛站，取件碼是8326。", "您的包裹已到达驿站，取件码是8326。"),
    ("快遞員會在11月25日上午10:30前後聯繫您。", "快递员会在11月25日上午10:30前后联系您。"),
    ("本次訂單金額為¥325.50，請準備零錢。", "本次订单金额为¥325.50，请准备零钱。"),
    ("請把冰箱送到3棟2單元501室，謝謝。", "请把冰箱送到3栋2单元501室，谢谢。"),
    ("如需改期，請撥打客服電話138-1234-5678。", "如需改期，请拨打客服电话138-1234-5678。"),
    ("這週六下午兩點半，麻煩您在家簽收。", "这周六下午两点半，麻烦您在家签收。"),
    ("您購買的iPhone已經發貨，請保持電話暢通。", "您购买的iPhone已经发货，请保持电话畅通。"),
    ("天氣乾燥，頭髮很長的鍾女士請到櫃檯領取。", "天气干燥，头发很长的钟女士请到柜台领取。"),
    ("乾隆年間的瞭望台，門票打八折。", "乾隆年间的瞭望台，门票打八折。"),
]


@pytest.mark.parametrize(("traditional", "simplified"), PAIRS)
def test_traditional_script_reads_like_the_simplified_one(traditional, simplified):
    assert to_simplified(traditional) == simplified
    assert traditional != simplified
    ours, theirs = process(traditional), process(simplified)
    assert (ours.norm_text, ours.phones, ours.word2ph) == (theirs.norm_text, theirs.phones, theirs.word2ph)


def test_simplified_text_never_changes():
    rows = _rows()
    assert len(rows) > 300
    changed = [row["id"] for row in rows if to_simplified(row["text"]) != row["text"]]
    assert changed == []


def test_phrases_beat_characters():
    assert to_simplified("乾燥") == "干燥"  # 乾 alone is 干 ...
    assert to_simplified("乾隆皇帝") == "乾隆皇帝"  # ... but a name keeps it
    assert to_simplified("乾乾淨淨") == "干干净净"
    assert to_simplified("瞭望") == "瞭望" and to_simplified("明瞭") == "明了"


def test_reading_hints_keep_their_places():
    text = "訂單{order}將於{date}送達"
    filled = text.replace("{order}", "1125886600").replace("{date}", "11月25日")
    start = filled.index("1125886600")
    hints = [(start, start + 10, "digits")]
    assert normalize(filled, hints) == normalize(to_simplified(filled), hints)
    assert normalize(filled, hints).startswith("订单一一二五八八六六零零")


def test_a_damaged_table_names_its_line(tmp_path):
    bad = tmp_path / "TSCharacters.txt"
    bad.write_text("訂\t订\n單\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"TSCharacters\.txt:2: expected a word, a tab and same-length choices"):
        hanzi._entries(bad)


def test_missing_table_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opencc" else real(name, *a))
    with pytest.raises(RuntimeError, match="install opencc-python-reimplemented==0.1.7"):
        hanzi.table_dir()
