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


# What answering-machine detection reports for a machine with DetectMessageEnd (with Enable: machine_start, or fax).
MACHINE_ANSWERS = ("machine_end_beep", "machine_end_silence", "machine_end_other", "fax")


# What a failed call turns out to be, as carriers and Twilio report it, when the sandbox is asked to vary it
# (``failures``): the final status, Twilio's ErrorCode (None where Twilio reports the status alone) and the
# carrier's final SIP response (SipResponseCode). Without ``failures`` every failure is "carrier-error".
FAILURES = {
    "carrier-error": ("failed", 31005, 503),  # the carrier could not connect the call
    "server-error": ("failed", 31005, 500),
    "unavailable": ("no-answer", None, 480),  # switched off or out of coverage: nobody could answer
    "timeout": ("no-answer", None, 408),
    "declined": ("busy", None, 603),  # the callee rejected the call
    "not-found": ("failed", 13224, 404),  # the number does not exist
    "gone": ("failed", 13224, 410),  # the number no longer exists
    "incomplete": ("failed", 13224, 484),  # too few digits for the network
}


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    u, acc = rng.random(), 0.0
    for name, p in weights.items():
        acc += p
        if u < acc:
            return name
    return next(reversed(weights))  # rounding left the draw past every weight


def draw_plan(
    rng: random.Random,
    weights: dict[str, float],
    hangup_early: float,
    *,
    machine_answers: dict[str, float] | None = None,
    amd_unknown: float = 0.0,
    failures: dict[str, float] | None = None,
) -> dict:
    """Every up-front draw, always in the same order (determinism). The draws for a machine's kind, for
    detection that cannot decide and for what a failure is come last, and only when asked for: a sandbox
    without them draws what it always drew."""
    outcome = _pick(rng, {name: weights.get(name, 0.0) for name in OUTCOMES})
    ring = rng.uniform(*RING_SECONDS)
    busy = rng.uniform(*BUSY_SECONDS)
    amd = rng.uniform(*AMD_SECONDS)
    greeting = rng.uniform(*GREETING_SECONDS)
    early = rng.random() < hangup_early
    plan = {
        "outcome": outcome,
        "ring": ring,
        "busy": busy,
        "amd": amd,
        "greeting": greeting,
        "hangup_early": early,
    }
    if machine_answers:
        plan["machine_answer"] = _pick(rng, machine_answers)
    if amd_unknown:
        plan["amd_unknown"] = rng.random() < amd_unknown
    if failures:
        plan["failure"] = _pick(rng, failures)
    return plan


def detected(plan: dict, human: bool, mode: str) -> tuple[str, bool]:
    """What detection reports in `mode` ("Enable" or "DetectMessageEnd"), and whether it waited out a greeting
    to say so (a message end is only found after it)."""
    if plan.get("amd_unknown"):
        return "unknown", False
    if human:
        return "human", False
    kind = plan.get("machine_answer", "machine_end_beep")
    if kind == "fax":
        return "fax", False
    if mode == "DetectMessageEnd":
        return kind, True
    return "machine_start", False


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
