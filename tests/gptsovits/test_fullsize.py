"""A full-size official-layout checkpoint pair, built from the shared manifests, loads strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthesis.gptsovits.checkpoint import CheckpointError
from synthesis.gptsovits.loading import load_gpt, load_sovits
from synthesis.gptsovits.randomweights import write_random_pair
from synthesis.gptsovits.randomweights import write_random_sovits as write_random_sovits_file

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "gptsovits"


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    return write_random_pair(tmp_path_factory.mktemp("fullsize"), SHARED, seed=7)


def test_full_size_pair_loads_strictly(pair):
    gpt_path, sovits_path = pair
    gpt = load_gpt(gpt_path)
    sovits = load_sovits(sovits_path)
    gpt_manifest = json.loads((SHARED / "manifest_v2_gpt.json").read_text())
    sovits_manifest = json.loads((SHARED / "manifest_v2_sovits.json").read_text())
    assert sum(p.numel() for p in gpt.state_dict().values()) == gpt_manifest["num_elements_state_dict"]
    assert sum(t.numel() for t in sovits.state_dict().values()) == sovits_manifest["num_elements_without_enc_q"]
    assert gpt.config.n_layer == 24 and gpt.config.hidden_dim == 512 and gpt.config.head == 16
    saved = torch.load(gpt_path, weights_only=True)["weight"]
    name = "model.h.layers.23.linear2.weight"
    assert torch.equal(gpt.state_dict()[name.removeprefix("model.")], saved[name].float())


def test_a_missing_or_misshaped_tensor_is_named(pair, tmp_path):
    gpt_path, sovits_path = pair
    data = torch.load(sovits_path, weights_only=True)
    del data["weight"]["dec.conv_post.weight"]
    data["weight"]["flow.flows.0.pre.weight"] = torch.zeros(3, 3, 3, dtype=torch.half)
    data["weight"]["dec.extra"] = torch.zeros(1, dtype=torch.half)
    torch.save(data, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_sovits(tmp_path / "broken.pth")
    message = str(err.value)
    assert "missing: dec.conv_post.weight" in message
    assert "unexpected: dec.extra" in message
    assert "wrong shape: flow.flows.0.pre.weight (3, 3, 3)" in message
    gpt = torch.load(gpt_path, weights_only=True)
    gpt["config"]["model"]["n_layer"] = 12  # config and weights disagree
    torch.save(gpt, tmp_path / "lying.ckpt")
    with pytest.raises(CheckpointError, match=r"unexpected: h\.layers\.12"):
        load_gpt(tmp_path / "lying.ckpt")


PRO = SHARED.parent / "gptsovits-v2pro"


@pytest.mark.parametrize(("version", "marker", "decoder_width"), [("v2Pro", b"05", 512), ("v2ProPlus", b"06", 768)])
def test_full_size_pro_files_built_from_the_official_shapes_load_strictly(tmp_path, version, marker, decoder_width):
    manifest_path = PRO / f"manifest_{version.lower()}_sovits.json"
    path = write_random_sovits_file(tmp_path / f"{version}.pth", manifest_path)
    assert path.read_bytes()[:2] == marker
    model = load_sovits(path)
    manifest = json.loads(manifest_path.read_text())
    assert model.config.version == version and model.config.gin_channels == 1024
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["num_elements_without_enc_q"]
    assert model.dec.conv_pre.out_channels == decoder_width
    assert model.sv_emb.in_features == 20480 and model.ge_to512.out_features == 512
