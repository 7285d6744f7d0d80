"""What the voice-studio tests share: synthetic speakers and a base directory fine-tuning can start from."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from synthesis.gptsovits import basemodels
from synthesis.gptsovits.basemodels import write_manifest
from synthesis.gptsovits.checkpoint import read_checkpoint
from synthesis.gptsovits.discriminator import MultiPeriodDiscriminator
from tests.frontend.tiny_models import write_tiny_bert, write_tiny_hubert

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
V2, PRO, TRAIN = SHARED / "gptsovits", SHARED / "gptsovits-v2pro", SHARED / "gptsovits-train"
RATE = 32000

SENTENCES = [
    "您好，您的订单明天下午送达。", "确认请按一，改期请按二。", "感谢您的耐心等待，祝您生活愉快。",
    "我们的快递员会提前联系您。", "如果有问题，请拨打客服电话。", "您的包裹已经到达本地站点。",
    "请保持电话畅通，谢谢。", "本次服务到此结束，再见。",
]
CHARACTERS = "".join(SENTENCES) + "零一二三四五六七八九十点号月日年元幺张先生李娜订单送达明天上午下午您好的请按确认改期"


def speaker_speech(seconds: float, *, f0: float = 190.0, brightness: float = 0.6, seed: int = 0,
                   sentence_s: tuple[float, float] = (4.5, 7.5), pause_s: float = 0.7) -> np.ndarray:
    """Speech-like audio of one synthetic 'speaker': voiced syllables (harmonics of a wandering f0 under a
    formant-ish tilt) grouped into sentences separated by pauses, with a little room noise."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    total = int(seconds * RATE)
    while sum(len(x) for x in out) < total:
        length = rng.uniform(*sentence_s)
        t = np.arange(int(length * RATE)) / RATE
        pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        voiced = sum((brightness ** k) * np.sin(k * phase) for k in range(1, 12))
        syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3.5, 5.0) * t) + 0.3, 0.0, None)  # gaps between
        sentence = 0.25 * voiced * syllables / 2.5
        out.append(sentence.astype(np.float32))
        out.append(np.zeros(int(pause_s * RATE), np.float32))
    audio = np.concatenate(out)[:total]
    return (audio + 0.002 * rng.standard_normal(audio.size)).astype(np.float32)


def wav_bytes(audio: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def training_base(root: Path) -> Path:
    """A base directory in the official pretrained_models layout with small stand-ins: the shared v2 pair (its
    G completed with the enc_q weights training needs, and a vocoder loud enough to pass the render checks),
    a narrow random discriminator, tiny BERT and HuBERT, the shared SV model, and SHA256SUMS."""
    root.mkdir(parents=True, exist_ok=True)
    gpt_name, sovits_name = basemodels.PAIRS["v2"]
    generator = read_checkpoint(V2 / "sovits.pth", kind="sovits")
    weights = dict(generator.weights)
    weights.update(torch.load(TRAIN / "s2G_enc_q.pth", map_location="cpu", weights_only=True)["weight"])
    weights["dec.conv_post.weight"] = weights["dec.conv_post.weight"] * 400  # the random vocoder is near silent
    (root / sovits_name).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": weights, "config": generator.config, "info": "test base G"}, root / sovits_name)
    shutil.copyfile(V2 / "gpt.ckpt", root / gpt_name)
    # A pretrained discriminator as the official training saves one; narrow, like the other stand-ins.
    torch.manual_seed(0)
    discriminator = MultiPeriodDiscriminator(width=8).state_dict()
    torch.save({"model": discriminator, "iteration": 1, "learning_rate": 1e-4}, root / basemodels.DISCRIMINATORS["v2"])
    (root / basemodels.SV_MODEL).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(PRO / "sv.ckpt.gz", "rb") as source, (root / basemodels.SV_MODEL).open("wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    write_tiny_bert(root / basemodels.BERT_DIR, CHARACTERS)
    write_tiny_hubert(root / basemodels.HUBERT_DIR)
    write_manifest(root)
    return root
