"""A full-size official-layout checkpoint pair, built from the shared manifests, loads strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthesis.gptsovits.checkpoint import CheckpointError
from synthesis.gptsovits.loading import load_gpt, load_sovits
from synthesis.gptsovits.randomweights import write_random_pair

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
