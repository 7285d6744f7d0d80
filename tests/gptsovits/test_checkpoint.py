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


@pytest.mark.parametrize(
    ("marker", "version", "advice"),
    [
        (b"02", "v3", "diffusion model"),
        (b"03", "v3 (LoRA)", "LoRA files hold only the changes"),
        (b"04", "v4 (LoRA)", "LoRA files hold only the changes"),
        (b"07", "v4", "train the voice as v2Pro"),
        (b"00", "v1", "retrain the voice as v2Pro"),
    ],
)
def test_unsupported_version_markers_are_named_with_what_to_do(tmp_path, marker, version, advice):
    path = tmp_path / "voice.pth"
    path.write_bytes(marker + (SHARED / "sovits.pth").read_bytes()[2:])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path, kind="sovits")
    assert f"is a GPT-SoVITS {version} sovits file" in str(err.value)
    assert "Herald runs v2, v2Pro and v2ProPlus voices" in str(err.value) and advice in str(err.value)


def test_the_webui_file_loads_through_the_inert_hparams_stand_in():
    """sovits_webui.pth stores its config as a pickled utils.HParams (process_ckpt.savee)."""
    with pytest.raises(pickle.UnpicklingError, match="utils.HParams"):
        torch.load(SHARED / "sovits_webui.pth", weights_only=True)  # what plain weights_only says
    webui = read_checkpoint(SHARED / "sovits_webui.pth", kind="sovits")
    plain = read_checkpoint(SHARED / "sovits.pth", kind="sovits")
    assert type(webui.config) is dict and type(webui.config["model"]) is dict
    assert {k: webui.config["model"][k] for k in plain.config["model"]} == plain.config["model"]
    assert webui.config["data"]["sampling_rate"] == 32000 and "train" in webui.config
    assert webui.weights.keys() == plain.weights.keys()
    assert all(torch.equal(webui.weights[k], plain.weights[k]) for k in plain.weights)


def _pickle_with_hparams(state: object) -> bytes:
    """A torch.save-shaped zip whose data.pkl rebuilds utils.HParams with `state` (no real HParams needed)."""
    import io
    import zipfile

    body = (
        b"\x80\x02}q\x00(X\x06\x00\x00\x00weightq\x01}q\x02X\x06\x00\x00\x00configq\x03"
        b"cutils\nHParams\nq\x04)\x81q\x05" + pickle.dumps(state, protocol=2)[2:-1] + b"bu."
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", body)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/byteorder", b"little")
    return buffer.getvalue()


def test_an_hparams_stand_in_only_ever_holds_a_dictionary(tmp_path):
    path = tmp_path / "webui.pth"
    path.write_bytes(_pickle_with_hparams({"model": {"version": "v2"}}))
    assert read_checkpoint(path, kind="sovits").config == {"model": {"version": "v2"}}
    path.write_bytes(_pickle_with_hparams(["not", "a", "dict"]))
    with pytest.raises(CheckpointError, match="utils.HParams state is not a dictionary"):
        read_checkpoint(path, kind="sovits")


def test_compressed_members_are_refused_before_anything_is_inflated(tmp_path):
    import zipfile

    path = tmp_path / "deflated.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x00" * 10_000_000)
    with pytest.raises(CheckpointError, match="1 member.s. are compressed .archive/data.pkl, 10,000,000 bytes"):
        read_checkpoint(path, kind="sovits")


def test_a_tensor_claiming_more_bytes_than_the_file_holds_is_refused(tmp_path):
    data = torch.load(SHARED / "sovits.pth", weights_only=True)
    data["weight"]["dec.conv_post.weight"] = torch.zeros(1, dtype=torch.half).expand(1 << 30)  # stride 0
    torch.save(data, tmp_path / "crafted.pth")
    with pytest.raises(CheckpointError, match="is crafted: its tensors claim"):
        read_checkpoint(tmp_path / "crafted.pth", kind="sovits")


def test_a_config_asking_for_a_huge_network_is_refused_without_building_it(tmp_path):
    from synthesis.gptsovits.loading import load_sovits

    data = torch.load(SHARED / "sovits.pth", weights_only=True)
    data["config"]["model"]["filter_channels"] = 4_000_000  # 100+ GB of parameters if it were built
    torch.save(data, tmp_path / "huge.pth")
    with pytest.raises(CheckpointError, match="wrong shape: enc_p.encoder_ssl"):
        load_sovits(tmp_path / "huge.pth")


def test_pro_files_are_told_apart_by_marker_or_by_their_weights(tmp_path):
    from synthesis.gptsovits.checkpoint import sovits_version

    pro = SHARED.parent / "gptsovits-v2pro" / "sovits.pth"
    assert sovits_version(read_checkpoint(pro, kind="sovits")) == "v2Pro"
    plus = tmp_path / "plus.pth"
    plus.write_bytes(b"06" + pro.read_bytes()[2:])
    assert sovits_version(read_checkpoint(plus, kind="sovits")) == "v2ProPlus"
    plain = tmp_path / "pretrained-style.pth"  # official pretrained s2Gv2Pro.pth: a plain zip
    plain.write_bytes(b"PK" + pro.read_bytes()[2:])
    assert sovits_version(read_checkpoint(plain, kind="sovits")) == "v2Pro"
    marked_v2 = tmp_path / "marked-v2.pth"  # a v2 file wearing the v2Pro marker
    marked_v2.write_bytes(b"05" + (SHARED / "sovits.pth").read_bytes()[2:])
    with pytest.raises(CheckpointError, match="is marked v2Pro but has no speaker-verification layers"):
        sovits_state(read_checkpoint(marked_v2, kind="sovits"))


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


MEASURE = """
import resource, sys, time
from synthesis.gptsovits.checkpoint import CheckpointError, read_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    read_checkpoint(sys.argv[1], kind="sovits")
    print("LOADED")
except CheckpointError as exc:
    print("REFUSED", exc)
print("SECONDS", time.perf_counter() - start)
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_zip_bomb_checkpoint_is_refused_without_the_process_growing(tmp_path):
    """1.5 MB on disk, 1.5 GiB inflated: refused from the zip directory, in a fresh process whose peak RSS is
    measured (the old testzip() inflated it all: 12.7 s and 3.3 GB in the web process)."""
    import subprocess
    import sys
    import zipfile

    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            zeros = bytes(64 << 20)
            for _ in range(24):  # 1.5 GiB
                member.write(zeros)
    assert path.stat().st_size < 2_000_000
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=root, capture_output=True, text=True,
                            timeout=120, check=True)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "are compressed" in lines["REFUSED"] and "1,610,612,736 bytes declared" in lines["REFUSED"]
    assert float(lines["GROWTH_MB"]) < 200, result.stdout
