"""Numbers of any length: up to 9999,9999,9999,9999 read as quantities, longer ones digit by digit (issue 17).

Before, an amount or count of 17+ digits raised IndexError in the normaliser and stalled its render batch.
"""

from __future__ import annotations

from synthesis.frontend.normalize import cardinal, decimal, en_cardinal, normalize, normalize_en
from synthesis.frontend.pipeline import process

SEVENTEEN_ZEROS_READ = "一" + "零" * 17


def test_a_seventeen_digit_balance_is_read_digit_by_digit():
    assert normalize("余额为100000000000000000元") == f"余额为{SEVENTEEN_ZEROS_READ}元"


def test_a_seventeen_digit_count_is_read_digit_by_digit():
    assert normalize("积分12345678901234567分") == "积分一二三四五六七八九零一二三四五六七分"


def test_the_largest_number_with_units_is_still_read_as_a_quantity():
    assert cardinal("9999999999999999") == "九千九百九十九万亿九千九百九十九亿九千九百九十九万九千九百九十九"
    assert normalize("9999999999999999元") == "九千九百九十九万亿九千九百九十九亿九千九百九十九万九千九百九十九元"
    assert cardinal("10000000000000000") == "一" + "零" * 16


def test_zeros_inside_big_numbers_keep_the_ling_rules():
    assert cardinal("1000000000000001") == "一千万亿零一"
    assert cardinal("1000000100000000") == "一千万亿零一亿"
    assert cardinal("100000000000000001") == "一" + "零" * 16 + "一"


def test_leading_zeros_do_not_make_a_number_long():
    assert cardinal("00000000000000000012") == "十二"
    assert cardinal(0) == "零"


def test_negative_numbers():
    assert cardinal(-25) == "负二十五"
    assert cardinal("-100000000000000000") == "负" + SEVENTEEN_ZEROS_READ
    assert normalize("温差-100000000000000000度").startswith("温差")


def test_decimals_with_a_huge_whole_part():
    assert decimal("123456789012345678.25") == "一二三四五六七八九零一二三四五六七八点二五"
    assert decimal("-100000000000000000.5") == "负" + SEVENTEEN_ZEROS_READ + "点五"


def test_huge_money_amounts():
    assert normalize("¥100000000000000000.00") == SEVENTEEN_ZEROS_READ + "元"
    assert normalize("应付1,000,000,000,000,000,000元") == "应付一" + "零" * 18 + "元"
    assert normalize("共计100000000000000000.50元") == f"共计{SEVENTEEN_ZEROS_READ}点五零元"


def test_money_hint_with_a_huge_amount():
    text = "金额99999999999999999999元"
    assert normalize(text, [(2, 22, "money")]) == "金额" + "九" * 20 + "元"


def test_a_number_longer_than_python_reads_at_once():
    # int() refuses strings of more than 4300 digits; such a number is still read, digit by digit
    assert normalize("1" * 5000 + "元") == "一" * 5000 + "元"


def test_english_beyond_quadrillions_is_read_digit_by_digit():
    assert en_cardinal(10**18) == "one " + " ".join(["zero"] * 18)
    assert en_cardinal(999 * 10**15) == "nine hundred ninety-nine quadrillion"
    assert normalize_en("I owe $1234567890123456789012.").startswith("I owe one two three")


def test_the_frontend_reads_a_huge_amount_end_to_end():
    result = process("您的余额为100000000000000000元。")
    assert result.norm_text == f"您的余额为{SEVENTEEN_ZEROS_READ}元."
    assert len(result.phones) == len(result.phone_ids) == sum(result.word2ph)
