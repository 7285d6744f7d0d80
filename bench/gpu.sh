#!/usr/bin/env bash
# The GPU benchmark in one go, on one GPU, in under 8 minutes: every figure the README's GPU table needs.
#
#   bench/gpu.sh [--device cuda|cpu] [--tiny] [--out DIR]
#
# Stages (each under its own time limit, each one's output kept in DIR even if a later one fails):
#   1. the machine: nvidia-smi, torch and CUDA versions
#   2. one decoding step, eager transformer forward vs Text2SemanticDecoder.step, fp32 and fp16,
#      batches 1 / 8 / 32 / 256 (bench/gpt_step.py)
#   3. the engine, full-size random v2 weights: per stage, batches 1 / 8 / 32 / 256, fp32 and fp16, semantic
#      tokens per second, and the first audio of a streamed 4 s sentence (bench/gptsovits.py)
#   4. the same for v2ProPlus at batches 1 and 32 (the speaker model and the wider vocoder)
#   5. the training bench, a few steps of SoVITS and GPT fine-tuning (bench/train.py)
# DIR/summary.json gathers the last JSON line of every stage.
#
# --device cpu --tiny is the dry run CI makes (tests/gptsovits/test_bench_smoke.py): the same stages on the
# small shared weights and tiny sizes, so the script is known to work before GPU time is spent on it.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
tiny=0
out=var/bench-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$device" in
  cuda|cuda:*|cpu) ;;
  *) echo "bench/gpu.sh: --device must be cuda, cuda:N or cpu, not $device" >&2; exit 2 ;;
esac

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
mkdir -p "$out"
started=$(date +%s)

stage() {  # stage NAME SECONDS COMMAND...: run it under a limit, keep its output, stop the script if it fails
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit} s)"
  local begin=$(date +%s)
  if ! timeout "$limit" "$@" > "$out/$name.txt" 2> "$out/$name.err"; then
    echo "bench/gpu.sh: stage $name failed or ran past ${limit} s; its output: $out/$name.txt, $out/$name.err" >&2
    tail -20 "$out/$name.err" >&2
    exit 1
  fi
  grep -v '^{' "$out/$name.txt" || true
  echo "   ($(( $(date +%s) - begin )) s)"
}

"$python" - "$device" > "$out/machine.txt" <<'EOF'
import platform, sys
import torch
device = sys.argv[1]
print(f"torch {torch.__version__}, python {platform.python_version()}, threads {torch.get_num_threads()}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.sh: --device cuda but torch sees no GPU (a CPU-only torch wheel?)")
    props = torch.cuda.get_device_properties(torch.device(device))
    print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
else:
    print(f"CPU: {platform.processor() or platform.machine()}")
EOF
cat "$out/machine.txt"
if [ "$device" != cpu ] && command -v nvidia-smi > /dev/null; then nvidia-smi > "$out/nvidia-smi.txt" || true; fi

if [ "$tiny" = 1 ]; then
  stage step 120 "$python" bench/gpt_step.py --device "$device" --tiny --batches 1,8 --modes fp32,bf16
  stage engine 300 "$python" bench/gptsovits.py --device "$device" --smoke --batches 1,2 --modes fp32,bf16
  stage engine_pro 300 "$python" bench/gptsovits.py --device "$device" --smoke --version v2ProPlus --batches 1 --modes bf16
  stage train 300 "$python" bench/train.py --device "$device" --smoke
else
  stage step 60 "$python" bench/gpt_step.py --device "$device" --batches 1,8,32,256 --modes fp32,bf16
  stage engine 210 "$python" bench/gptsovits.py --device "$device" --batches 1,8,32,256 --modes fp32,bf16
  stage engine_pro 90 "$python" bench/gptsovits.py --device "$device" --version v2ProPlus --batches 1,32 --modes bf16
  stage train 80 "$python" bench/train.py --device "$device" --sovits-epochs 2 --gpt-epochs 3
fi

"$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
for name in ("step", "engine", "engine_pro", "train"):
    lines = [l for l in (out / f"{name}.txt").read_text().splitlines() if l.startswith("{")]
    summary[name] = json.loads(lines[-1]) if lines else None
(out / "summary.json").write_text(json.dumps(summary, indent=1))
engine = summary["engine"] or {}
best = max((r["semantic_tokens_per_second"], r["batch"], m) for m in ("fp32", "bf16") for r in engine.get(m, {}).get("runs", []))
streams = [f"{m} {engine[m]['stream']['first_audio_ms']:.0f} ms" for m in ("fp32", "bf16") if m in engine]
seconds = engine["fp32"]["stream"]["audio_seconds"] if "fp32" in engine else 0
print(f"best aggregate: {best[0]:.0f} semantic tokens/s ({best[2]}, batch {best[1]}); first audio of a streamed "
      f"{seconds:.1f} s sentence at batch 1: {', '.join(streams)}")
EOF
echo "bench/gpu.sh: done in $(( $(date +%s) - started )) s; figures in $out/summary.json"
