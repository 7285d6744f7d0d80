"""GPT-SoVITS v2 engine benchmark on random full-size weights (never a test: it prints figures).

Fixed job: a 40-phone sentence (plus a 20-phone prompt transcript), a 150-token prompt, 200 semantic tokens
generated with EOS masked, decoded to 8.0 s of 32 kHz audio. Prints seconds per stage, the real-time factor
at batch 1, and aggregate throughput (audio seconds per wall second) at batch 8 and 32, for fp32 and for the
reduced-precision mode (bf16 GPT + bf16 vocoder). The last line is one JSON object with every figure.

    python bench/gptsovits.py [--batches 1,8,32] [--modes fp32,bf16] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthesis.gptsovits.loading import load_gpt, load_sovits  # noqa: E402
from synthesis.gptsovits.randomweights import write_random_pair  # noqa: E402
from synthesis.gptsovits.sovits import spectrogram  # noqa: E402

SHARED = Path(os.environ.get("HERALD_GPTSOVITS_REFERENCE", ROOT.parent / "shared" / "gptsovits"))
TARGET_PHONES, PROMPT_PHONES, PROMPT_TOKENS, STEPS = 40, 20, 150, 200
AUDIO_SECONDS = STEPS * 1280 / 32000  # 8.0 s


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def job(batch: int, generator: torch.Generator):
    phones = [torch.randint(0, 732, (PROMPT_PHONES + TARGET_PHONES,), generator=generator) for _ in range(batch)]
    bert = [torch.randn(1024, PROMPT_PHONES + TARGET_PHONES, generator=generator) for _ in range(batch)]
    prompt = torch.randint(0, 1024, (PROMPT_TOKENS,), generator=generator)
    return phones, bert, prompt


def run(gpt, sovits, device: str, batch: int, bf16: bool, spec) -> dict:
    generator = torch.Generator().manual_seed(batch)
    phones, bert, prompt = job(batch, generator)
    bert = [b.to(device, gpt.bert_proj.weight.dtype) for b in bert]
    sync(device)
    start = time.perf_counter()
    generations = gpt.generate(
        phones, bert, prompt, top_k=15, max_steps=STEPS + 1, allow_eos=False, mode="batched"
    )
    sync(device)
    t2s = time.perf_counter() - start
    start = time.perf_counter()
    for phone_ids, generation in zip(phones, generations, strict=True):
        codes = generation.tokens[:STEPS].view(1, 1, -1).to(device)  # (1, 1, 200): 8.0 s of audio
        text = phone_ids[PROMPT_PHONES:].view(1, -1).to(device)
        wav = sovits.decode(codes, text, [spec], noise_scale=0.5, vocoder_bf16=bf16)
    sync(device)
    decode = time.perf_counter() - start
    assert wav.shape[-1] == int(AUDIO_SECONDS * 32000), wav.shape
    audio = batch * AUDIO_SECONDS
    wall = t2s + decode
    return {
        "batch": batch,
        "t2s_seconds": round(t2s, 3),
        "t2s_ms_per_token": round(1000 * t2s / (STEPS * batch), 2),
        "decode_seconds": round(decode, 3),
        "wall_seconds": round(wall, 3),
        "rtf": round(wall / audio, 3),
        "audio_seconds_per_second": round(audio / wall, 2),
        "semantic_tokens_per_second": round(STEPS * batch / t2s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--modes", default="fp32,bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = args.device
    results: dict = {"device": device, "threads": torch.get_num_threads(), "audio_seconds_per_item": AUDIO_SECONDS,
                     "job": f"{TARGET_PHONES}+{PROMPT_PHONES} phones, {PROMPT_TOKENS}-token prompt, {STEPS} tokens"}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        gpt_path, sovits_path = write_random_pair(folder, SHARED, seed=0)
        print(f"random full-size weights written in {time.perf_counter() - start:.1f} s")
        for mode in args.modes.split(","):
            low = mode == "bf16"
            gpt_dtype = (torch.float16 if device.startswith("cuda") else torch.bfloat16) if low else torch.float32
            start = time.perf_counter()
            gpt = load_gpt(gpt_path, device=device, dtype=gpt_dtype)
            sovits = load_sovits(sovits_path, device=device).fuse_weight_norm()
            load = time.perf_counter() - start
            reference = torch.randn(1, 32000 * 3, generator=torch.Generator().manual_seed(3)) * 0.1
            spec = spectrogram(reference).to(device)
            run(gpt, sovits, device, 1, low, spec)  # warm-up
            rows = []
            for batch in (int(b) for b in args.batches.split(",")):
                row = run(gpt, sovits, device, batch, low, spec)
                rows.append(row)
                print(
                    f"{mode:>4} batch {batch:>2}: t2s {row['t2s_seconds']:6.2f} s ({row['t2s_ms_per_token']:5.2f} "
                    f"ms/token, {row['semantic_tokens_per_second']:8.1f} tok/s)  decode {row['decode_seconds']:6.2f} s  "
                    f"RTF {row['rtf']:.3f}  {row['audio_seconds_per_second']:.2f}x real time"
                )
            results[mode] = {"load_seconds": round(load, 2), "runs": rows}
            del gpt, sovits
    print(json.dumps(results))


if __name__ == "__main__":
    main()
