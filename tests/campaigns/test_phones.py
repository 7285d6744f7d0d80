"""campaigns.phones: the one place numbers are parsed. parse_phone_kind computes a number's type once and
zones_for takes it; both must say exactly what phonenumbers' own is_valid_number and time_zones_for_number say."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import timezone as pn_timezone

from campaigns import phones


def _numbers(count: int, seed: int):
    rng = random.Random(seed)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for i in range(count):
        region = "CN" if i % 3 == 0 else rng.choice(regions)
        yield "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 12))), region


def test_validity_and_zones_agree_with_phonenumbers_own_calls():
    checked = valid = 0
    for digits, region in _numbers(9000, seed=20261207):
        try:
            parsed = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException:
            continue
        possible = phonenumbers.is_possible_number_with_reason(parsed) == phonenumbers.ValidationResult.IS_POSSIBLE
        num, why, kind = phones.parse_phone_kind(digits, region)
        checked += 1
        assert (num is not None) == (possible and phonenumbers.is_valid_number(parsed)), (digits, region, why)
        if num is not None:
            valid += 1
            expected = [z for z in pn_timezone.time_zones_for_number(num) if z and z != "Etc/Unknown"]
            assert phones.zones_for(num, kind) == phones.zones_for(num) == expected, (digits, region)
    assert checked > 8000 and valid > 500  # the sample holds enough valid numbers to mean something


@pytest.mark.parametrize(("typed", "region", "e164", "zones"), [
    ("139 0013 9000", "CN", "+8613900139000", ["Asia/Shanghai"]),
    ("+1 (212) 555-0142", None, "+12125550142", ["America/New_York"]),
])  # fmt: skip
def test_a_number_as_typed_gets_its_zone(typed, region, e164, zones):
    num, why, kind = phones.parse_phone_kind(typed, region)
    assert (phones.e164(num), why, phones.zones_for(num, kind)) == (e164, "", zones)


def test_an_invalid_number_says_why_with_its_type_unknown():
    num, why, kind = phones.parse_phone_kind("+86 139 0013 900", None)
    assert num is None and kind == phonenumbers.PhoneNumberType.UNKNOWN and "139 0013 900" in why
