"""English words outside the dictionary: g2p_en's network run by synthesis.frontend.g2p_model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from synthesis.frontend import g2p_model
from synthesis.frontend.g2p import g2p_en
from synthesis.frontend.g2p_model import GRAPHEMES, PHONEMES, NeuralG2p
from synthesis.frontend.pipeline import process

# g2p_en 2.1.0's own `G2p.predict` on these words (run once outside this repository, its nltk import
# stubbed): the official GPT-SoVITS English G2P sends exactly such words to it.
G2P_EN_PREDICT = {
    "xiaomi": "Z AY0 K OW1 M IY0",
    "pinduoduo": "P IH2 N D UW0 W AA1 K OW0",
    "meituan": "M Y UW0 CH UW1 AH0 N",
    "taobao": "T AA0 B UH1",
    "huawei": "HH W AA1 W IY0",
    "alipay": "AE1 L IH0 P EY2",
    "jingdong": "JH IH1 NG D AO1 NG",
    "cainiao": "K EY2 N IY1 Y OW0",
    "shunfeng": "SH AH1 N F EH2 NG",
    "zhongtong": "SH AO1 NG T AE2 NG",
    "yunda": "Y AH1 N D AH0",
    "wechatpay": "W EH1 K AH0 T EY2 P",
    "wi-fi": "W AY1 F AY1",
    "a1b2": "EY1 B IY1",
    "qwertyzzz": "K W ER1 T IH0 S T S",
    "supercalifragilisticexpialidocious": "S UW2 P ER0 K AH0 F L AH0 JH AO1 S IY0 AH0 P S",
}


@pytest.fixture(scope="module")
def shipped() -> NeuralG2p:
    problem = g2p_model.model_problem()
    assert problem is None, f"the synthesis extra installs g2p_en's weights: {problem}"
    return g2p_model.default_model()


def test_the_shipped_weights_read_like_g2p_en(shipped):
    assert {word: " ".join(shipped.predict(word)) for word in G2P_EN_PREDICT} == G2P_EN_PREDICT


def test_unknown_words_in_scripts_go_to_the_model(shipped):
    # Not in CMUdict, longer than three letters, not split by wordsegment: the official path predicts.
    assert g2p_en("Huawei") == G2P_EN_PREDICT["huawei"].split()
    result = process("您的Huawei手机已发货。")
    english = [segment for segment in result.segments if segment.language == "en"]
    assert [list(segment.phones) for segment in english] == [G2P_EN_PREDICT["huawei"].split()]
    # wordsegment splits pinduoduo into pin + duo + duo, each found in the dictionary.
    assert g2p_en("Pinduoduo") == ["P", "IH1", "N", "D", "UW1", "OW0", "D", "UW1", "OW0"]
    # Dictionary words never reach it.
    assert g2p_en("delivery") == ["D", "IH0", "L", "IH1", "V", "ER0", "IY0"]


def test_phone_table_is_the_models_output_order():
    assert len(GRAPHEMES) == 29 and len(PHONEMES) == 74
    assert PHONEMES[:4] == ("<pad>", "<unk>", "<s>", "</s>")
    assert PHONEMES[4:7] == ("AA0", "AA1", "AA2") and PHONEMES[-1] == "ZH"
    assert PHONEMES.index("UW") + 1 == PHONEMES.index("UW0")


# -------------------------------------------------------------------------------- tiny random weights

def _tiny_arrays(seed: int = 5, embedding: int = 8, width: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.normal(0, 0.8, shape).astype(np.float32)

    arrays = {"enc_emb": rand(len(GRAPHEMES), embedding), "dec_emb": rand(len(PHONEMES), embedding)}
    for side in ("enc", "dec"):
        arrays |= {
            f"{side}_w_ih": rand(3 * width, embedding), f"{side}_w_hh": rand(3 * width, width),
            f"{side}_b_ih": rand(3 * width), f"{side}_b_hh": rand(3 * width),
        }
    arrays |= {"fc_w": rand(len(PHONEMES), width), "fc_b": rand(len(PHONEMES))}
    # Make </s> likely after a few steps so that decoding both stops early and runs to the limit.
    arrays["fc_b"][3] += 2.0
    return arrays


def _torch_greedy(arrays: dict[str, np.ndarray], word: str) -> list[str]:
    """The same encoder-decoder built from torch.nn.GRUCell: an independent statement of the network."""
    import torch  # the test extras install it; missing torch is a failure, not a skip
    cells = {}
    for side in ("enc", "dec"):
        width = arrays[f"{side}_w_hh"].shape[1]
        cell = torch.nn.GRUCell(arrays[f"{side}_w_ih"].shape[1], width)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                key = f"{side}_{name[0]}_{name.split('_')[1]}"
                getattr(cell, name).copy_(torch.from_numpy(arrays[key]))
        cells[side] = cell
    with torch.no_grad():
        h = torch.zeros(1, arrays["enc_w_hh"].shape[1])
        for char in [*word, "</s>"]:
            index = GRAPHEMES.index(char) if char in GRAPHEMES else GRAPHEMES.index("<unk>")
            h = cells["enc"](torch.from_numpy(arrays["enc_emb"][[index]]), h)
        out, previous = [], PHONEMES.index("<s>")
        for _ in range(20):
            h = cells["dec"](torch.from_numpy(arrays["dec_emb"][[previous]]), h)
            previous = int((h @ torch.from_numpy(arrays["fc_w"]).T + torch.from_numpy(arrays["fc_b"])).argmax())
            if previous == PHONEMES.index("</s>"):
                break
            out.append(PHONEMES[previous])
    return out


def test_network_matches_torch_gru_cells():
    arrays = _tiny_arrays()
    model = NeuralG2p(arrays)
    words = ["xiaomi", "a", "zzzzzzzzzzzz", "o'neil", "wi-fi", "meituan", "qq", "abcdefghijklmnopqrstuvwxyz"]
    predictions = {word: model.predict(word) for word in words}
    assert predictions == {word: _torch_greedy(arrays, word) for word in words}
    lengths = {len(p) for p in predictions.values()}
    assert min(lengths) < 20 and max(lengths) == 20, "words must both stop at </s> and run to the limit"
    # Different weights read differently: the test would notice a model that ignored its weights.
    other = NeuralG2p(_tiny_arrays(seed=8))
    assert any(other.predict(word) != predictions[word] for word in words)


def test_unknown_marker_becomes_the_unk_phone(tmp_path, monkeypatch):
    arrays = _tiny_arrays()
    arrays["fc_b"][:] = -10.0
    arrays["fc_b"][PHONEMES.index("<unk>")] = 10.0  # always <unk> ...
    arrays["fc_w"][:] = 0.0
    path = tmp_path / "unk.npz"
    np.savez(path, **arrays)
    monkeypatch.setenv(g2p_model.ENV_MODEL, str(path))
    # ... 20 steps of it (the limit), each read as the UNK symbol the v2 table has.
    assert g2p_en("Huawei") == ["UNK"] * 20


def test_archive_problems_name_the_file_and_the_reason(tmp_path):
    good = _tiny_arrays()
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in good.items() if k != "fc_b"})
    with pytest.raises(ValueError, match=r"missing\.npz: not a g2p_en model: missing fc_b"):
        NeuralG2p.from_file(missing)

    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, **(good | {"dec_emb": np.zeros((70, 8), np.float32)}))
    with pytest.raises(ValueError, match=r"shapes\.npz: not a g2p_en model: dec_emb is \(70, 8\), expected \(74, 8\)"):
        NeuralG2p.from_file(shapes)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a numpy archive")
    with pytest.raises(ValueError, match=r"garbage\.npz: not a readable numpy archive"):
        NeuralG2p.from_file(garbage)

    # An object array would need unpickling: refused, never executed.
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **(good | {"fc_b": np.array([Boom()], dtype=object)}))
    assert b"unpickled" in pickle.dumps(Boom())
    with pytest.raises(ValueError, match=r"pickled\.npz: not a readable numpy archive .*allow_pickle"):
        NeuralG2p.from_file(pickled)


def test_missing_model_is_a_configuration_problem(tmp_path, monkeypatch):
    monkeypatch.setenv(g2p_model.ENV_MODEL, str(tmp_path / "nowhere.npz"))
    assert g2p_model.model_problem() == f"{g2p_model.ENV_MODEL}={tmp_path / 'nowhere.npz'} is not a file"
    with pytest.raises(RuntimeError, match="an English word is not in the dictionary and there is no g2p model"):
        g2p_en("Huawei")
    # Dictionary words and short spellings do not need the model.
    assert g2p_en("VIP app") == ["V", "IY1", "AY1", "P", "IY1", "AE1", "P"]

    from synthesis.frontend.config import ENV_BERT, ENV_HUBERT, configuration_problem

    for name in (ENV_BERT, ENV_HUBERT):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        monkeypatch.setenv(name, str(tmp_path / name))
    assert configuration_problem() == (
        f"English words outside the dictionary cannot be read: {g2p_model.ENV_MODEL}={tmp_path / 'nowhere.npz'} "
        "is not a file"
    )
    monkeypatch.delenv(g2p_model.ENV_MODEL)
    assert configuration_problem() is None


# ------------------------------------------------------------------------------------------ homographs

@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("we will read it", "R IY1 D"),  # a modal before it: a verb, present tense
        ("please read the code", "R IY1 D"),
        ("we want to record it", "R IH0 K AO1 R D"),
        ("the record is here", "R EH1 K ER0 D"),  # an article before it: a noun
        ("your present is here", "P R EH1 Z AH0 N T"),
        ("please present your ID", "P R IY0 Z EH1 N T"),
        ("you can use the code", "Y UW1 Z"),
        ("the use of it", "Y UW1 S"),
        ("I read it yesterday", "R EH1 D"),  # no deciding word before it: the dictionary's reading
    ],
)
def test_homographs_follow_the_word_before(text, reading):
    phones = " ".join(g2p_en(text))
    assert f" {reading} " in f" {phones} ", phones


def test_homograph_table_is_g2p_ens_with_the_official_corrections(monkeypatch, tmp_path):
    from synthesis.frontend import g2p

    table = g2p._homographs()
    assert len(table) > 300
    assert table["record"] == (["R", "IH0", "K", "AO1", "R", "D"], ["R", "EH1", "K", "ER0", "D"], "V")
    assert table["read"][2] == "VBP"  # the official en_G2p's correction of g2p_en's VBD

    damaged = tmp_path / "homographs.en"
    damaged.write_text("# comment\nRECORD|R IH0 K AO1 R D|R EH1 K ER0 D\n", encoding="utf-8")
    monkeypatch.setattr(g2p, "homograph_path", lambda: damaged)
    g2p._homographs.forget()
    try:
        with pytest.raises(ValueError, match=r"homographs\.en:2: expected WORD\|PRON1\|PRON2\|POS"):
            g2p_en("the record")
    finally:
        monkeypatch.undo()
        g2p._homographs.forget()
    assert g2p._homographs()["record"] == table["record"]
