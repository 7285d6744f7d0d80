"""Phone numbers, the one place they are parsed: as people type them and as spreadsheets mangle them.

Pure (phonenumbers, and Django's gettext for the reasons, said in the reader's language): contact and do-not-call
CSVs, the admin's forms and the launch checks use it.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from django.utils.translation import get_language, gettext, gettext_noop
from phonenumbers import PhoneNumberFormat, PhoneNumberType, ValidationResult, geocoder
from phonenumbers import timezone as pn_timezone
from phonenumbers.phonenumberutil import is_number_type_geographical

PhoneNumber = phonenumbers.PhoneNumber

_SCIENTIFIC = re.compile(r"[+-]?\d+(?:\.\d*)?[eE][+-]?\d+")
_EXCEL_FLOAT = re.compile(r"\+?\d+\.0+")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212().·]+")
_DIGITS_ONLY = re.compile(r"\+?\d+")
_DIGIT_RUN = re.compile(r"\d{7,}")

_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: gettext_noop("%(v)s does not start with a known country code"),
    phonenumbers.NumberParseException.NOT_A_NUMBER: gettext_noop("%(v)s is not a phone number"),
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: gettext_noop("%(v)s is too short to be a phone number"),
    phonenumbers.NumberParseException.TOO_SHORT_NSN: gettext_noop("%(v)s is too short to be a phone number"),
    phonenumbers.NumberParseException.TOO_LONG: gettext_noop("%(v)s is too long to be a phone number"),
}


def _country(numobj: phonenumbers.PhoneNumber) -> str:
    try:
        name = geocoder.country_name_for_number(numobj, "zh" if (get_language() or "").startswith("zh") else "en")
    except Exception:  # pragma: no cover - geodata is part of phonenumbers
        name = ""
    if name:
        return name
    region = phonenumbers.region_code_for_country_code(numobj.country_code)
    return region if region and region != "ZZ" else f"+{numobj.country_code}"


def parse_phone(value: str, region: str | None) -> tuple[phonenumbers.PhoneNumber | None, str]:
    """A number as people write it (full-width digits, separators, Excel's damage) read in `region` (None: it
    must carry its country code): (number, "") or (None, the reason in words staff understand)."""
    num, why, _ = parse_phone_kind(value, region)
    return num, why


def parse_phone_kind(value: str, region: str | None) -> tuple[phonenumbers.PhoneNumber | None, str, int]:
    """parse_phone, with the number's type (phonenumbers.PhoneNumberType) as a third item, for zones_for."""
    num, why = _read(value, region)
    if num is None:
        return None, why, PhoneNumberType.UNKNOWN
    # number_type() is UNKNOWN exactly when is_valid_number() is False; computed once, it also spares
    # zones_for() a second look (about a third of a row's cost in a 10,000-contact upsert).
    kind = phonenumbers.number_type(num)
    if kind == PhoneNumberType.UNKNOWN:
        return None, gettext(
            'the phone number "%(v)s" is not a valid %(country)s phone number; check for wrong, missing or extra digits'
        ) % {"v": value, "country": _country(num)}, kind
    return num, "", kind


def _read(value: str, region: str | None) -> tuple[phonenumbers.PhoneNumber | None, str]:
    """The number as typed, possible for its country (its length, its country code), or why not."""
    shown = f'"{value}"'
    v = unicodedata.normalize("NFKC", value).strip()  # full-width digits/+/brackets → ASCII
    if v.startswith("'"):  # Excel's "treat as text" marker
        v = v[1:].strip()
    if not v:
        return None, gettext("the phone number is empty")
    compact_ws = re.sub(r"\s+", "", v)
    if _SCIENTIFIC.fullmatch(compact_ws):
        return None, gettext(
            "the phone number %(v)s was turned into scientific notation by Excel, so some of its digits were lost; "
            "format the phone column as Text in Excel, re-enter the number and export again"
        ) % {"v": shown}
    if _EXCEL_FLOAT.fullmatch(compact_ws):  # 13800138000.0: Excel stored the number as a float
        compact_ws = compact_ws.split(".", 1)[0]
    compact = _SEPARATORS.sub("", compact_ws)
    if not _DIGITS_ONLY.fullmatch(compact):
        if len(_DIGIT_RUN.findall(v)) >= 2:
            return None, gettext("%(v)s looks like more than one phone number; put one number per row") % {"v": shown}
        return None, gettext("%(v)s is not a phone number (it contains characters other than digits)") % {"v": shown}
    try:
        num = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException as exc:
        reason = gettext(_PARSE_ERRORS.get(exc.error_type, _PARSE_ERRORS[exc.NOT_A_NUMBER])) % {"v": shown}
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not region:
            reason += " " + gettext("(numbers without a country code need a default region)")
        return None, reason

    possible = phonenumbers.is_possible_number_with_reason(num)
    if possible != ValidationResult.IS_POSSIBLE:
        said = {"v": shown, "country": _country(num)}
        if possible == ValidationResult.TOO_SHORT:
            return None, gettext("the phone number %(v)s is too short for a %(country)s number (digits are missing)") % said
        if possible == ValidationResult.TOO_LONG:
            return None, gettext("the phone number %(v)s is too long for a %(country)s number (it has extra digits)") % said
        if possible == ValidationResult.INVALID_LENGTH:
            return None, gettext("the phone number %(v)s has the wrong number of digits for a %(country)s number") % said
        if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
            return None, gettext("the phone number %(v)s is missing its area code") % said
        if possible == ValidationResult.INVALID_COUNTRY_CODE:
            return None, gettext("the phone number %(v)s does not start with a known country code") % said
        return None, gettext("the phone number %(v)s is not a possible phone number") % said
    return num, ""


def zones_for(num: phonenumbers.PhoneNumber, kind: int | None = None) -> list[str]:
    """The IANA zones the number's prefix lies in (several for a large country). `kind`: its number_type, when
    parse_phone_kind gave it (spares working it out again)."""
    if kind is not None and is_number_type_geographical(kind, num.country_code):
        zones = pn_timezone.time_zones_for_geographical_number(num)  # what time_zones_for_number does for these
    else:
        zones = pn_timezone.time_zones_for_number(num)
    return [z for z in zones if z and z != "Etc/Unknown"]


def e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def to_e164(value: str, region: str | None) -> str:
    """E.164 form of a number, or ValueError with the reason."""
    number, why = parse_phone(value, region)
    if number is None:
        raise ValueError(why)
    return e164(number)


def is_region(code: str) -> bool:
    """An ISO country code phonenumbers knows (CN, US, GB…; capitals only)."""
    return code in phonenumbers.SUPPORTED_REGIONS


def regions() -> list[str]:
    return sorted(phonenumbers.SUPPORTED_REGIONS)
