"""Answering-machine detection on the labelled synthetic set (bench/amd_set.py): not a test.

    python bench/amd.py [--set held-out|tune] [--count N] [--smoke]

Feeds each example's 20 ms G.711 packets to one AmdDetector (wait_for_end: DetectMessageEnd), as the user agent
does after the answer, and prints:
- accuracy: people (and the silent, for whom "unknown" is right: Herald treats it as a person) not taken for
  machines, and machines found; a confusion table (rows: truth; columns: what detection said);
- how long a decision took (median, p95, worst) for people and for machines;
- the greeting's end for machines: ending in a beep, reported as machine_end_beep, and how far from the beep's
  end (median, p95, worst); ending in silence, reported as machine_end_silence; the rest;
- CPU µs per 20 ms packet (mean over every packet fed, this machine).
The last line is one JSON object. --smoke: a handful of examples, what CI runs (figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import amd_set  # noqa: E402

from telephony.sip import amd  # noqa: E402

SAID = ("human", "unknown", "machine_start", "fax", "(none)")


def run(seeds: range) -> dict:
    confusion: Counter[tuple[str, str]] = Counter()
    decide_ms: dict[str, list[int]] = {"human": [], "machine": []}
    ends: Counter[tuple[str, str]] = Counter()
    beep_error_ms: list[float] = []
    silence_error_ms: list[float] = []
    spent = 0.0
    packets = 0
    wrong: list[str] = []
    for seed in seeds:
        ex = amd_set.example(seed)
        detector = amd.AmdDetector(wait_for_end=True)
        started = time.perf_counter()
        for payload in ex.payloads:
            detector.feed_payload(payload, ex.pt)
            packets += 1
            if detector.done:
                break
        spent += time.perf_counter() - started
        said = detector.decision.answered_by if detector.decision else "(none)"
        confusion[(ex.label, said)] += 1
        right = said == "machine_start" if ex.label == "machine" else said in ("human", "unknown")
        if not right:
            wrong.append(f"{seed} {ex.label} {said} {ex.text} ({detector.decision.reason if detector.decision else ''})")
        if detector.decision is not None and right and ex.label != "silent":
            decide_ms[ex.label].append(detector.decision.at_ms)
        if ex.label == "machine" and said == "machine_start":
            end = detector.end.answered_by if detector.end else "(none)"
            ends[(ex.end, end)] += 1
            if ex.end == "beep" and end == amd.END_BEEP:
                beep_error_ms.append(abs(detector.end.at_ms - ex.end_ms))
            if ex.end == "silence" and end == amd.END_SILENCE:
                silence_error_ms.append(detector.end.at_ms - ex.end_ms)
    total = sum(confusion.values())
    correct = total - len(wrong)
    people = sum(n for (truth, _), n in confusion.items() if truth != "machine")
    machines = total - people
    machine_right = confusion[("machine", "machine_start")]
    beeps = sum(n for (kind, _), n in ends.items() if kind == "beep")
    silences = sum(n for (kind, _), n in ends.items() if kind == "silence")
    return {
        "examples": total,
        "accuracy": correct / total if total else 0.0,
        "people_right": sum(n for (truth, said), n in confusion.items()
                            if truth != "machine" and said in ("human", "unknown")) / people if people else 0.0,
        "people": people,
        "machines": machines,
        "machines_found": machine_right / machines if machines else 0.0,
        "confusion": {f"{truth}->{said}": n for (truth, said), n in sorted(confusion.items())},
        "decide_ms": {kind: _summary(values) for kind, values in decide_ms.items()},
        "ends": {f"{kind}->{said}": n for (kind, said), n in sorted(ends.items())},
        "beeps_found": ends[("beep", amd.END_BEEP)] / beeps if beeps else 0.0,
        "beep_error_ms": _summary(beep_error_ms),
        "silences_found": ends[("silence", amd.END_SILENCE)] / silences if silences else 0.0,
        "silence_delay_ms": _summary(silence_error_ms),
        "us_per_packet": 1e6 * spent / packets if packets else 0.0,
        "wrong": wrong[:20],
    }


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p95": ordered[int(0.95 * (len(ordered) - 1))], "max": ordered[-1]}


def print_table(figures: dict) -> None:
    truths = ("human", "silent", "machine")
    print("| truth \\ said | " + " | ".join(SAID) + " |")
    print("|---|" + "---|" * len(SAID))
    for truth in truths:
        row = [str(figures["confusion"].get(f"{truth}->{said}", 0)) for said in SAID]
        print(f"| {truth} | " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=["held-out", "tune"], default="held-out")
    parser.add_argument("--count", type=int, default=0, help="only the first N seeds of the set")
    parser.add_argument("--smoke", action="store_true", help="a handful of examples (CI)")
    args = parser.parse_args()
    seeds = amd_set.HELD_OUT if args.set == "held-out" else amd_set.TUNE
    if args.smoke:
        seeds = range(seeds.start, seeds.start + 6)
    elif args.count:
        seeds = range(seeds.start, seeds.start + args.count)
    figures = run(seeds)
    print(f"{args.set} seeds {seeds.start}..{seeds.stop - 1}: {figures['examples']} examples")
    print(f"accuracy {figures['accuracy']:.1%}; machines found {figures['machines_found']:.1%} of "
          f"{figures['machines']}; people (and the silent) not taken for machines "
          f"{figures['people_right']:.1%} of {figures['people']}")
    print_table(figures)
    print(f"decision ms: people {figures['decide_ms'].get('human')}, machines {figures['decide_ms'].get('machine')}")
    print(f"greeting ends: {figures['ends']}; beeps found {figures['beeps_found']:.1%}, error ms "
          f"{figures['beep_error_ms']}; silences found {figures['silences_found']:.1%}, delay ms "
          f"{figures['silence_delay_ms']}")
    print(f"CPU {figures['us_per_packet']:.0f} µs per 20 ms packet")
    for line in figures["wrong"]:
        print("wrong:", line)
    print(json.dumps({k: v for k, v in figures.items() if k != "wrong"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
