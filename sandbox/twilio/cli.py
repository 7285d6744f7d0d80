"""``python -m sandbox.twilio``: run the sandbox from the command line until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from sandbox.twilio.rest import CREATE_FAULTS
from sandbox.twilio.server import TwilioSandbox


def _parse_account(value: str) -> tuple[str, str]:
    sid, sep, token = value.partition(":")
    if not sep or not sid or not token:
        raise argparse.ArgumentTypeError(f"expected SID:TOKEN, got {value!r}")
    return sid, token


def _numbers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {}
    for sid, number in pairs:
        owned.setdefault(sid, []).append(number)
    return owned


def _parse_digits(value: str) -> dict[str, float]:
    digits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, prob = item.partition(":")
        try:
            digits[key] = float(prob)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected DIGIT:PROBABILITY, got {item!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected DIGIT:PROBABILITY, got {item!r}")
    return digits


def _parse_fault(value: str) -> tuple[str, float]:
    kind, sep, prob = value.rpartition(":")
    if sep and kind:
        try:
            return kind, float(prob)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"expected KIND:PROBABILITY, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    """Serve the sandbox until SIGTERM or SIGINT; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.twilio", description="Local Twilio-compatible voice sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--account",
        action="append",
        type=_parse_account,
        required=True,
        metavar="SID:TOKEN",
        help="an account the REST API accepts (repeatable)",
    )
    parser.add_argument(
        "--number",
        action="append",
        type=_parse_account,
        default=[],
        metavar="SID:+E164",
        help="a number the account owns, listed by IncomingPhoneNumbers (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--answer", type=float, default=0.6)
    parser.add_argument("--busy", type=float, default=0.1)
    parser.add_argument("--no-answer", type=float, default=0.2)
    parser.add_argument("--machine", type=float, default=0.1)
    parser.add_argument("--failed", type=float, default=0.0)
    parser.add_argument("--invalid-number", type=float, default=0.0, metavar="P",
                        help="weight of calls the carrier refuses with SIP 404 (status failed)")
    parser.add_argument(
        "--digits",
        type=_parse_digits,
        default={"1": 0.5, "2": 0.2, "9": 0.05},
        metavar="D:P,...",
        help='e.g. "1:0.5,2:0.2,9:0.05"; "" presses nothing',
    )
    parser.add_argument(
        "--machine-answer", type=_parse_fault, action="append", default=[], metavar="KIND:P",
        help="what a machine is found to be, repeatable: machine_end_beep, machine_end_silence, "
        "machine_end_other, fax (default: machine_end_beep)",
    )
    parser.add_argument(
        "--failure", type=_parse_fault, action="append", default=[], metavar="KIND:P",
        help="what a failed call turns out to be, repeatable: carrier-error, server-error, unavailable, timeout, "
        "declined, not-found, gone, incomplete (default: carrier-error)",
    )
    parser.add_argument("--amd-unknown", type=float, default=0.0, metavar="P",
                        help="probability that detection cannot decide (AnsweredBy=unknown)")
    parser.add_argument("--hangup-early", type=float, default=0.1)
    parser.add_argument("--transfer-answer", type=float, default=0.8, metavar="P")
    parser.add_argument("--menu-hangup", type=float, default=0.0, metavar="P",
                        help="probability a person hangs up at each <Gather> after the first")
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="non-loopback host the sandbox may contact (repeatable)",
    )
    parser.add_argument(
        "--create-fault",
        action="append",
        type=_parse_fault,
        default=[],
        metavar="KIND:P",
        help=f"probability of a create fault, one of {', '.join(CREATE_FAULTS)} (repeatable)",
    )
    parser.add_argument("--create-hang-seconds", type=float, default=30.0)
    parser.add_argument("--create-latency", type=float, default=0.0)
    parser.add_argument("--duplicate-callbacks", type=float, default=0.0, metavar="P")
    parser.add_argument("--reorder-callbacks", type=float, default=0.0, metavar="P")
    parser.add_argument("--queue-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        sandbox = TwilioSandbox(
            dict(args.account),
            seed=args.seed,
            answer=args.answer,
            busy=args.busy,
            no_answer=args.no_answer,
            machine=args.machine,
            failed=args.failed,
            invalid_number=args.invalid_number,
            digits=args.digits,
            hangup_early=args.hangup_early,
            transfer_answer=args.transfer_answer,
            menu_hangup=args.menu_hangup,
            time_scale=args.time_scale,
            host=args.host,
            port=args.port,
            allow_hosts=args.allow_host,
            create_faults=dict(args.create_fault),
            create_hang_seconds=args.create_hang_seconds,
            create_latency=args.create_latency,
            duplicate_callbacks=args.duplicate_callbacks,
            reorder_callbacks=args.reorder_callbacks,
            queue_delay=args.queue_delay,
            numbers=_numbers(args.number),
            machine_answers=dict(args.machine_answer),
            amd_unknown=args.amd_unknown,
            failures=dict(args.failure),
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sandbox.start()
    print(f"twilio sandbox listening on {sandbox.url}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        sandbox.stop()
    return 0
