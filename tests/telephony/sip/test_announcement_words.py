"""Carrier announcements by their words (telephony.sip.keywords), where a speech recogniser is configured. The
recogniser is the one seam stood in for here (a real model is a download): a callable that hears the carrier's
audio as the user agent hands it over and says what a recogniser would. The audio is real RTP from a scripted
trunk."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.sip import keywords
from telephony.sip.types import NO_ANSWER
from tests.telephony.sip.test_announce import at_level, noisy, silence, speech
from tests.telephony.sip.test_carrier_announcements import dial


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("您好，您拨打的号码是空号，请查证后再拨。", ("invalid_number", "空号")),
        ("对不起，您拨打的用户已停机", ("suspended", "停机")),
        ("您拨打的电话已关机", ("powered_off", "关机")),
        ("您拨打的用户暂时无法接通，请稍后再拨", ("unreachable", "无法接通")),
        ("用 户 忙，请稍后再拨", ("busy", "用户忙")),
        ("您好，我现在暂时无法接听，请在提示音后留言", None),  # a voicemail greeting, not an announcement
        ("喂？你好", None),
        ("", None),
    ],
)
def test_the_words_carriers_use_mean_their_outcomes(text, found):
    assert keywords.find(text, keywords.DEFAULT_KEYWORDS) == found


def test_the_first_outcome_in_order_wins_and_operators_phrases_count():
    assert keywords.find("空号或已停机", keywords.DEFAULT_KEYWORDS) == ("invalid_number", "空号")
    assert keywords.find("THE NUMBER YOU DIALLED IS NOT IN SERVICE", (("invalid_number", "not in service"),)) == (
        "invalid_number", "not in service",
    )  # fmt: skip


class Recogniser:
    """Says `text` once it has heard speech (samples louder than line noise), else nothing; keeps what it heard."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.heard: list[np.ndarray] = []

    def __call__(self, samples: np.ndarray) -> str:
        self.heard.append(samples)
        return self.text if np.sqrt(np.mean(samples**2)) > 10 ** (-40 / 20) else ""


def test_an_announcement_no_recording_matches_is_recognised_by_its_words():
    spoken = at_level(speech("对不起，您拨打的用户已关机，请稍后再拨。"), -24)
    audio = noisy(np.concatenate((silence(300), spoken, silence(2500))), -50, seed=4)
    recogniser = Recogniser("对不起，您拨打的用户已关机，请稍后再拨")
    result, trunk = dial(audio, transcribe=recogniser)  # early media, no reference library at all
    assert (result.outcome, result.announcement, result.announcement_name) == (NO_ANSWER, "powered_off", "words:关机")
    assert result.answered_at is None and "CANCEL" in trunk.methods
    first = recogniser.heard[0]
    assert first.dtype == np.float64 and first.size >= 3 * 8000 and np.abs(first).max() <= 1.0  # 8 kHz, ±1


def test_words_that_are_no_announcement_leave_the_call_alone():
    spoken = at_level(speech("喂？你好，哪位？"), -24)
    audio = np.concatenate((silence(200), spoken, silence(4000)))
    result, _ = dial(audio, answer=True, transcribe=Recogniser("喂你好哪位"), listen_after_answer=4)
    assert (result.outcome, result.announcement) == ("answered", "")


def test_a_recogniser_that_fails_never_takes_the_call_down():
    def broken(samples):
        raise RuntimeError("model crashed")

    audio = np.concatenate((silence(200), at_level(speech("您拨打的电话已关机"), -24), silence(4000)))
    result, _ = dial(audio, answer=True, transcribe=broken, listen_after_answer=4)
    assert result.outcome == "answered" and result.announcement == ""
