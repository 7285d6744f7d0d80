"""Engine.synthesize_each, the per-text isolation every engine inherits: a tiny engine that fails on chosen
texts stands in for a real one (the behaviour under test is the base class's, not the engine's)."""

from __future__ import annotations

import numpy as np
import pytest

from synthesis.audio import Waveform
from synthesis.engines.base import Engine, EngineError, VoiceSpec, failure_reason

SPEC = VoiceSpec(voice_id=1, language="zh-CN")


class Picky(Engine):
    name = "picky"
    version = "1"

    def __init__(self, failures: dict[str, Exception]):
        self.failures = failures
        self.batches: list[list[str]] = []

    def describe_parameters(self, voice):
        return {}

    def synthesize(self, voice, texts):
        self.batches.append(list(texts))
        for text in texts:
            if text in self.failures:
                raise self.failures[text]
        return [Waveform(np.full(8, len(text), np.float32), 8000) for text in texts]


def test_a_clean_batch_is_rendered_in_one_call():
    engine = Picky({})
    results = engine.synthesize_each(SPEC, ["a", "bb"])
    assert [r.samples[0] for r in results] == [1, 2] and engine.batches == [["a", "bb"]]


def test_one_bad_text_fails_alone_and_the_others_render():
    engine = Picky({"bad": IndexError("list index out of range"), "empty": EngineError("empty", permanent=True)})
    results = engine.synthesize_each(SPEC, ["a", "bad", "ccc", "empty"])
    assert results[0].samples[0] == 1 and results[2].samples[0] == 3
    assert failure_reason(results[1]) == "IndexError: list index out of range"
    assert failure_reason(results[3]) == "empty"


def test_a_transient_error_still_stops_the_batch_for_a_retry():
    engine = Picky({"busy": EngineError("out of memory", permanent=False)})
    with pytest.raises(EngineError) as raised:
        engine.synthesize_each(SPEC, ["a", "busy"])
    assert not raised.value.permanent


def test_a_wrong_number_of_waveforms_is_not_matched_to_the_wrong_texts():
    class Short(Picky):
        def synthesize(self, voice, texts):
            return super().synthesize(voice, texts)[:1]

    results = Short({}).synthesize_each(SPEC, ["a", "bb"])
    assert results[0].samples[0] == 1 and results[1].samples[0] == 2  # re-rendered one by one
