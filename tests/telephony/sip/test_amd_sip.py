"""Answering-machine detection on SIP (telephony.sip.amd): the detector on made signals, and calls to a scripted
trunk that answers and plays a person's hello or a voicemail greeting ending in a beep, as real RTP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from telephony.sip import amd
from telephony.sip.types import ANSWERED, CallSpec
from telephony.sip.ua import place_call
from tests.telephony.sip.test_announce import at_level, noisy, silence, speech, tone
from tests.telephony.sip.test_carrier_announcements import dial as dial_trunk

GREETING = "您好，我现在不方便接听电话，请在提示音后留言，谢谢。"
VOICEMAIL = bytes(range(0, 256, 2)) * 125  # 2 s of μ-law that is neither silence nor the message
MESSAGE = b"\x7f" * 8000 * 5  # 5 s


def frames(samples: np.ndarray):
    for start in range(0, samples.size - 159, 160):
        yield samples[start : start + 160]


def run(samples: np.ndarray, *, wait_for_end: bool = False) -> amd.AmdDetector:
    detector = amd.AmdDetector(wait_for_end=wait_for_end)
    for frame in frames(samples):
        detector.feed(frame)
        if detector.done:
            break
    return detector


# --- the detector -------------------------------------------------------------------------------------------


def test_a_short_hello_then_a_pause_is_a_person():
    heard = noisy(np.concatenate((silence(400), at_level(speech("喂？"), -20), silence(3000))), -50)
    detector = run(heard)
    assert detector.decision.answered_by == amd.HUMAN, detector.decision
    assert detector.decision.at_ms < 400 + 1500 + amd.AFTER_GREETING_MS


def test_a_greeting_is_a_machine_and_its_beep_ends_it():
    greeting = at_level(speech(GREETING), -20)
    beep = tone(1000, 500, -20)
    heard = noisy(np.concatenate((silence(300), greeting, silence(300), beep, silence(3000))), -45)
    detector = run(heard, wait_for_end=True)
    assert detector.decision.answered_by == amd.MACHINE_START
    assert detector.decision.at_ms < 300 + 1000 * greeting.size / 8000  # decided while the greeting still played
    assert detector.end.answered_by == amd.END_BEEP, detector.end
    beep_end_ms = 300 + 1000 * greeting.size / 8000 + 300 + 500
    assert abs(detector.end.at_ms - beep_end_ms) <= 60


def test_a_greeting_ending_in_silence():
    greeting = at_level(speech(GREETING), -20)
    detector = run(noisy(np.concatenate((greeting, silence(4000))), -45), wait_for_end=True)
    assert (detector.decision.answered_by, detector.end.answered_by) == (amd.MACHINE_START, amd.END_SILENCE)


def test_nobody_speaking_is_unknown_not_a_machine():
    detector = run(noisy(silence(7000), -45))
    assert detector.decision.answered_by == amd.UNKNOWN
    assert detector.decision.at_ms == amd.INITIAL_SILENCE_MS


def test_a_fax_calling_tone_is_a_fax():
    cng = np.concatenate([np.concatenate((tone(1100, 500, -15), silence(3000))) for _ in range(2)])
    assert run(cng).decision.answered_by == amd.FAX


def test_line_noise_alone_is_never_speech():
    rng = np.random.default_rng(3)
    loud_noise = rng.standard_normal(8000 * 7) * 32768 * 10 ** (-25 / 20)
    assert run(loud_noise).decision.answered_by == amd.UNKNOWN


# --- calls --------------------------------------------------------------------------------------------------


def dial(heard: np.ndarray, *, message: bytes, **spec):
    """A call to a trunk that answers (200) and plays `heard` as RTP; the message is `message`."""
    return dial_trunk(heard, answer=True, message=message, detect_sit=False, **spec)


def test_a_voicemail_gets_the_clip_after_the_beep():
    heard = np.concatenate((silence(200), at_level(speech(GREETING), -22), silence(300), tone(1000, 400, -20),
                            silence(6000)))  # fmt: skip
    result, trunk = dial(noisy(heard, -50), message=MESSAGE, amd="DetectMessageEnd", voicemail=VOICEMAIL)
    assert (result.outcome, result.answered_by) == (ANSWERED, amd.END_BEEP), result
    assert result.voicemail_played and not result.played_to_end
    assert "beep" in result.amd_reason and "BYE" in trunk.methods


def test_a_machine_is_hung_up_on_when_no_voicemail_is_wanted():
    heard = np.concatenate((silence(200), at_level(speech(GREETING), -22), silence(6000)))
    result, trunk = dial(noisy(heard, -50), message=MESSAGE, amd="Enable")
    assert (result.outcome, result.answered_by) == (ANSWERED, amd.MACHINE_START), result
    assert not result.voicemail_played and not result.played_to_end
    assert result.talk_seconds < 4  # the 5 s message was cut short
    assert "BYE" in trunk.methods


def test_a_person_hears_the_whole_message():
    heard = np.concatenate((silence(300), at_level(speech("喂，你好？"), -22), silence(8000)))
    result, _ = dial(noisy(heard, -50), message=b"\x7f" * 8000 * 2, amd="DetectMessageEnd", voicemail=VOICEMAIL)
    assert (result.outcome, result.answered_by, result.played_to_end) == (ANSWERED, amd.HUMAN, True), result
    assert not result.voicemail_played


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="amd must be one of"):
        asyncio.run(place_call(CallSpec(to="sip:a@127.0.0.1:5060", audio=b"x", amd="Always")))
