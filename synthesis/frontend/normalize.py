"""Text normalisation for Chinese delivery-call scripts: what a listener on the phone should hear.

``normalize(text, hints)`` turns digits, codes, dates, times, money, units and symbols into Chinese
characters, keeps English words as Latin for the English G2P (all-caps acronyms spelled out letter by
letter, "VIP" -> "V I P"), and maps punctuation onto the official GPT-SoVITS set ``, . ? ! …``.

It follows the official GPT-SoVITS v2 ``norm_text`` (zh_normalization + chinese2.replace_punctuation)
wherever that reading is right, and departs from it where a listener would hear a mistake (the
``known_wrong`` groups of the reference data). Written by hand rather than imported: the official
normaliser is not a package, drags in cn2an/jieba at import, and its wrong readings are what we fix.
Pure Python, no Django.

Decisions (where the official and the listener disagree, the listener wins):
- Digit-by-digit readings (codes, phone numbers, room numbers, any bare run of 3+ digits) say 幺 for 1,
  as the official does and as Chinese call centres do; years say 一 (一九九八年); the ``digits`` hint
  says 一.
- A dash inside a number or code is a pause (","), never 减: 138-1234-5678 -> 幺三八,幺二三四,五六七八.
  Plain or space-separated mobile numbers are read without pauses (as the official does); the
  ``phone`` hint groups them 3-4-4 with "," pauses.
- Money with ¥/￥/$ or the ``money`` hint drops trailing zero decimals: ¥325.50 -> 三百二十五点五元,
  ¥1299.00 -> 一千二百九十九元. A written "325.50元" keeps the official 三百二十五点五零元.
- Thousands separators are removed (1,299 -> 一千二百九十九). Times follow the official 点/半/分 style
  (15:30 -> 十五点半); hour 2 is 两点. 2 before a counting measure word is 两 (两个, 两小包), but labels
  and ordinals stay 二 (第二个, 二单元, 二栋). House numbers before 号 are quantities (100号 -> 一百号).
- Latin units after a number are said in Chinese (10kg -> 十公斤, 500g -> 五百克); 满200减30 -> 满两百减三十;
  M/D is a date (11/25 -> 十一月二十五日) except the small fractions 1/2, 1/3, 2/3, 1/4, 3/4;
  9am -> 上午九点; service@jd.com -> "service at j d dot com"; 139****5678 -> 幺三九星星星星五六七八.
- A "，" between an English word and Chinese is dropped, as the official does ("Hello，您好" -> "Hello您好").
- A sentence with no Chinese is English and goes through ``normalize_en`` (the official English rules:
  $25.50 -> twenty-five dollars and fifty cents, 10:30 -> ten thirty A M, 3 PM -> three P M), except
  that codes and dashed numbers are read digit by digit in English words ("S F one two three").
- Traditional characters are converted to simplified ones first (訂單 -> 订单, 3點半 -> 三点半), as the
  official normaliser does.
- The ``text`` hint means "no forced reading": the span goes through the ordinary rules, and so does a
  ``name`` (a person's name: the pipeline finds it again after normalising and G2P reads its surname as
  one). Overlapping or out-of-range spans and unknown hints are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .hanzi import to_simplified

__all__ = ["normalize", "normalize_en", "en_cardinal", "cardinal", "decimal", "digits", "HINTS"]

HINTS = frozenset({"digits", "money", "date", "time", "phone", "number", "text", "name"})

_DIGIT = "零一二三四五六七八九"
_DIGIT_YAO = "零幺二三四五六七八九"
_EN_DIGIT = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿", "万亿")

# Measure words after which a number is a count: read as a quantity, and 2 becomes 两.
_COUNT_MEASURES = (
    "小时|分钟|个月|个|件|台|箱|包|袋|盒|瓶|罐|桶|杯|张|把|只|支|条|根|块|元|美元|角|毛|天|周|年|岁|"
    "秒|次|趟|位|名|人|家|辆|份|套|双|对|公斤|千克|克|斤|吨|米|公里|千米|厘米|毫米|升|毫升|颗|粒|片|本|"
    "页|封|笔|间|倍|部|款|样|种|批|项|遍|回|口|头|匹|棵|朵|串|捆|卷|盘|碗|盆|壶|束|顶|副|剂|枚|盏|"
    "英寸|寸|尺|平米|平方米|立方米|刻|分|轮|步|单|户"
)
# Labels and ordinal-like units: read as a quantity, but 2 stays 二 (二单元, 二栋, 二月).
_LABEL_MEASURES = "单元|栋|幢|座|层|楼|门|期|排|区|号|月|日|折|级|站|季|届|代|声"

_CURRENCY_UNIT = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
_LATIN_UNITS = {
    "kg": "公斤",
    "KG": "公斤",
    "Kg": "公斤",
    "g": "克",
    "mg": "毫克",
    "km": "公里",
    "KM": "公里",
    "cm": "厘米",
    "mm": "毫米",
    "m": "米",
    "ml": "毫升",
    "mL": "毫升",
    "L": "升",
    "l": "升",
    "t": "吨",
    "m2": "平方米",
    "m²": "平方米",
    "m3": "立方米",
    "m³": "立方米",
    "cm2": "平方厘米",
    "cm²": "平方厘米",
    "cm3": "立方厘米",
    "cm³": "立方厘米",
    "kb": "KB",
    "mb": "MB",
}
# Chinese punctuation -> the official symbol set. Others (quotes, brackets, 《》) are dropped later.
_PUNCT = str.maketrans(
    {
        "，": ",",
        "。": ".",
        "！": "!",
        "？": "?",
        "：": ",",
        "；": ",",
        "、": ",",
        "·": ",",
        "~": "…",
        "～": "…",
        ":": ",",
        ";": ",",
        "\n": ".",
        "\r": "",
        "\t": " ",
    }
)
# Full-width digits, letters and a few symbols -> ASCII (the official F2H tables do the same).
_F2H: dict[int, int | str] = {0x3000: 0x20}
_F2H.update({c: c - 0xFEE0 for c in range(0xFF10, 0xFF1A)})
_F2H.update({c: c - 0xFEE0 for c in range(0xFF21, 0xFF3B)})
_F2H.update({c: c - 0xFEE0 for c in range(0xFF41, 0xFF5B)})
_F2H.update({ord(a): ord(b) for a, b in zip("％＋－．／＠＊＃＄", "%+-./@*#$", strict=True)})
_F2H.update({ord("嗯"): "恩", ord("呣"): "母"})  # as the official replace_punctuation: 嗯/呣 -> 恩/母


# --- number readers --------------------------------------------------------------------------------


def _section(n: int) -> str:
    """Read 1..9999 with the 零 rules (一千零一, 一百一十)."""
    out = []
    zero = False
    for power in (3, 2, 1, 0):
        d = n // 10**power % 10
        if d == 0:
            if out:
                zero = True
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGIT[d] + _SMALL_UNITS[power])
    return "".join(out)


# The largest number read as a quantity: 9999,9999,9999,9999 (the last of _BIG_UNITS is 万亿). Beyond it
# Chinese would need 亿亿 or 京, which nobody says on the phone and a listener cannot follow; a longer
# amount is almost always a data error or an identifier, so it is read digit by digit, which is also
# what a call-centre agent would do. Checked on the digit string before int(), which refuses very long
# strings (Python's 4300-digit limit).
_MAX_CARDINAL_DIGITS = 4 * len(_BIG_UNITS)


def cardinal(number: str | int, *, liang: bool = False) -> str:
    """Read an integer as a quantity: 2580 -> 二千五百八十, 10 -> 十, 10010 -> 一万零一十; 17+ digits one by one."""
    text = str(number).strip()
    if text.startswith(("-", "+")):
        sign, text = text[0], text[1:].strip()
        return ("负" if sign == "-" else "") + cardinal(text, liang=liang)
    significant = text.lstrip("0")
    if len(significant) > _MAX_CARDINAL_DIGITS:
        return digits(significant, yao=False)
    n = int(significant or "0")
    if n == 0:
        return "零"
    sections = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    out = []
    pending_zero = False
    for level in range(len(sections) - 1, -1, -1):
        sec = sections[level]
        if sec == 0:
            pending_zero = bool(out)
            continue
        if out and (pending_zero or sec < 1000):
            out.append("零")
        out.append(_section(sec) + _BIG_UNITS[level])
        pending_zero = False
    text = "".join(out)
    if text.startswith("一十"):
        text = text[1:]
    if liang and text[:2] in ("二百", "二千", "二万", "二亿"):
        text = "两" + text[1:]
    return text


def digits(s: str, *, yao: bool = True) -> str:
    """Read digits one by one: 110 -> 幺幺零 (yao) or 一一零."""
    table = _DIGIT_YAO if yao else _DIGIT
    return "".join(table[ord(c) - 48] for c in s if "0" <= c <= "9")


def decimal(s: str, *, trim: bool = False) -> str:
    """Read "325.50" as 三百二十五点五零 (official), or with ``trim`` as 三百二十五点五; "0.5" -> 零点五."""
    s = s.replace(",", "")
    neg = s.startswith("-")
    s = s.lstrip("+-")
    whole, _, frac = s.partition(".")
    text = cardinal(whole) if whole else "零"
    if trim:
        frac = frac.rstrip("0")
    elif frac.endswith("0"):
        frac = frac.rstrip("0") + "0"  # the official keeps one trailing zero: 3.50 -> 三点五零
    if frac:
        text += "点" + digits(frac, yao=False)
    return ("负" if neg else "") + text


def _time(h: str, m: str, s: str | None = None) -> str:
    hour = int(h)
    text = "两" if hour == 2 else cardinal(hour)
    text += "点"
    mi = int(m)
    if mi == 30:
        text += "半"
    elif mi:
        text += ("零" if m.startswith("0") else "") + cardinal(mi) + "分"
    if s and int(s):
        text += ("零" if s.startswith("0") else "") + cardinal(int(s)) + "秒"
    return text


def _spell(letters: str) -> str:
    return " ".join(letters)


def _code(token: str, *, yao: bool = True) -> str:
    """Read a code like SF1234567890 / B2C / EMS1122334455CN: letters spelled, digits one by one."""
    parts = []
    for run in _RE_CODE_RUN.findall(token):
        if run[0].isdigit():
            if len(run) == 1:
                parts.append(_DIGIT[int(run)])
            elif (
                len(run) <= 2
                and parts
                and len(parts[-1]) >= 3
                and not parts[-1].isupper()
                and " " not in parts[-1]
            ):
                parts.append(cardinal(run))  # a model number after a word: Mate60 -> Mate六十
            else:
                parts.append(digits(run, yao=yao))
        elif run.isupper() or len(run) <= 2:
            parts.append(_spell(run))
        else:
            parts.append(run)
    out = ""
    for p in parts:
        if out and out[-1].isascii() and out[-1].isalpha() and p[0].isascii() and p[0].isalpha():
            out += " "
        out += p
    return out


# --- patterns --------------------------------------------------------------------------------------

_RE_CODE_RUN = re.compile(r"\d+|[A-Za-z]+")
_RE_DIGIT_SPACES = re.compile(r"(?<=\d) +(?=\d)")
# Dimensions and products: 30cm×20cm, 40×30, 3x4 -> 乘 (a lone x between two numbers, never inside a word).
_DIMENSION = r"\d+(?:\.\d+)?(?:mm|cm|m|km|kg|g)?"
_RE_TIMES = re.compile(
    r"(?<=[\dA-Za-z²³])\s*[×✕]\s*(?=\d)"
    rf"|(?<![A-WYZa-wyz\d.])({_DIMENSION})\s*[xX]\s*(?={_DIMENSION}(?![A-WYZa-wyz\d]))"
)
_RE_EMAIL = re.compile(r"([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_RE_MASKED = re.compile(r"(?<!\d)(\d+)(\*{2,})(\d+)(?!\d)")
_RE_DATE_YMD = re.compile(r"(?<!\d)(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?![\d.])")
_RE_YEAR = re.compile(r"(?<!\d)(\d{4}|\d{2}(?=年\d{1,2}月))年")
_RE_MD_RANGE = re.compile(r"(?<![\d-])(\d{1,2})-(\d{1,2})(至|到|~|～)(\d{1,2})-(\d{1,2})(?![\d-])")
_RE_MD_SLASH = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")
_RE_AMPM = re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\.?(?![A-Za-z])", re.I)
_RE_TIME = re.compile(
    r"(?<![\d:])([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?"
    r"(?:\s*([-~～])\s*([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?)?(?![\d:])"
)
_RE_TWO_OCLOCK = re.compile(r"(?<![\d.])2(?=点(?![\d]))")
_RE_CURRENCY = re.compile(r"([¥￥$€£])\s*(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")
_RE_RMB = re.compile(r"(?:RMB|CNY)\s*(?=\d)")
_RE_THOUSANDS = re.compile(r"(?<![\d.,])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?)(?![\d,])")
_RE_PERCENT = re.compile(r"(-?\d+(?:\.\d+)?)%")
_RE_TEMPERATURE = re.compile(r"(-?)(\d+(?:\.\d+)?)(°C|℃|摄氏度|度)")
_RE_VERSION = re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.])")
_RE_LATIN_UNIT = re.compile(
    r"(?<![A-Za-z\d.])(\d+(?:\.\d+)?)\s*("
    + "|".join(sorted(map(re.escape, _LATIN_UNITS), key=len, reverse=True))
    + r")(?![A-Za-z\d²³])"
)
_RE_MAN_JIAN = re.compile(r"满(\d+)减(\d+)")
_RE_DASH_CHAIN = re.compile(r"(?<![A-Za-z0-9_.-])\+?([A-Za-z0-9]+(?:-[A-Za-z0-9]+)+)(?![A-Za-z0-9_-])")
_RE_CODE = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]+(?![A-Za-z0-9])")
_RE_ORDINAL = re.compile(r"第(\d+)")
_RE_DECIMAL = re.compile(r"(?<![\d.])(-?\d+\.\d+)(?![\d.])")
_RE_NUMBER = re.compile(
    r"(-?)(\d+)((?:" + _LABEL_MEASURES + r")(?!码)|(?:[多余几])?(?:[大小])?(?:" + _COUNT_MEASURES + r"))?"
)
_RE_COUNT_AFTER = re.compile(r"(?:[多余几])?(?:[大小])?(?:" + _COUNT_MEASURES + ")")
_RE_ACRONYM = re.compile(r"(?<![A-Za-z])[A-Z]{2,}(?![a-z])")
_RE_DROP = re.compile(r"[^\u4e00-\u9fa5A-Za-z,.?!…'\- ]+")
_RE_SPACES = re.compile(r" +")
_RE_SPACE_NOT_LATIN = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")
_RE_LONE_DASH = re.compile(r"(?<![A-Za-z])-|-(?![A-Za-z])")
_RE_LONE_DOT = re.compile(r"(?<![A-Za-z])\.(?=[A-Za-z])")
_RE_ELLIPSIS = re.compile(r"\.{3,}|…+")
_RE_REPEATED_PUNCT = re.compile(r"([,.?!…])[,.?!… ]+")
_RE_CJK = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff01-\uff5e]")  # CJK ideographs or full-width punctuation
_RE_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_RE_EN_PAUSE = re.compile(r"(?<=[A-Za-z])\s*[，,]\s*(?=[\u4e00-\u9fa5])")  # "Hello，您好": the official says no pause


# --- rules -----------------------------------------------------------------------------------------

_DOMAIN_WORDS = frozenset({"com", "net", "org", "edu", "gov", "info"})


def _email(m: re.Match[str]) -> str:
    local, domain = m.group(1), m.group(2)
    words = [
        p if p.lower() in _DOMAIN_WORDS or len(p) > 3 and not p.isupper() else _spell(p)
        for p in domain.split(".")
    ]
    return f" {local} at {' dot '.join(words)} "


def _date_ymd(m: re.Match[str]) -> str:
    year, _, month, day = m.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return m.group(0)
    return f"{digits(year, yao=False)}年{cardinal(month)}月{cardinal(day)}日"


def _md(month: str, day: str) -> str:
    return f"{cardinal(month)}月{cardinal(day)}日"


def _md_range(m: re.Match[str]) -> str:
    m1, d1, sep, m2, d2 = m.groups()
    if not all(1 <= int(x) <= 12 for x in (m1, m2)) or not all(1 <= int(x) <= 31 for x in (d1, d2)):
        return m.group(0)
    return _md(m1, d1) + ("至" if sep in "-~～" else sep) + _md(m2, d2)


def _md_slash(m: re.Match[str]) -> str:
    month, day = m.groups()
    if 1 <= int(month) <= 12 and 1 <= int(day) <= 31 and not (int(month) < int(day) <= 4):
        return _md(month, day)  # 11/25 is a date; 1/2, 2/3, 3/4 are fractions
    return f"{cardinal(day)}分之{cardinal(month)}"


def _ampm(m: re.Match[str]) -> str:
    hour, minute, half = m.groups()
    return ("上午" if half.lower() == "a" else "下午") + _time(hour, minute or "00")


def _clock(m: re.Match[str]) -> str:
    h1, m1, s1, sep, h2, m2, s2 = m.groups()
    text = _time(h1, m1, s1)
    if sep:
        text += "至" + _time(h2, m2, s2)
    return text


def _currency(m: re.Match[str]) -> str:
    return decimal(m.group(2), trim=True) + _CURRENCY_UNIT[m.group(1)]


def _thousands(m: re.Match[str]) -> str:
    number = m.group(1)
    after = m.string[m.end() : m.end() + 1]
    return decimal(number, trim=after in ("元", "块"))


def _percent(m: re.Match[str]) -> str:
    n = m.group(1)
    return ("负" if n.startswith("-") else "") + "百分之" + decimal(n.lstrip("-"))


def _temperature(m: re.Match[str]) -> str:
    return (
        ("零下" if m.group(1) else "") + decimal(m.group(2)) + ("摄氏度" if m.group(3) == "摄氏度" else "度")
    )


def _latin_unit(m: re.Match[str]) -> str:
    number, unit = m.groups()
    reading = decimal(number) if "." in number else cardinal(number)
    if reading == "二":
        reading = "两"
    return reading + _LATIN_UNITS[unit]


def _man_jian(m: re.Match[str]) -> str:
    return f"满{cardinal(m.group(1), liang=True)}减{cardinal(m.group(2), liang=True)}"


def _dash_chain(m: re.Match[str]) -> str:
    groups = m.group(1).split("-")
    if not any(any(c.isdigit() for c in g) for g in groups):
        return m.group(0)  # Wi-Fi, sf-express: words, not a number
    if len(groups) == 2 and all(g.isdigit() and len(g) <= 2 and g[0] != "0" for g in groups):
        return f"{cardinal(groups[0])}到{cardinal(groups[1])}"  # a range: 3-5 -> 三到五
    return ",".join(_code(g) if not g.isdigit() else digits(g) for g in groups)


def _ordinal(m: re.Match[str]) -> str:
    return "第" + cardinal(m.group(1))


def _decimal(m: re.Match[str]) -> str:
    number = m.group(1)
    after = m.string[m.end() : m.end() + 1]
    trim = after in ("元", "块") and set(number.partition(".")[2]) == {"0"}
    return decimal(number, trim=trim)


def _number(m: re.Match[str]) -> str:
    sign, n, measure = m.groups()
    measure = measure or ""
    if sign:
        return "负" + cardinal(n) + measure
    if len(n) >= 3 or (len(n) == 2 and n[0] == "0"):
        if measure and not (n[0] == "0") and (measure[0] != "号" or len(n) <= 4) and measure[0] not in "月日":
            return cardinal(n) + measure
        return digits(n) + measure
    reading = cardinal(n)
    if n == "2" and _RE_COUNT_AFTER.fullmatch(measure or "-") and m.string[m.start() - 1 : m.start()] != "第":
        reading = "两"
    return reading + measure


def _acronym(m: re.Match[str]) -> str:
    return _spell(m.group(0))


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str], ...] = (
    (_RE_DIGIT_SPACES, ""),
    (_RE_TIMES, lambda m: f"{m.group(1) or ''}乘"),
    (_RE_EMAIL, _email),
    (_RE_DATE_YMD, _date_ymd),
    (_RE_VERSION, lambda m: "点".join(digits(p, yao=False) for p in m.group(0).split("."))),
    (_RE_YEAR, lambda m: digits(m.group(1), yao=False) + "年"),
    (_RE_MD_RANGE, _md_range),
    (_RE_AMPM, _ampm),
    (_RE_TIME, _clock),
    (_RE_TWO_OCLOCK, "两"),
    (_RE_RMB, "人民币"),
    (_RE_CURRENCY, _currency),
    (_RE_THOUSANDS, _thousands),
    (_RE_PERCENT, _percent),
    (_RE_LATIN_UNIT, _latin_unit),
    (_RE_MAN_JIAN, _man_jian),
    (_RE_MD_SLASH, _md_slash),
    (_RE_DASH_CHAIN, _dash_chain),
    (_RE_TEMPERATURE, _temperature),
    (_RE_CODE, lambda m: _code(m.group(0))),
    (_RE_ORDINAL, _ordinal),
    (_RE_DECIMAL, _decimal),
    (_RE_NUMBER, _number),
    (_RE_ACRONYM, _acronym),
)


def _masked(m: re.Match[str]) -> str:
    return digits(m.group(1)) + "星" * len(m.group(2)) + digits(m.group(3))


def _finish(text: str) -> str:
    """Map punctuation to the official set, drop what the G2P cannot say, tidy spaces."""
    text = _RE_ELLIPSIS.sub("…", text.translate(_PUNCT))
    text = text.replace("/", "每")
    text = _RE_DROP.sub(" ", text)
    text = _RE_LONE_DASH.sub(",", text)
    text = _RE_LONE_DOT.sub(". ", text)
    text = _RE_SPACES.sub(" ", text)
    text = _RE_SPACE_NOT_LATIN.sub("", text)
    text = _RE_REPEATED_PUNCT.sub(r"\1", text)
    return text.strip()


def _normalize_zh(text: str) -> str:
    text = _RE_EN_PAUSE.sub("", text.translate(_F2H))
    text = _RE_MASKED.sub(_masked, text)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return _finish(text)


# --- English ---------------------------------------------------------------------------------------
# normalize_en follows the official GPT-SoVITS English normaliser (text/en_normalization/expend.py):
# $25.50 -> twenty-five dollars and fifty cents, 2.5 -> two point five, 1401 -> fourteen oh one,
# 12345 -> twelve thousand, three hundred forty-five, all-caps split into letters ("PM" -> "P M").
# Departures, for the listener: codes, order and phone numbers (letters+digits, dashed numbers, 5+ digit
# runs) are read digit by digit ("S F one two three"); a clock time says "A M"/"P M" (the official
# "a.m." is read "uh . M ."), and an am/pm written after it is not said twice; "3pm" -> "three P M";
# "1. " is not turned into "first,"; glued kg/g/lb are said as words.

_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = ("", " thousand", " million", " billion", " trillion", " quadrillion")
_EN_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def _en_below_100(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def _en_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_EN_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        words.append(_en_below_100(rest))
    return " ".join(words)


def en_cardinal(n: int) -> str:
    """12345 -> 'twelve thousand, three hundred forty-five' (no 'and', as the official andword='')."""
    if n < 0:
        return "negative " + en_cardinal(-n)
    if n == 0:
        return "zero"
    if n >= 1000 ** len(_EN_SCALES):  # beyond the largest scale word: digit by digit, as in Chinese
        return " ".join(_EN_DIGIT[int(c)] for c in str(n))
    chunks = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            chunks.append(_en_below_1000(chunk) + _EN_SCALES[min(scale, len(_EN_SCALES) - 1)])
        scale += 1
    return ", ".join(reversed(chunks))


def _en_number(n: int) -> str:
    """The official _expand_number: 1001-2999 read as years (fourteen oh one, two thousand five)."""
    if 1000 < n < 3000:
        if n == 2000:
            return "two thousand"
        if 2000 < n < 2010:
            return "two thousand " + _EN_ONES[n % 100]
        if n % 100 == 0:
            return _en_below_100(n // 100) + " hundred"
        high, low = divmod(n, 100)
        return _en_below_100(high) + " " + (f"oh {_EN_ONES[low]}" if low < 10 else _en_below_100(low))
    return en_cardinal(n)


def _en_ordinal(n: int) -> str:
    words = _en_number(n) if n < 1000 else en_cardinal(n)
    head, sep, last = words.rpartition(" ") if "-" not in words.rsplit(" ", 1)[-1] else words.rpartition("-")
    if last in _EN_ORDINAL_IRREGULAR:
        last = _EN_ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


_EN_UNITS = {
    "m": ("meter", "meters"), "km": ("kilometer", "kilometers"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"), "L": ("liter", "liters"), "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"), "h": ("hour", "hours"), "min": ("minute", "minutes"),
    "s": ("second", "seconds"), "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
}  # fmt: skip
_EN_MONEY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence")}

_AMPM = r"([AaPp])(?:\.\s?[Mm]\.|\s?[Mm](?![A-Za-z]))"  # PM, pm, p.m., p. m.
_RE_EN_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?:\s*" + _AMPM + ")?")
_RE_EN_AMPM = re.compile(r"\b(\d{1,2})\s*" + _AMPM)
_RE_EN_UNIT = re.compile(
    r"\b(\d+(?:\.\d+)?)(" + "|".join(sorted(map(re.escape, _EN_UNITS), key=len, reverse=True)) + r")(?![A-Za-z0-9])"
)
_RE_EN_MONEY = re.compile(r"([$£])(\d+(?:,\d{3})*(?:\.\d+)?)|(\d+(?:,\d{3})*(?:\.\d+)?)([$£])")
_RE_EN_COMMA_NUMBER = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_RE_EN_NEGATIVE = re.compile(r"(?:^|(?<=\s))-(?=\d)")
_RE_EN_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_RE_EN_FRACTION = re.compile(r"\b(\d+)/(\d+)\b")
_RE_EN_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_RE_EN_NUMBER = re.compile(r"\d+")
_RE_EN_DROP = re.compile(r"[^ A-Za-z'.,?!\-]")
_RE_EN_CAPS = re.compile(r"(?<=\S)(?=[A-Z])")
_RE_EN_PUNCT = str.maketrans({"。": ".", "！": "!", "？": "?", "，": ",", "“": "'", "”": "'", "’": "'", "‘": "'", '"': "'"})
_RE_EN_CODE = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*\d)(?:[A-Za-z]*\d[A-Za-z0-9]*(?:-[A-Za-z0-9]+)+|[A-Z]+\d{3,}[A-Z0-9]*|\d{5,})(?![A-Za-z0-9_-])"
)


def _en_code(m: re.Match[str]) -> str:
    groups = []
    for g in m.group(0).split("-"):
        words = []
        if g == "800":
            groups.append("eight hundred")  # the toll-free prefix is said "eight hundred"
            continue
        for run in _RE_CODE_RUN.findall(g):
            words.extend(_EN_DIGIT[int(c)] for c in run) if run.isdigit() else words.extend(run)
        groups.append(" ".join(words))
    return ", ".join(groups)


def _en_time(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = (m.group(3) or ("a" if hours < 12 else "p")).upper() + " M"
    if hours > 12:
        hours -= 12
    hour = _EN_ONES[hours or 12] if hours < 20 else _en_below_100(hours)
    minute = "o'clock" if minutes == 0 else ("oh " + _EN_ONES[minutes] if minutes < 10 else _en_below_100(minutes))
    return f"{hour} {minute} {period}"


def _en_unit(m: re.Match[str]) -> str:
    number, unit = m.group(1), m.group(2)
    return f"{number} {_EN_UNITS[unit][0 if number == '1' else 1]}"


def _en_money(m: re.Match[str]) -> str:
    symbol = m.group(1) or m.group(4)
    amount = (m.group(2) or m.group(3)).replace(",", "")
    one, many, sub_one, sub_many = _EN_MONEY[symbol]
    whole, _, frac = amount.partition(".")
    units = int(whole or 0)
    subs = int(frac[:2].ljust(2, "0")) if frac else 0
    parts = []
    if units:
        parts.append(f"{_en_number(units)} {one if units == 1 else many}")
    if subs:
        parts.append(f"{_en_below_100(subs)} {sub_one if subs == 1 else sub_many}")
    return " and ".join(parts) or f"zero {many}"


def _en_fraction(m: re.Match[str]) -> str:
    num, den = int(m.group(1)), int(m.group(2))
    if den == 0:
        return m.group(0)
    if den == 1:
        return _en_number(num)
    if den == 2:
        return f"{_en_number(num)} {'half' if num == 1 else 'halves'}"
    return f"{_en_number(num)} {_en_ordinal(den)}{'s' if num > 1 else ''}"


def normalize_en(text: str) -> str:
    """English text -> words the English G2P reads, following the official English normaliser."""
    text = original = text.translate(_F2H).translate(_RE_EN_PUNCT).strip()
    text = _RE_TIMES.sub(lambda m: f"{m.group(1) or ''} by ", text)
    text = _RE_EN_CODE.sub(_en_code, text)
    text = _RE_EN_NEGATIVE.sub("negative ", text)
    text = _RE_EN_COMMA_NUMBER.sub("", text)
    text = _RE_EN_TIME.sub(_en_time, text)
    text = _RE_EN_AMPM.sub(lambda m: f"{m.group(1)} {m.group(2).upper()} M", text)
    text = re.sub(r"([AP] M)$", r"\1.", text) if re.search(r"[ap]\.\s?m\.$", original, re.I) else text
    text = _RE_EN_UNIT.sub(_en_unit, text)
    text = _RE_EN_MONEY.sub(_en_money, text)
    text = _RE_EN_DECIMAL.sub(lambda m: f"{m.group(1)} point " + " ".join(_EN_DIGIT[int(c)] for c in m.group(2)), text)
    text = _RE_EN_FRACTION.sub(_en_fraction, text)
    text = _RE_EN_ORDINAL.sub(lambda m: _en_ordinal(int(m.group(1))), text)
    text = _RE_EN_NUMBER.sub(lambda m: _en_number(int(m.group(0))), text)
    text = text.replace("%", " percent")
    text = _RE_EN_DROP.sub("", text)
    text = re.sub(r"(?i)\bi\.e\.", "that is", text)
    text = re.sub(r"(?i)\be\.g\.", "for example", text)
    text = _RE_EN_CAPS.sub(" ", text)
    return re.sub(r" +", " ", text).strip()


# --- hints -----------------------------------------------------------------------------------------

_RE_PHONE_SEP = re.compile(r"[\s\-().]+")
_RE_HINT_DATE = re.compile(r"(?:(\d{2}|\d{4})\s*[-/.年]\s*)?(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_RE_HINT_TIME = re.compile(r"(\d{1,2})\s*[:：点]\s*(\d{1,2})?(?:\s*[:：分]\s*(\d{1,2}))?")
_RE_HINT_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _phone_groups(d: str) -> list[str]:
    if d.startswith("86") and len(d) == 13:
        return ["86"] + _phone_groups(d[2:])
    if d.startswith("0086") and len(d) == 15:
        return ["0086"] + _phone_groups(d[4:])
    if len(d) == 11 and d[0] == "1":
        return [d[:3], d[3:7], d[7:]]
    if len(d) == 10 and d[:3] in ("400", "800"):
        return [d[:3], d[3:6], d[6:]]
    if d.startswith("0") and len(d) >= 10:
        area = 3 if d[1] in "12" else 4  # 010, 02x are three digits; the rest are four
        return [d[:area], d[area:]]
    return [d]


def _read_hint(value: str, hint: str, after: str) -> str | None:
    """The forced reading of one placeholder value, or None to let the ordinary rules read it."""
    value = value.translate(_F2H)
    if hint == "digits":
        return _code(value, yao=False) if any(c.isalpha() for c in value) else digits(value, yao=False)
    if hint == "phone":
        raw = value.strip()
        if raw.startswith("+"):
            raw = raw[1:]
        parts = [digits(p) and p for p in _RE_PHONE_SEP.split(raw)]
        groups = [g for p in parts if p for g in (_phone_groups(p) if len(p) >= 10 else [p])]
        return ",".join(digits(g) for g in groups)
    if hint == "money":
        m = _RE_HINT_NUMBER.search(value)
        if not m:
            return None
        unit = next((u for s, u in _CURRENCY_UNIT.items() if s in value), "元")
        if "美元" in value or "USD" in value:
            unit = "美元"
        reading = decimal(m.group(0), trim=True)
        if reading == "二":
            reading = "两"
        return reading + ("" if after[:1] in ("元", "块") or after.startswith("美元") else unit)
    if hint == "date":
        m = _RE_HINT_DATE.search(value)
        if not m:
            return None
        year, month, day = m.groups()
        text = f"{digits(year, yao=False)}年" if year else ""
        return text + f"{cardinal(month)}月{cardinal(day)}" + ("号" if "号" in value else "日")
    if hint == "time":
        m = _RE_HINT_TIME.search(value)
        if not m:
            return None
        return _time(m.group(1), m.group(2) or "0", m.group(3))
    if hint == "number":
        m = _RE_HINT_NUMBER.fullmatch(value.strip())
        if not m:
            return None
        reading = decimal(m.group(0))
        if reading == "二" and _RE_COUNT_AFTER.match(after):
            reading = "两"
        return reading
    return None  # "text" and unknown hints: ordinary rules


def normalize(text: str, hints: list[tuple[int, int, str | None]] | None = None) -> str:
    """Return what a listener should hear for ``text``: Chinese characters, Latin English words, ``,.?!…``.

    ``hints`` are ``(start, end, hint)`` spans of ``text`` (from ``render_with_spans``); a span with a
    hint in :data:`HINTS` is read that way whatever its context. Traditional characters become simplified
    ones first (one for one, so the spans stay valid), as in the official normaliser.
    """
    text = to_simplified(text)
    if hints:
        pieces = []
        pos = 0
        for start, end, hint in sorted(hints):
            if hint is None or start < pos or not 0 <= start <= end <= len(text):
                continue  # no hint, overlapping, or out of range: ordinary rules
            reading = _read_hint(text[start:end], hint, text[end : end + 2])
            if reading is None:
                continue
            pieces.append(text[pos:start])
            pieces.append(reading)
            pos = end
        pieces.append(text[pos:])
        text = "".join(pieces)
    if not _RE_CJK.search(text) and _RE_LATIN_WORD.search(text):
        return normalize_en(text)
    return _normalize_zh(text)
