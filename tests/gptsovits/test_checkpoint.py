"""Official checkpoint files: what loads, and the message for what does not."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from synthesis.gptsovits.checkpoint import CheckpointError, gpt_state, read_checkpoint, sovits_state

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"


def test_the_shared_pair_reads():
    gpt = read_checkpoint(SHARED / "gpt.ckpt", kind="gpt")
    sovits = read_checkpoint(SHARED / "sovits.pth", kind="sovits")
    assert gpt.version == sovits.version == "v2"
    assert len(gpt_state(gpt)) == 31 and all(not k.startswith("model.") for k in gpt_state(gpt))
    assert len(sovits_state(sovits)) == 529 and gpt.config["model"]["EOS"] == 1024


@pytest.mark.parametrize(("marker", "version"), [(b"02", "v3"), (b"04", "v4 (LoRA)"), (b"05", "v2Pro"), (b"00", "v1")])
def test_newer_and_older_version_markers_are_named(tmp_path, marker, version):
    path = tmp_path / "voice.pth"
    path.write_bytes(marker + (SHARED / "sovits.pth").read_bytes()[2:])
    with pytest.raises(CheckpointError, match=f"GPT-SoVITS {version.replace('(', '.').replace(')', '.')} sovits"):
        read_checkpoint(path, kind="sovits")


def test_a_v2_file_with_the_v2_marker_loads(tmp_path):
    path = tmp_path / "voice.pth"
    path.write_bytes(b"01" + (SHARED / "sovits.pth").read_bytes()[2:])
    assert len(sovits_state(read_checkpoint(path, kind="sovits"))) == 529


def test_v1_files_are_recognised_by_their_text_symbols(tmp_path):
    data = torch.load(SHARED / "sovits.pth", weights_only=True)
    data["weight"]["enc_p.text_embedding.weight"] = torch.zeros(322, 192, dtype=torch.half)
    torch.save(data, tmp_path / "v1.pth")
    with pytest.raises(CheckpointError, match="v1 SoVITS file .322 text symbols"):
        sovits_state(read_checkpoint(tmp_path / "v1.pth", kind="sovits"))
    gpt = torch.load(SHARED / "gpt.ckpt", weights_only=True)
    gpt["weight"]["model.ar_text_embedding.word_embeddings.weight"] = torch.zeros(512, 128, dtype=torch.half)
    torch.save(gpt, tmp_path / "v1.ckpt")
    with pytest.raises(CheckpointError, match="v1 GPT file"):
        gpt_state(read_checkpoint(tmp_path / "v1.ckpt", kind="gpt"))


def test_truncated_and_corrupted_files(tmp_path):
    data = (SHARED / "sovits.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        read_checkpoint(tmp_path / "cut.pth", kind="sovits")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="only 0 bytes"):
        read_checkpoint(tmp_path / "empty.pth", kind="sovits")
    (tmp_path / "text.pth").write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "text.pth", kind="sovits")
    flipped = bytearray(data)
    middle = len(flipped) // 2
    flipped[middle : middle + 4096] = os.urandom(4096)
    (tmp_path / "flipped.pth").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError):
        sovits_state(read_checkpoint(tmp_path / "flipped.pth", kind="sovits"))


class Payload:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-herald-test",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    torch.save({"weight": {}, "config": {}, "info": Payload()}, tmp_path / "evil.pth", pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        read_checkpoint(tmp_path / "evil.pth", kind="sovits")
    assert pickle  # the refusal comes from torch's weights_only unpickler, not from a try/except around pickle


def test_the_wrong_kind_of_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="SoVITS .* file was expected"):
        sovits_state(read_checkpoint(SHARED / "gpt.ckpt", kind="sovits"))
    with pytest.raises(CheckpointError, match="GPT .* file was expected"):
        gpt_state(read_checkpoint(SHARED / "sovits.pth", kind="gpt"))
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="expected keys 'weight' and 'config'"):
        read_checkpoint(tmp_path / "other.ckpt", kind="gpt")
