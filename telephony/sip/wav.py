"""Read a telephony clip: an 8 kHz mono WAV in μ-law, A-law or 16-bit PCM, returned as μ-law bytes."""

from __future__ import annotations

import os
import struct
from array import array

from telephony.sip.g711 import alaw_to_ulaw, linear_to_ulaw

FORMAT_PCM, FORMAT_ALAW, FORMAT_ULAW, FORMAT_EXTENSIBLE = 1, 6, 7, 0xFFFE
_LIN_TO_ULAW: bytes | None = None


class ClipError(ValueError):
    """The file is not a clip we can play; the message names the file and what is wrong."""


def read_clip(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ClipError(f"{path}: cannot read the audio file ({exc.strerror or exc})") from None
    return parse_clip(data, name=str(path))


def parse_clip(data: bytes, *, name: str = "audio") -> bytes:
    def bad(why: str) -> ClipError:
        return ClipError(f"{name}: {why}")

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise bad("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise bad("the fmt chunk is too short")
            code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if code == FORMAT_EXTENSIBLE and len(body) >= 26:
                code = struct.unpack_from("<H", body, 24)[0]
            fmt = (code, channels, rate, bits)
        elif chunk_id == b"data":
            payload = body
        offset += 8 + size + (size & 1)
    if fmt is None:
        raise bad("no fmt chunk")
    if payload is None:
        raise bad("no data chunk")
    code, channels, rate, bits = fmt
    if channels != 1:
        raise bad(f"{channels} channels; a telephony clip must be mono")
    if rate != 8000:
        raise bad(f"sample rate {rate} Hz; a telephony clip must be 8000 Hz (Herald renders these)")
    if code == FORMAT_ULAW and bits == 8:
        clip = payload
    elif code == FORMAT_ALAW and bits == 8:
        clip = alaw_to_ulaw(payload)
    elif code == FORMAT_PCM and bits == 16:
        clip = _pcm16_to_ulaw(payload[: len(payload) // 2 * 2])
    else:
        raise bad(f"encoding {code} with {bits} bits; expected μ-law, A-law or 16-bit PCM")
    if not clip:
        raise bad("the clip is empty")
    return clip


def _pcm16_to_ulaw(pcm: bytes) -> bytes:
    global _LIN_TO_ULAW
    if _LIN_TO_ULAW is None:  # every 16-bit sample -> its μ-law code, indexed by the unsigned sample
        _LIN_TO_ULAW = bytes(linear_to_ulaw(s - 65536 if s >= 32768 else s) for s in range(65536))
    samples = array("H", pcm)
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        samples.byteswap()
    table = _LIN_TO_ULAW
    return bytes(table[s] for s in samples)
