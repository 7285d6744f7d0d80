"""Fine-tuning speed: one minute of synthetic speech through both training stages, wall time and peak memory.

    python bench/train.py                          # full-size random v2 weights, official default epochs
    python bench/train.py --sovits-epochs 1 --gpt-epochs 1 --seconds 20     # a reduced CPU run
    python bench/train.py --smoke                  # the small shared weights, a few seconds (CI)

The two stages run exactly as a training worker runs them (`synthesis.gptsovits.finetune.train`). Dataset
preparation needs the real BERT and HuBERT models, which are not on this machine (nothing is downloaded), so
the bench feeds stand-in features of the right shapes (phones of the shared frontend sentences, N(0, 1) HuBERT
features with the frame count of each clip, random semantic codes) and times the two training stages. On CUDA
it trains in fp16 (autocast + GradScaler), as the official training does. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthesis.gptsovits import finetune  # noqa: E402
from synthesis.gptsovits.checkpoint import read_checkpoint  # noqa: E402
from synthesis.gptsovits.discriminator import MultiPeriodDiscriminator  # noqa: E402
from synthesis.gptsovits.randomweights import write_random_pair  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
RATE = 32000


def synthetic_clips(seconds: float, seed: int = 0) -> list[np.ndarray]:
    """`seconds` of speech-like audio cut into 4-9 s clips, as the studio's slicer would give them."""
    rng = np.random.default_rng(seed)
    clips, total = [], 0.0
    while total < seconds:
        length = min(rng.uniform(4.0, 9.0), max(seconds - total, 4.0))
        t = np.arange(int(length * RATE)) / RATE
        phase = 2 * np.pi * np.cumsum(180 * (1 + 0.08 * np.sin(2 * np.pi * t))) / RATE
        voiced = sum(0.6**k * np.sin(k * phase) for k in range(1, 12))
        clips.append((0.1 * voiced * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32))
        total += length
    return clips


def stand_in_items(clips: list[np.ndarray], bert_dim: int, seed: int = 0) -> list[finetune.PreparedItem]:
    rng = torch.Generator().manual_seed(seed)
    items = []
    for index, clip in enumerate(clips):
        wave, _ = finetune.training_waves(clip)
        frames50 = (len(wave) // 2 - 400) // 320 + 1  # cnhubert frames of the 16 kHz clip
        phones = max(8, int(len(wave) / RATE * 12))  # ~12 phones a second, inside the GPT data's [3, 25] rule
        items.append(finetune.PreparedItem(
            name=f"clip-{index}",
            phone_ids=torch.randint(1, 300, (phones,), generator=rng),
            bert=torch.randn(bert_dim, phones, generator=rng),
            ssl=torch.randn(1, 768, frames50, generator=rng),
            wav=torch.from_numpy(wave),
            semantic=torch.randint(0, 1024, (frames50 // 2,), generator=rng),
        ))
    return items


class Timer:
    """finetune.Control that records when each stage starts and ends; never stops the run."""

    def __init__(self) -> None:
        self.previous = time.perf_counter()  # a stage starts when the one before it reported last
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.steps: dict[str, int] = {}
        self.updates: dict[str, int] = {}
        self.losses: dict[str, dict[str, float]] = {}

    def report(self, stage, epoch, epochs, step, losses, fraction) -> None:
        now = time.perf_counter()
        self.first.setdefault(stage, self.previous)
        self.last[stage] = self.previous = now
        self.steps[stage] = self.steps.get(stage, 0) + 1
        if losses.get("stepped", 1):  # the GPT steps its optimizer every 4th batch; SoVITS every batch
            self.updates[stage] = self.updates.get(stage, 0) + 1
        self.losses[stage] = {k: round(float(v), 4) for k, v in losses.items()}

    def stop_reason(self) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sovits-epochs", type=int, default=8)
    parser.add_argument("--gpt-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="the small shared weights, 2 short clips: CI's check")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.sovits_epochs, args.gpt_epochs, args.batch_size = 8.0, 1, 1, 2
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.smoke:
            gpt_path, sovits_path = SHARED / "gptsovits" / "gpt.ckpt", SHARED / "gptsovits" / "sovits.pth"
        else:
            gpt_path, sovits_path = write_random_pair(folder / "weights", SHARED / "gptsovits")
        sovits, gpt = read_checkpoint(sovits_path, kind="sovits"), read_checkpoint(gpt_path, kind="gpt")
        state = dict(sovits.weights)
        if args.smoke:
            enc_q = torch.load(SHARED / "gptsovits-train" / "s2G_enc_q.pth", map_location="cpu", weights_only=True)
            state.update(enc_q["weight"])
        items = stand_in_items(synthetic_clips(args.seconds), bert_dim=1024)  # the GPT's bert_proj takes 1024
        # The smoke run's discriminator is narrow like the other stand-ins; the full run's is the official size.
        discriminator = MultiPeriodDiscriminator(width=8).state_dict() if args.smoke else None
        base = finetune.BaseWeights(sovits_state=state, sovits_config=sovits.config, discriminator_state=discriminator,
                                    gpt_state=gpt.weights, gpt_config=gpt.config, gpt_path=gpt_path)
        plan = finetune.Plan(sovits_epochs=args.sovits_epochs, gpt_epochs=args.gpt_epochs,
                             batch_size=args.batch_size, device=args.device, fp16=args.device.startswith("cuda"))
        timer = Timer()
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = finetune.train(items, base, plan, folder / "work", timer)
        total = time.perf_counter() - started
        exported = {"sovits_mb": result.sovits_path.stat().st_size / 2**20, "gpt_mb": result.gpt_path.stat().st_size / 2**20}
    stages = {}
    for stage in ("sovits", "gpt"):
        if stage in timer.steps:
            steps = timer.steps[stage]
            span = timer.last[stage] - timer.first[stage]
            stages[stage] = {"steps": steps, "optimizer_steps": timer.updates.get(stage, 0),
                             "seconds": round(span, 2),  # with the stage's model set-up
                             "seconds_per_step": round(span / steps, 3), "last_losses": timer.losses[stage]}
    figures = {
        "bench": "train", "device": args.device, "weights": "small shared" if args.smoke else "full-size random v2",
        "audio_seconds": round(sum(len(i.wav) for i in items) / RATE, 1), "clips": len(items),
        "sovits_epochs": args.sovits_epochs, "gpt_epochs": args.gpt_epochs, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "total_seconds": round(total, 2), "stages": stages,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **({"peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if args.device.startswith("cuda")
           else {}),
        "exported_mb": {k: round(v, 1) for k, v in exported.items()},
        "cpu": os.cpu_count(),
    }
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
