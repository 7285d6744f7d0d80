"""What a simulated callee does: a call's outcome, timings and key presses, drawn from its random stream."""

from __future__ import annotations

import random

# "invalid-number": the carrier says the number does not exist (SIP 404). Listed before "machine", the fallback
# of a draw that rounding leaves past every weight.
OUTCOMES = ("answered", "busy", "no-answer", "failed", "invalid-number", "machine")

# Simulated timings, in seconds before time_scale is applied.
RING_SECONDS = (3.0, 15.0)
BUSY_SECONDS = (1.0, 4.0)
AMD_SECONDS = (1.5, 4.0)
GREETING_SECONDS = (5.0, 15.0)  # machine greeting, waited out with DetectMessageEnd
PRESS_DELAY_SECONDS = (0.5, 3.0)


def draw_plan(rng: random.Random, weights: dict[str, float], hangup_early: float) -> dict:
    """Every up-front draw, always in the same order (determinism)."""
    u = rng.random()
    outcome = OUTCOMES[-1]
    acc = 0.0
    for name in OUTCOMES:
        acc += weights.get(name, 0.0)
        if u < acc:
            outcome = name
            break
    ring = rng.uniform(*RING_SECONDS)
    busy = rng.uniform(*BUSY_SECONDS)
    amd = rng.uniform(*AMD_SECONDS)
    greeting = rng.uniform(*GREETING_SECONDS)
    early = rng.random() < hangup_early
    return {
        "outcome": outcome,
        "ring": ring,
        "busy": busy,
        "amd": amd,
        "greeting": greeting,
        "hangup_early": early,
    }


def draw_digit(rng: random.Random, digits: dict[str, float]) -> tuple[str | None, float]:
    """The key a human presses at a ``<Gather>`` (None for none) and after how many seconds."""
    u = rng.random()
    delay = rng.uniform(*PRESS_DELAY_SECONDS)
    acc = 0.0
    for key, p in digits.items():
        acc += p
        if u < acc:
            return key, delay
    return None, delay
