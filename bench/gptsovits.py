"""GPT-SoVITS engine benchmark (v2, v2Pro, v2ProPlus) on random full-size weights (never a test: it prints figures).

Fixed job: a 40-phone sentence (plus a 20-phone prompt transcript), a 150-token prompt, 200 semantic tokens
generated with EOS masked, decoded to 8.0 s of 32 kHz audio. Prints seconds per stage, the real-time factor
at batch 1, and aggregate throughput (audio seconds per wall second) at batch 8 and 32, for fp32 and for the
reduced-precision modes (bf16 GPT + bf16 vocoder; int8: the same with one-row GPT steps on int8 weights). Then it streams a 4 s sentence (100 codes, batch 1) and
prints the first-audio latency. The last line is one JSON object with every figure.

v2Pro / v2ProPlus use the same v2 GPT; their SoVITS decode also takes a speaker embedding from the
ERes2NetV2 speaker-verification model. Herald computes that once per voice (cached with the prompt, fp32 in
both modes, as the engine loads it), so it is timed apart on a 5 s 16 kHz reference and is not in the RTF.

    python bench/gptsovits.py [--version v2|v2Pro|v2ProPlus] [--batches 1,8,32] [--modes fp32,bf16,int8]
                              [--device cpu|cuda] [--smoke]

--smoke runs the same code on the small shared reference weights for 16 tokens (CI runs it for each
version; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthesis.gptsovits.loading import load_gpt, load_sovits  # noqa: E402
from synthesis.gptsovits.randomweights import write_random_pair, write_random_sovits  # noqa: E402
from synthesis.gptsovits.sovits import spectrogram  # noqa: E402
from synthesis.gptsovits.speaker import ERes2NetV2, SpeakerEncoder  # noqa: E402
from synthesis.gptsovits.streaming import ChunkDecoder, FrameNoise  # noqa: E402

SHARED = Path(os.environ.get("HERALD_GPTSOVITS_REFERENCE", ROOT.parent / "shared" / "gptsovits"))
SHARED_PRO = SHARED.parent / "gptsovits-v2pro"  # manifest_v2pro_sovits.json, manifest_v2proplus_sovits.json
VERSIONS = ("v2", "v2Pro", "v2ProPlus")
SV_SECONDS = 5.0  # the speaker-verification reference: 5 s at 16 kHz
TARGET_PHONES, PROMPT_PHONES, PROMPT_TOKENS, STEPS = 40, 20, 150, 200
SMOKE_STEPS = 16
STREAM_STEPS = 100  # a 4 s sentence, streamed


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def job(batch: int, generator: torch.Generator):
    phones = [torch.randint(0, 732, (PROMPT_PHONES + TARGET_PHONES,), generator=generator) for _ in range(batch)]
    bert = [torch.randn(1024, PROMPT_PHONES + TARGET_PHONES, generator=generator) for _ in range(batch)]
    prompt = torch.randint(0, 1024, (PROMPT_TOKENS,), generator=generator)
    return phones, bert, prompt


def run(gpt, sovits, device: str, batch: int, bf16: bool, spec, sv_emb=None, steps: int = STEPS) -> dict:
    generator = torch.Generator().manual_seed(batch)
    phones, bert, prompt = job(batch, generator)
    bert = [b.to(device, gpt.bert_proj.weight.dtype) for b in bert]
    sync(device)
    start = time.perf_counter()
    generations = gpt.generate(
        phones, bert, prompt, top_k=15, max_steps=steps + 1, allow_eos=False, mode="batched"
    )
    sync(device)
    t2s = time.perf_counter() - start
    start = time.perf_counter()
    for phone_ids, generation in zip(phones, generations, strict=True):
        codes = generation.tokens[:steps].view(1, 1, -1).to(device)  # (1, 1, 200): 8.0 s of audio
        text = phone_ids[PROMPT_PHONES:].view(1, -1).to(device)
        sv_embs = None if sv_emb is None else [sv_emb]  # v2Pro / v2ProPlus: one (1, 20480) per reference
        wav = sovits.decode(codes, text, [spec], noise_scale=0.5, vocoder_bf16=bf16, sv_embs=sv_embs)
    sync(device)
    decode = time.perf_counter() - start
    samples = steps * sovits.config.samples_per_code  # 32 kHz
    assert wav.shape[-1] == samples, wav.shape
    audio = batch * samples / 32000
    wall = t2s + decode
    return {
        "batch": batch,
        "t2s_seconds": round(t2s, 3),
        "t2s_ms_per_token": round(1000 * t2s / (steps * batch), 2),
        "decode_seconds": round(decode, 3),
        "wall_seconds": round(wall, 3),
        "rtf": round(wall / audio, 3),
        "audio_seconds_per_second": round(audio / wall, 2),
        "semantic_tokens_per_second": round(steps * batch / t2s, 1),
    }


def first_audio(gpt, sovits, device: str, bf16: bool, spec, sv_emb=None, steps: int = STREAM_STEPS) -> dict:
    """Stream a 4 s sentence (100 codes) at batch 1: time to the first chunk, the whole stream's RTF, and how
    far the joined chunks are from one decode of the same codes and noise."""
    generator = torch.Generator().manual_seed(11)
    phones, bert, prompt = job(1, generator)
    bert = bert[0].to(device, gpt.bert_proj.weight.dtype)
    text = phones[0][PROMPT_PHONES:].view(1, -1).to(device)
    sv_embs = None if sv_emb is None else [sv_emb]

    def noise() -> FrameNoise:
        return FrameNoise(sovits.config.inter_channels, torch.Generator().manual_seed(12), device)

    sync(device)
    start = time.perf_counter()
    codes = gpt.stream(phones[0], bert, prompt, max_steps=steps + 1, allow_eos=False,
                       generator=torch.Generator(device=device).manual_seed(13))
    chunks, first = [], None
    decoder = ChunkDecoder(sovits, text, [spec], noise=noise(), vocoder_bf16=bf16, sv_embs=sv_embs)
    for chunk in decoder.stream(codes):
        if first is None:
            sync(device)
            first = time.perf_counter() - start
        chunks.append(chunk)
    sync(device)
    wall = time.perf_counter() - start
    streamed = np.concatenate(chunks)
    whole = sovits.decode(torch.tensor(decoder.codes, device=device).view(1, 1, -1), text, [spec],
                          noise=noise().upto(2 * len(decoder.codes)), vocoder_bf16=bf16, sv_embs=sv_embs)
    whole = whole.view(-1).cpu().numpy()
    audio = len(whole) / 32000
    return {
        "audio_seconds": round(audio, 2),
        "first_audio_ms": round(1000 * first, 1),
        "chunks": len(chunks),
        "stream_rtf": round(wall / audio, 3),
        "max_abs_vs_whole": float(f"{np.abs(streamed - whole).max():.2e}"),
        "rel_rms_vs_whole": float(f"{np.sqrt(np.mean((streamed - whole) ** 2) / np.mean(whole ** 2)):.2e}"),
    }


def speaker_embedding(device: str) -> tuple[torch.Tensor, float, int]:
    """A full-size random ERes2NetV2 embeds a 5 s 16 kHz reference: (1, 20480), timed seconds, parameters."""
    torch.manual_seed(4)
    encoder = SpeakerEncoder(ERes2NetV2().to(device))  # official baseWidth 24, scale 4, expansion 4; eval mode
    wav16k = torch.randn(1, int(SV_SECONDS * 16000), generator=torch.Generator().manual_seed(5)) * 0.1  # (1, N)
    encoder.embed(wav16k)  # warm-up
    sync(device)
    start = time.perf_counter()
    emb = encoder.embed(wav16k)  # (1, 20480)
    sync(device)
    seconds = time.perf_counter() - start
    assert emb.shape == (1, 20480), emb.shape
    return emb, seconds, sum(p.numel() for p in encoder.model.parameters())


def weights_for_smoke(folder: Path, version: str) -> tuple[Path, Path]:
    """The small shared files: v2's pair, or v2's GPT with the shared v2Pro SoVITS (re-marked 06 for
    v2ProPlus, whose difference from v2Pro is only the config's vocoder width)."""
    if version == "v2":
        return SHARED / "gpt.ckpt", SHARED / "sovits.pth"
    if version == "v2Pro":
        return SHARED / "gpt.ckpt", SHARED_PRO / "sovits.pth"
    plus = folder / "sovits_plus.pth"
    plus.write_bytes(b"06" + (SHARED_PRO / "sovits.pth").read_bytes()[2:])
    return SHARED / "gpt.ckpt", plus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="v2", choices=VERSIONS)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--modes", default="fp32,bf16,int8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="small shared weights, 16 tokens: CI's check")
    args = parser.parse_args()
    steps = SMOKE_STEPS if args.smoke else STEPS
    torch.set_grad_enabled(False)
    device = args.device
    results: dict = {"version": args.version, "device": device, "threads": torch.get_num_threads(),
                     "audio_seconds_per_item": steps * 1280 / 32000, "smoke": args.smoke,
                     "job": f"{TARGET_PHONES}+{PROMPT_PHONES} phones, {PROMPT_TOKENS}-token prompt, {steps} tokens"}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        if args.smoke:
            gpt_path, sovits_path = weights_for_smoke(Path(folder), args.version)
        else:
            gpt_path, sovits_path = write_random_pair(folder, SHARED, seed=0)
        if args.version != "v2" and not args.smoke:  # the same v2 GPT; the SoVITS from the official Pro shapes
            manifest = SHARED_PRO / f"manifest_{args.version.lower()}_sovits.json"
            sovits_path = write_random_sovits(Path(folder) / "sovits_pro.pth", manifest, seed=1, version=args.version)
        print(f"{'small shared' if args.smoke else 'random full-size'} {args.version} weights ready in "
              f"{time.perf_counter() - start:.1f} s")
        sv_emb = None
        if args.version != "v2":
            sv_emb, sv_seconds, sv_parameters = speaker_embedding(device)
            results["speaker"] = {"seconds": round(sv_seconds, 3), "reference_seconds": SV_SECONDS,
                                  "parameters": sv_parameters, "per": "voice"}
            print(f"speaker embedding (ERes2NetV2, {sv_parameters / 1e6:.1f} M, fp32) of a {SV_SECONDS:.0f} s "
                  f"16 kHz reference: {sv_seconds:.2f} s once per voice (not in the RTF)")
        for mode in args.modes.split(","):
            low = mode != "fp32"  # bf16 / int8: bf16 vocoder; int8: one-row GPT steps on int8 weights
            gpt_dtype = (torch.float16 if device.startswith("cuda") else torch.bfloat16) if low else torch.float32
            start = time.perf_counter()
            gpt = load_gpt(gpt_path, device=device, dtype=gpt_dtype)
            if mode == "int8":
                gpt.quantize_int8()
            sovits = load_sovits(sovits_path, device=device).fuse_weight_norm()
            load = time.perf_counter() - start
            assert sovits.config.version == args.version, sovits.config.version
            reference = torch.randn(1, 32000 * 3, generator=torch.Generator().manual_seed(3)) * 0.1
            spec = spectrogram(reference).to(device)
            run(gpt, sovits, device, 1, low, spec, sv_emb, steps)  # warm-up
            rows = []
            for batch in (int(b) for b in args.batches.split(",")):
                row = run(gpt, sovits, device, batch, low, spec, sv_emb, steps)
                rows.append(row)
                print(
                    f"{mode:>4} batch {batch:>2}: t2s {row['t2s_seconds']:6.2f} s ({row['t2s_ms_per_token']:5.2f} "
                    f"ms/token, {row['semantic_tokens_per_second']:8.1f} tok/s)  decode {row['decode_seconds']:6.2f} s  "
                    f"RTF {row['rtf']:.3f}  {row['audio_seconds_per_second']:.2f}x real time"
                )
            stream_steps = SMOKE_STEPS if args.smoke else STREAM_STEPS
            cold = first_audio(gpt, sovits, device, low, spec, sv_emb, stream_steps)  # a new worker's first stream
            stream = first_audio(gpt, sovits, device, low, spec, sv_emb, stream_steps)
            stream["cold_first_audio_ms"] = cold["first_audio_ms"]
            print(
                f"{mode:>4} streaming a {stream['audio_seconds']:.1f} s sentence: first audio "
                f"{stream['first_audio_ms']:.0f} ms (the worker's first stream: {cold['first_audio_ms']:.0f} ms), "
                f"{stream['chunks']} chunks, RTF {stream['stream_rtf']:.3f}; "
                f"joined vs whole decode: max {stream['max_abs_vs_whole']:.1e}, rel RMS {stream['rel_rms_vs_whole']:.1e}"
            )
            results[mode] = {"load_seconds": round(load, 2), "runs": rows, "stream": stream}
            del gpt, sovits
    print(json.dumps(results))


if __name__ == "__main__":
    main()
