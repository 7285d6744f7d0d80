"""Reading WAV headers: the format and duration of the audio a ``<Play>`` fetches."""

from __future__ import annotations

import struct


class WavError(ValueError):
    """The body is not a WAV file the sandbox can play."""


def wav_info(data: bytes) -> dict:
    """Parse a RIFF/WAVE header; return format_tag, channels, sample_rate,
    byte_rate, bits_per_sample, data_bytes and duration (seconds).

    Works for PCM (1), IEEE float (3), A-law (6), mu-law (7) and
    WAVE_FORMAT_EXTENSIBLE (0xFFFE); duration is data size / byte rate.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple | None = None
    data_bytes: int | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("truncated fmt chunk")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk_id == b"data":
            available = len(data) - body
            # 0 / 0xFFFFFFFF are written by streaming encoders; a header larger
            # than the file is a truncated download: play what is there.
            data_bytes = available if size in (0, 0xFFFFFFFF) or size > available else size
            if fmt is not None:
                break
        pos = body + size + (size & 1)
    if fmt is None:
        raise WavError("no fmt chunk")
    if data_bytes is None:
        raise WavError("no data chunk")
    format_tag, channels, sample_rate, byte_rate, block_align, bits = fmt
    if format_tag not in (1, 3, 6, 7, 0xFFFE):
        raise WavError(f"unsupported WAV format tag {format_tag}")
    if channels == 0 or sample_rate == 0:
        raise WavError("invalid channel count or sample rate")
    if byte_rate == 0:
        byte_rate = sample_rate * (block_align or channels * max(bits, 8) // 8)
    if byte_rate == 0:
        raise WavError("invalid byte rate")
    return {
        "format_tag": format_tag,
        "channels": channels,
        "sample_rate": sample_rate,
        "byte_rate": byte_rate,
        "bits_per_sample": bits,
        "data_bytes": data_bytes,
        "duration": data_bytes / byte_rate,
    }
