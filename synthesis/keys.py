"""Render keys: the content address of a piece of audio (pure Python, no Django).

The key covers everything that changes the bytes: engine and its version, the voice (id and a digest of its
weights and reference clip), the normalised text, the engine parameters and the output format. Two calls
whose keys match share one rendering.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

# Bump when the telephony post-processing changes (loudness target, resampler, container), so old cache
# entries are not mistaken for new ones.
OUTPUT_FORMAT = "wav/mulaw/8000/mono+original;loudness=-20dBFS;peak=-1dBFS;v1"

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Canonical text: NFC, whitespace runs collapsed, trimmed. Keeps full-width punctuation (it is prosody)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


class RenderKeyer:
    """Hashes the fixed part (engine, voice, parameters, format) once; `key(text)` adds only the text.

    Planning computes one key per contact, so the per-call cost is one sha256 copy + update.
    """

    def __init__(
        self,
        *,
        engine: str,
        engine_version: str,
        voice_id: int,
        voice_digest: str,
        parameters: Mapping[str, Any],
        output_format: str = OUTPUT_FORMAT,
    ) -> None:
        self.engine_version = engine_version
        prefix = json.dumps(
            {
                "engine": engine,
                "engine_version": engine_version,
                "voice": [voice_id, voice_digest],
                "parameters": parameters,
                "format": output_format,
            },
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._base = hashlib.sha256(prefix.encode("utf-8") + b"\x00")

    def key(self, normalised_text: str) -> str:
        h = self._base.copy()
        h.update(normalised_text.encode("utf-8"))
        return h.hexdigest()
