"""Carrier announcements and SIT tones on the labelled synthetic set (bench/announce_set.py): not a test.

    python bench/announce.py [--set held-out|tune] [--count N] [--loss P [--conceal]] [--smoke]

Feeds each example's 20 ms G.711 packets to one AnnouncementMatcher (library: the set's reference clips, loaded
from WAV files as an operator's would be) and one SitDetector, as the user agent would, and prints:
- announcement accuracy: examples whose label (outcome or "none") the matcher got right, and on announcements
  alone (the target is >= 95% on the held-out seeds, which the thresholds were never tuned on);
- a confusion table (rows: truth, columns: what the matcher said, "none" when nothing matched);
- false positives on the negatives, by kind; seconds of audio until a match (median, p95, worst);
- SIT: examples with a SIT whose code was named, and SITs reported where none was played;
- CPU µs per 20 ms packet for each detector (mean over all packets fed, this machine; both work on 100 ms
  batches, so this is a batch's cost over its five packets).
--loss P drops that share of packets at random (--conceal: replaced by silence, as a jitter buffer would), a
stress row the thresholds were not tuned for. The last line is one JSON object. --smoke: a handful of
examples, what CI runs (figures mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import announce_set  # noqa: E402

from telephony.sip.announce import OUTCOMES, AnnouncementMatcher, SitDetector, load_library_dir  # noqa: E402


def run(seeds: range, *, loss: float = 0.0, conceal: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        announce_set.write_library(Path(tmp))
        references = load_library_dir(tmp)
    confusion: Counter[tuple[str, str]] = Counter()
    false_positives: Counter[str] = Counter()
    negatives: Counter[str] = Counter()
    delays: list[float] = []
    sit_right = sit_played = sit_false = 0
    match_us = sit_us = 0.0
    packets = 0
    scores_none: list[float] = []
    for seed in seeds:
        ex = announce_set.example(seed)
        if loss:  # RTP lost on the way: packets missing, or (conceal) replaced by silence of the same length
            lost = np.random.default_rng([seed, 7]).uniform(size=len(ex.payloads)) < loss
            quiet = bytes([0xFF if ex.pt == 0 else 0xD5]) * 160
            payloads = [quiet if gone else p for p, gone in zip(ex.payloads, lost, strict=True) if conceal or not gone]
            ex = dataclasses.replace(ex, payloads=payloads)
        matcher, sit = AnnouncementMatcher(references), SitDetector()
        said, heard_sit = "none", ""
        for n, payload in enumerate(ex.payloads):
            last = n == len(ex.payloads) - 1
            began = time.perf_counter()
            found = matcher.feed(payload, ex.pt) or (matcher.flush() if last else None)
            middle = time.perf_counter()
            tone = sit.feed(payload, ex.pt) or (sit.flush() if last else None)
            match_us += (middle - began) * 1e6
            sit_us += (time.perf_counter() - middle) * 1e6
            packets += 1
            if found is not None:
                said = found.outcome
                delays.append((n + 1) * 0.02 - max(ex.announcement_start, 0.0))
            if tone is not None and not heard_sit:
                heard_sit = tone.code
        confusion[(ex.label, said)] += 1
        if ex.label == "none":
            negatives[ex.kind] += 1
            false_positives[ex.kind] += said != "none"
            scores_none.append(matcher.best[0])
        if ex.sit:
            sit_played += 1
            sit_right += heard_sit == ex.sit
        else:
            sit_false += bool(heard_sit)
    total = sum(confusion.values())
    announcements = sum(v for (truth, _), v in confusion.items() if truth != "none")
    right = sum(v for (truth, said), v in confusion.items() if truth == said)
    right_announcements = sum(v for (truth, said), v in confusion.items() if truth == said != "none")
    labels = [*OUTCOMES, "none"]
    delays.sort()
    return {
        "bench": "announce",
        "examples": total,
        "announcements": announcements,
        "accuracy": round(right / total, 4) if total else None,
        "announcement_accuracy": round(right_announcements / announcements, 4) if announcements else None,
        "confusion": {truth: {said: confusion[(truth, said)] for said in labels} for truth in labels},
        "false_positives": {kind: f"{false_positives[kind]}/{negatives[kind]}" for kind in sorted(negatives)},
        "negative_best_score_p95": round(_quantile(sorted(scores_none), 0.95), 3) if scores_none else None,
        "match_seconds": {"median": round(statistics.median(delays), 2) if delays else None,
                          "p95": round(_quantile(delays, 0.95), 2) if delays else None,
                          "max": round(delays[-1], 2) if delays else None},
        "sit": {"played": sit_played, "code_right": sit_right, "false_sits": sit_false,
                "without_sit": total - sit_played},
        "us_per_packet": {"announcement": round(match_us / max(packets, 1), 1),
                          "sit": round(sit_us / max(packets, 1), 1)},
        "load_average": round(os.getloadavg()[0], 2),
        "references": len(references),
        "library_seconds": round(sum(r.seconds for r in references), 1),
    }


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def print_table(figures: dict) -> None:
    labels = [*OUTCOMES, "none"]
    print(f"{'truth / said':16}" + "".join(f"{label[:11]:>12}" for label in labels))
    for truth in labels:
        print(f"{truth:16}" + "".join(f"{figures['confusion'][truth][said]:>12}" for said in labels))
    print(f"accuracy {figures['accuracy']:.1%} on {figures['examples']} examples; "
          f"announcements {figures['announcement_accuracy']:.1%} of {figures['announcements']}")
    print(f"false positives on negatives: {figures['false_positives']}")
    print(f"match after {figures['match_seconds']} s of announcement; SIT {figures['sit']}")
    print(f"µs per 20 ms packet: {figures['us_per_packet']} (load average {figures['load_average']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=("held-out", "tune"), default="held-out")
    parser.add_argument("--count", type=int, default=None, help="the first N seeds of the set")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--loss", type=float, default=0.0, help="drop this share of packets (stress, not tuned)")
    parser.add_argument("--conceal", action="store_true", help="lost packets become 20 ms of silence")
    args = parser.parse_args()
    seeds = announce_set.HELD_OUT if args.set == "held-out" else announce_set.TUNE
    count = 12 if args.smoke else args.count
    if count is not None:
        seeds = range(seeds.start, seeds.start + min(count, len(seeds)))
    figures = run(seeds, loss=args.loss, conceal=args.conceal)
    figures.update({"set": args.set, "seeds": f"{seeds.start}..{seeds.stop - 1}", "smoke": args.smoke,
                    "loss": args.loss, "conceal": args.conceal})
    print_table(figures)
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
