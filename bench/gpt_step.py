"""One GPT decoding step, the ways it can be computed, side by side in one process (prints figures, never a test).

Full-size v2 GPT (random weights), a 210-position KV cache, one new position per row. For each precision it
times the transformer's own forward (`Transformer.forward` with T = 1: Herald's eager path before the step
kernels) and `Text2SemanticDecoder.step` (the path `generate` takes), at batch 1 and a bigger batch, and
prints the ratio. With --compiled it also times the whole step compiled by torch.compile (inductor), the
option measured and not taken (see the README): its compile time and its speed.

    python bench/gpt_step.py [--modes fp32,bf16,int8] [--batches 1,32] [--steps 30] [--compiled] [--tiny]
                             [--device cpu|cuda]

--tiny: a 2-layer model and 3 steps (CI's smoke run; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthesis.gptsovits.t2s import KVCache, T2SConfig, Text2SemanticDecoder  # noqa: E402

CACHED = 210  # positions already in the cache: a 150-code prompt and 60 phones


def timed(fn, steps: int, device: str = "cpu") -> float:
    for _ in range(3):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps * 1000


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compiled_step(model: Text2SemanticDecoder):
    """The whole step as one inductor graph: weights as inputs, the new keys/values returned, not written."""
    C, H = model.config.hidden_dim, model.config.head
    hd = C // H

    def step(x, kv, layers):
        b = x.size(0)
        new = []
        for i, layer in enumerate(layers):
            qkv = F.linear(x, layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias).view(b, 3, H, hd)
            q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
            old = torch.einsum("bhd,bhsd->bhs", q, kv[i, 0]) / math.sqrt(hd)
            scores = torch.cat([old, (q * k).sum(-1, keepdim=True) / math.sqrt(hd)], -1).softmax(-1)
            y = torch.einsum("bhs,bhsd->bhd", scores[..., :-1], kv[i, 1]) + scores[..., -1:] * v
            y = F.linear(y.reshape(b, C), layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias)
            x = layer.norm1(x + y)
            x = layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))
            new.append(torch.stack([k, v]))
        return x, new

    return torch.compile(step, dynamic=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="fp32,bf16,int8")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compiled", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--device", default="cpu", help="cuda: fp32 and fp16 (bf16 names fp16 there); no int8")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    config = T2SConfig(n_layer=2) if args.tiny else T2SConfig()
    steps = 3 if args.tiny else args.steps
    device = args.device
    results: dict = {"threads": torch.get_num_threads(), "layers": config.n_layer, "cached": CACHED, "tiny": args.tiny,
                     "device": device}
    torch.manual_seed(0)
    base = Text2SemanticDecoder(config).eval()
    for mode in args.modes.split(","):
        cuda = device.startswith("cuda")
        dtype = torch.float32 if mode == "fp32" else (torch.float16 if cuda else torch.bfloat16)
        model = Text2SemanticDecoder(config).eval()
        model.load_state_dict(base.state_dict())
        model = model.to(device, dtype)
        if mode == "int8":
            model.quantize_int8()
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            cache = KVCache(config, torch.ones(batch, CACHED, dtype=torch.bool, device=device), CACHED + 8, dtype)
            model.h(torch.randn(batch, CACHED, config.hidden_dim, dtype=dtype, device=device), None, cache)
            x = torch.randn(batch, config.hidden_dim, dtype=dtype, device=device)

            def eager(cache=cache, x=x, model=model):
                cache.reserve(1)
                model.h(x[:, None], None, cache)
                cache.length -= 1

            def step(cache=cache, x=x, model=model):
                model.step(x, cache)
                cache.length -= 1

            row = {"batch": batch, "eager_ms": round(timed(eager, steps, device), 2),
                   "step_ms": round(timed(step, steps, device), 2)}
            row["ratio"] = round(row["eager_ms"] / row["step_ms"], 2)
            if args.compiled and mode != "int8":
                fn = compiled_step(model)
                kv = cache.kv[:, :, :, :, :CACHED]
                start = time.perf_counter()
                fn(x, kv, model.h.layers)
                row["compile_seconds"] = round(time.perf_counter() - start, 1)
                row["compiled_ms"] = round(
                    timed(lambda fn=fn, x=x, kv=kv, m=model: fn(x, kv, m.h.layers), steps, device), 2)
            rows.append(row)
            extra = (f"  compiled {row['compiled_ms']:6.2f} ms (compile {row['compile_seconds']} s)"
                     if "compiled_ms" in row else "")
            print(f"{mode:>4} batch {batch:>2}: transformer forward {row['eager_ms']:6.2f} ms  step "
                  f"{row['step_ms']:6.2f} ms  ({row['ratio']:.2f}x){extra}")
        results[mode] = rows
    print(json.dumps(results))


if __name__ == "__main__":
    main()
