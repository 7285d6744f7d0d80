"""SIP user agent timers against a real sipp UAS: how long each of our waits really lasts (not a test).

    python bench/sip_timers.py [--repeat 5] [--digit-timeout 5] [--ring-timeout 2] [--transport udp] [--smoke]

The SIP tests (tests/telephony/sip/test_sipp.py, tests/e2e/test_sip_campaign.py) check what the user agent
does; this bench times it. Each row places --repeat calls, one after another, to the sipp scenario the tests
use for that behaviour (tests/telephony/sip/scenarios) with a 1 s clip, and reads what the user agent reports
(CallResult.setup_seconds: INVITE to final response; talk_seconds: answer to hang-up) against the target:

  answered       answer.xml, nobody presses a key: talk = clip + digit timeout (a listener to the end)
  digit_timeout  digit.xml, a key during the clip: talk = clip + digit timeout (the key does not end the wait)
  max_digits     digits.xml, max_digits=2: talk ends at sipp's second key, before the clip ends (no target)
  remote_bye     remote_bye.xml: sipp hangs up 1 s after its ACK: talk = 1 s
  ring_timeout   no_answer.xml: we CANCEL after the ring timeout: setup = ring timeout
  retry_after    retry_after_503.xml: a 503 with Retry-After: 1 is waited out: setup = 1 s
  give_up        retry_after_503_long.xml: Retry-After: 3600 is not waited: setup = 0

Printed per row: the median and the worst of the figure, how late the median is against the target, and the
median call setup (INVITE to final response). The last line is one JSON object. --smoke: one call per row with short timers, what CI runs (figures mean nothing).
sipp must be installed (apt-get install sip-tester), as for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony.sip.types import CallResult, CallSpec  # noqa: E402
from telephony.sip.ua import place_call  # noqa: E402
from tests.sipp import Sipp  # noqa: E402  (the tests' sipp runner: free ports, logs, always killed)

CLIP_SECONDS = 1.0
CLIP = random.Random(711).randbytes(int(8000 * CLIP_SECONDS))  # μ-law
CALL_LIMIT = 60.0  # seconds: a call that never returns stops the bench instead of hanging it


@dataclass(frozen=True)
class Row:
    name: str
    scenario: str
    figure: str  # "setup" or "talk"
    target: float | None  # seconds
    spec: dict


def rows(digit_timeout: float, ring_timeout: float) -> list[Row]:
    return [
        Row("answered", "answer.xml", "talk", CLIP_SECONDS + digit_timeout, {"digit_timeout": digit_timeout}),
        Row("digit_timeout", "digit.xml", "talk", CLIP_SECONDS + digit_timeout, {"digit_timeout": digit_timeout}),
        Row("max_digits", "digits.xml", "talk", None, {"max_digits": 2, "digit_timeout": 10.0}),
        Row("remote_bye", "remote_bye.xml", "talk", 1.0, {"audio": CLIP * 3}),
        Row("ring_timeout", "no_answer.xml", "setup", ring_timeout, {"ring_timeout": ring_timeout}),
        Row("retry_after", "retry_after_503.xml", "setup", 1.0, {}),
        Row("give_up", "retry_after_503_long.xml", "setup", 0.0, {}),
    ]


def place(uas: Sipp, spec: dict) -> CallResult:
    defaults = {"to": uas.uri("alice"), "audio": CLIP, "transport": uas.transport, "ring_timeout": 10.0,
                "digit_timeout": 0.3}
    return asyncio.run(asyncio.wait_for(place_call(CallSpec(**{**defaults, **spec})), CALL_LIMIT))


def measure(row: Row, repeat: int, transport: str) -> dict:
    """Place `repeat` calls for the row; return its figures in seconds (and sipp's verdict on the calls)."""
    values: list[float] = []
    setups: list[float] = []
    outcomes: list[str] = []
    with Sipp(row.scenario, transport=transport, calls=repeat, timeout=repeat * 30 + 30) as uas:
        for _ in range(repeat):
            result = place(uas, row.spec)
            outcomes.append(result.outcome)
            value = result.setup_seconds if row.figure == "setup" else result.talk_seconds
            if value is not None:
                values.append(value)
            if result.setup_seconds is not None:
                setups.append(result.setup_seconds)
        sipp_ok = uas.wait(30) == 0
    median = statistics.median(values) if values else None
    return {
        "scenario": row.scenario,
        "figure": f"{row.figure}_seconds",
        "target_s": row.target,
        "p50_s": round(median, 4) if median is not None else None,
        "max_s": round(max(values), 4) if values else None,
        "late_p50_ms": None if median is None or row.target is None else round((median - row.target) * 1000, 1),
        "setup_p50_s": round(statistics.median(setups), 4) if setups else None,  # INVITE to final response
        "calls": repeat,
        "outcomes": sorted(set(outcomes)),
        "sipp_ok": sipp_ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="calls per row")
    parser.add_argument("--digit-timeout", type=float, default=5.0, help="seconds (Herald's gather waits 5)")
    parser.add_argument("--ring-timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--smoke", action="store_true", help="one call per row, short timers: CI's check")
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.digit_timeout, args.ring_timeout = 1, 0.3, 0.5
    print(f"SIP timers over {args.transport}: {args.repeat} calls per row, {CLIP_SECONDS:g} s clip, "
          f"digit timeout {args.digit_timeout:g} s, ring timeout {args.ring_timeout:g} s", flush=True)
    figures: dict = {"repeat": args.repeat, "transport": args.transport, "smoke": args.smoke,
                     "clip_seconds": CLIP_SECONDS, "cpus": os.cpu_count(), "rows": {}}
    for row in rows(args.digit_timeout, args.ring_timeout):
        got = measure(row, args.repeat, args.transport)
        figures["rows"][row.name] = got
        target = "no target" if row.target is None else f"target {row.target:g} s, median {got['late_p50_ms']} ms late"
        print(f"{row.name:14} {got['figure']:14} median {got['p50_s']} s, worst {got['max_s']} s ({target}); "
              f"setup {got['setup_p50_s']} s; outcomes {got['outcomes']}, sipp {'ok' if got['sipp_ok'] else 'FAILED'}",
              flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
