"""The ASR adapter without a model (none is shipped or downloaded) and the spoken-consent text comparison."""

from __future__ import annotations

import numpy as np
import pytest

from voices.asr import (
    ENV_VARIABLE,
    ASRUnavailable,
    ModelFiles,
    Transcriber,
    find_model,
    normalise_text,
    words_match,
)

CONSENT = "我是张伟，我同意本公司用我的声音制作语音通知。"


def test_no_model_configured_means_staff_type_transcripts(monkeypatch):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    assert Transcriber.from_environment() is None
    monkeypatch.setenv(ENV_VARIABLE, "  ")
    assert Transcriber.from_environment() is None


def test_a_configured_directory_that_is_not_there_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "paraformer-zh"))
    with pytest.raises(ASRUnavailable, match=r"ASR model directory .*paraformer-zh does not exist"):
        Transcriber.from_environment()


def test_a_directory_missing_a_file_names_the_file(tmp_path):
    with pytest.raises(ASRUnavailable, match=r"has no model\.int8\.onnx or model\.onnx$"):
        Transcriber.load(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(ASRUnavailable, match=r"has no tokens\.txt$"):
        Transcriber.load(tmp_path)
    (tmp_path / "tokens.txt").write_text("")
    with pytest.raises(ASRUnavailable, match=r"tokens\.txt is empty$"):
        Transcriber.load(tmp_path)


def test_the_model_kind_comes_from_its_vocabulary(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "tokens.txt").write_text("<blank> 0\n<s> 1\n</s> 2\n的 3\n", encoding="utf-8")
    assert find_model(tmp_path).kind == "paraformer"
    (tmp_path / "model.int8.onnx").write_bytes(b"x")
    (tmp_path / "tokens.txt").write_text(
        "<unk> 0\n<s> 1\n</s> 2\n<|zh|> 3\n<|en|> 4\n的 5\n", encoding="utf-8"
    )
    files = find_model(tmp_path)
    assert (files.kind, files.model.name) == ("sense_voice", "model.int8.onnx")  # int8 preferred


def test_a_corrupt_model_file_is_a_clear_error_not_a_crash(tmp_path):
    # sherpa-onnx (the `asr` extra, installed for the suite) really tries to load it and refuses.
    (tmp_path / "model.int8.onnx").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "tokens.txt").write_text("<blank> 0\n<s> 1\n</s> 2\n的 3\n", encoding="utf-8")
    with pytest.raises(
        ASRUnavailable, match=r"^the paraformer model in .*model\.int8\.onnx failed to load: "
    ):
        Transcriber.load(tmp_path)


def test_text_is_compared_without_punctuation_width_case_or_number_spelling():
    assert normalise_text("我同意，Herald 使用！") == "我同意herald使用"
    assert normalise_text("ＨＥＲＡＬＤ　１２３") == "herald123"
    assert normalise_text("二〇二六年十二月六日") == "2026年12月6日"
    assert normalise_text("一百零五，三万五千，两千") == "105350002000"
    assert normalise_text("十分") == "十分"  # a unit with no digit is left as a word
    ok, score, detail = words_match("今天是二〇二六年十二月六日。", "今天是 2026 年 12 月 6 日")
    assert (ok, score) == (True, 1.0) and "all of the consent sentence was heard" in detail


def test_a_close_transcript_matches_and_a_different_one_names_the_missing_words():
    ok, score, detail = words_match(CONSENT, "我是张伟我同意本公司用我的声音制作语音同志")
    assert ok and score == pytest.approx(1 - 2 / 21)
    assert detail == "matches: 90% of the consent sentence heard; missing or misheard: “通知”"

    ok, score, detail = words_match(CONSENT, "我是张伟，我的声音")
    assert not ok and score < 0.8
    assert detail.startswith(
        "does not match (needs 80%): 38% of the consent sentence heard; missing or misheard: "
    )
    assert "“同意本公司用我”" in detail and "“制作语音通知”" in detail

    ok, _, detail = words_match(
        "I agree that Herald may use my voice.", "i agree that harold may use my voice"
    )
    assert ok and detail.endswith("missing or misheard: “herald”")
    ok, _, detail = words_match("I agree that Herald may use my voice.", "I agree.")
    assert not ok and detail.endswith("“that herald may use my voice”")


def test_an_added_negation_never_matches():
    ok, score, detail = words_match(CONSENT, "我是张伟，我不同意本公司用我的声音制作语音通知。")
    assert not ok and score > 0.9  # close by characters: only the negation check catches it
    assert detail == "does not match: the recording adds a negation the consent sentence does not have: “不”"
    ok, _, detail = words_match(
        "I agree that Herald may use my voice.", "I do not agree that Herald may use my voice"
    )
    assert not ok and detail.endswith("“not”")


def test_nothing_heard_or_nothing_expected():
    assert words_match(CONSENT, " 。") == (False, 0.0, "nothing was heard in the recording")
    assert words_match("", "hello") == (False, 0.0, "the consent sentence to compare with is empty")


class _RecordingRecognizer:
    """Stands in for sherpa-onnx's OfflineRecognizer (no model ships with the suite): keeps what it is fed."""

    def __init__(self) -> None:
        self.fed: list[tuple[int, np.ndarray]] = []

    def create_stream(self):
        recognizer = self

        class Stream:
            result = type("Result", (), {"text": " 我同意 "})()

            def accept_waveform(self, rate, samples):
                recognizer.fed.append((rate, samples))

        return Stream()

    def decode_stream(self, stream) -> None:
        pass


def test_transcribe_feeds_the_model_16k_float32_mono(tmp_path):
    files = ModelFiles(model=tmp_path / "model.onnx", tokens=tmp_path / "tokens.txt", kind="paraformer")
    recognizer = _RecordingRecognizer()
    transcriber = Transcriber(recognizer, files)
    t = np.arange(32000 * 2) / 32000
    assert transcriber.transcribe(0.5 * np.sin(2 * np.pi * 440 * t)) == "我同意"
    rate, samples = recognizer.fed[0]
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == (32000,)
    assert np.abs(samples[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)  # the tone survives resampling
