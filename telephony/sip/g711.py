"""G.711 μ-law and A-law by table: byte strings convert with bytes.translate, no per-sample Python."""

from __future__ import annotations


def ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


def alaw_to_linear(code: int) -> int:
    code ^= 0x55
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 0x07, code & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if sign else -magnitude


def linear_to_ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = sample >> 2  # 14-bit
    magnitude = min((-magnitude if magnitude < 0 else magnitude) + 33, 0x1FFF)
    exponent = max(0, magnitude.bit_length() - 6)
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def linear_to_alaw(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    magnitude = sample >> 3  # 13-bit; a negative sample's magnitude is its one's complement
    magnitude = min(magnitude if magnitude >= 0 else ~magnitude, 0xFFF)
    if magnitude < 32:
        code = magnitude >> 1
    else:
        segment = magnitude.bit_length() - 5
        code = (segment << 4) | ((magnitude >> segment) & 0x0F)
    return (sign | code) ^ 0x55


ULAW_TO_ALAW = bytes(linear_to_alaw(ulaw_to_linear(c)) for c in range(256))
ALAW_TO_ULAW = bytes(linear_to_ulaw(alaw_to_linear(c)) for c in range(256))


def ulaw_to_alaw(payload: bytes) -> bytes:
    return payload.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(payload: bytes) -> bytes:
    return payload.translate(ALAW_TO_ULAW)
