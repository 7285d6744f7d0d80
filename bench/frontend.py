"""Text frontend speed: ms per sentence after warm-up over the shared reference sentences (not a test).

    python bench/frontend.py

The last line is one JSON object; the target is ≤ 5 ms per sentence on CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthesis.frontend.pipeline import process  # noqa: E402

SHARED = Path(os.environ.get("HERALD_GPTSOVITS_REFERENCE", ROOT.parent / "shared" / "gptsovits"))


def main() -> None:
    rows = [json.loads(line) for line in (SHARED / "frontend_public.jsonl").read_text(encoding="utf-8").splitlines()]
    sentences = [(r["text"], r["language"]) for r in rows]
    start = time.perf_counter()
    process("您好，这是一条预热句子。")  # jieba / pypinyin load here
    warmup = time.perf_counter() - start
    timings = []
    for _ in range(3):
        for text, language in sentences:
            t = time.perf_counter()
            process(text, language=language)
            timings.append(time.perf_counter() - t)
    mean_ms = 1000 * statistics.fmean(timings)
    p95_ms = 1000 * sorted(timings)[int(0.95 * len(timings))]
    print(f"warm-up (dictionaries): {warmup:.2f} s")
    print(f"{len(sentences)} sentences × 3: mean {mean_ms:.2f} ms, p95 {p95_ms:.2f} ms per sentence (target ≤ 5 ms)")
    print(json.dumps({"sentences": len(sentences), "mean_ms": round(mean_ms, 3), "p95_ms": round(p95_ms, 3),
                      "warmup_s": round(warmup, 2), "target_ms": 5.0, "meets_target": mean_ms <= 5.0}))


if __name__ == "__main__":
    main()
