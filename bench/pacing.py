"""Benchmark: four worker processes draw dialling grants for one account through telephony.pacing.

    .venv/bin/python bench/pacing.py                       # 60 s at 10 CPS, 4 workers, Redis
    .venv/bin/python bench/pacing.py --store file          # the embedded fallback (locked state file)
    .venv/bin/python bench/pacing.py --lease-recovery      # how soon a killed worker's channel comes back

Each worker is its own process and runs the limiter path place_call runs: `pacing.acquire_dial` (a channel
lease, then a slot, sleeping until it), then "dials" by reading its clock, then releases the channel. A
refused worker retries when told to, as a call sent back to the sweep would be claimed again. No database
and no carrier: the account is an unsaved TelephonyAccount under a fresh key, so runs never share state.

Redis: --redis, else HERALD_PACING_REDIS_URL, else CELERY_BROKER_URL when it is redis://, else
redis://127.0.0.1:6379/0. The bench only writes its own account's two keys (they expire or empty themselves).

Figures, from the dial times of all workers together: the most dials in any one-second window (any start,
not just whole seconds), the average rate over the run and its ratio to the target, and the smallest gap
between two dials. Targets: never more than --cps in any window; the average within 2% of --cps (slots are
SPACING_MARGIN = 1% further apart than 1/cps, so expect about 0.99). The last line is one JSON object.

--lease-recovery: a worker process takes the account's only channel as a SIP call does (a short lease of
--lease seconds that it renews every third of that), holds it for --hold seconds while this process keeps
asking for the channel (every ask must be refused: only the renewals keep the lease), and is killed with
SIGKILL; this process then asks every 5 ms until it gets the channel. Figures: the asks refused and granted
while the worker lived, and the time from the kill to the grant. Targets: none granted while it lived; the
channel back within one lease of the kill (it runs out at most --lease after the last renewal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _setup_django(redis_url: str, var_dir: str) -> None:
    os.environ["HERALD_PACING_REDIS_URL"] = redis_url  # "" = the file store under var_dir
    os.environ["HERALD_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _account(account_id: int, created_us: int, cps: float, channels: int):
    from telephony.models import TelephonyAccount

    return TelephonyAccount(
        pk=account_id,
        name=f"bench-pacing-{account_id}",
        created_at=EPOCH + timedelta(microseconds=created_us),
        calls_per_second=cps,
        max_concurrent_calls=channels,
    )


def worker(args: argparse.Namespace) -> None:
    """One process: wait for the start time on stdin, dial until the end, print dial times as JSON."""
    _setup_django(args.redis_url, args.var_dir)
    from telephony import pacing

    account = _account(args.account, args.created_us, args.cps, args.channels)
    pacing.in_use(account)  # connect (or create the state folder) before the clock starts
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    end = start + args.seconds
    time.sleep(max(0.0, start - time.time()))
    dials: list[float] = []
    refusals = 0
    n = 0
    while time.time() < end:
        n += 1
        lease = f"w{args.index}.{n}"
        granted = pacing.acquire_dial(account, lease, wait=pacing.DIAL_WAIT if args.wait is None else args.wait)
        if isinstance(granted, pacing.Refusal):
            refusals += 1
            time.sleep(min(granted.retry_in, max(0.0, end - time.time())))
            continue
        at = time.time()
        if at >= end:  # the slot came after the run ended: not counted, like a call after the bell
            pacing.release(account, lease)
            break
        dials.append(at)
        pacing.release(account, lease)
    print(json.dumps({"dials": dials, "refusals": refusals}), flush=True)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window [s, s + window): the worst one starts at an event."""
    times = sorted(times)
    best = j = 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        best = max(best, j - i)
    return best


def run(
    *, seconds: float, cps: float, workers: int, store: str, redis_url: str, wait: float | None, channels: int
) -> dict:
    """Start the worker processes, let them dial for `seconds`, return the figures."""
    var_dir = tempfile.mkdtemp(prefix="herald-bench-pacing-")
    now_us = time.time_ns() // 1000
    account_id = 900_000_000 + now_us % 100_000_000  # a key no real account has
    common = [
        "--account", str(account_id), "--created-us", str(now_us), "--cps", str(cps), "--seconds", str(seconds),
        "--channels", str(channels), "--var-dir", var_dir, "--redis-url", redis_url if store == "redis" else "",
        *(["--wait", str(wait)] if wait is not None else []),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--index", str(i), *common],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a worker did not start (said {line!r}, exit code {proc.poll()})")
        start = time.time() + 0.5
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"a worker failed with exit code {proc.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    dials = sorted(t for r in results for t in r["dials"])
    gaps = [b - a for a, b in zip(dials, dials[1:], strict=False)]
    average = len(dials) / seconds
    worst = max_in_window(dials)
    return {
        "store": store,
        "workers": workers,
        "seconds": seconds,
        "target_cps": cps,
        "dials": len(dials),
        "dials_per_worker": [len(r["dials"]) for r in results],
        "refusals": sum(r["refusals"] for r in results),
        "max_in_any_1s_window": worst,
        "average_cps": round(average, 3),
        "ratio_to_target": round(average / cps, 4),
        "min_gap_ms": round(min(gaps) * 1000, 2) if gaps else None,
        "never_exceeds": worst <= cps,
        "average_within_2pct": abs(average / cps - 1) <= 0.02,
    }


def holder(args: argparse.Namespace) -> None:
    """One process holding the account's only channel like a SIP call, renewing its lease, until it is killed."""
    _setup_django(args.redis_url, args.var_dir)
    from telephony import pacing

    pacing.LEASE_SECONDS = args.lease  # the renewer renews every third of it
    account = _account(args.account, args.created_us, 1000.0, 1)
    grant = pacing.acquire_dial(account, "holder.1", keep_alive_for=3600)
    print("held" if isinstance(grant, pacing.Grant) else f"not held: {grant}", flush=True)
    threading.Event().wait()  # a call in progress, until the bench kills this process


def lease_recovery(*, store: str, redis_url: str, lease: float, hold: float) -> dict:
    """Kill a process that holds the only channel; return how soon the channel came back, and what was granted."""
    var_dir = tempfile.mkdtemp(prefix="herald-bench-pacing-")
    _setup_django(redis_url if store == "redis" else "", var_dir)
    from telephony import pacing

    now_us = time.time_ns() // 1000
    account_id = 900_000_000 + now_us % 100_000_000  # a key no real account has
    account = _account(account_id, now_us, 1000.0, 1)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--holder", "--account", str(account_id), "--created-us", str(now_us),
         "--lease", str(lease), "--var-dir", var_dir, "--redis-url", redis_url if store == "redis" else ""],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "held":
            raise RuntimeError(f"the holding worker did not take the channel (said {line!r}, exit {proc.poll()})")
        refused = granted = 0
        until = time.monotonic() + hold
        while time.monotonic() < until:
            if isinstance(pacing.acquire_dial(account, "bench.1", wait=0), pacing.Grant):
                granted += 1
                pacing.release(account, "bench.1")
            else:
                refused += 1
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        while not isinstance(pacing.acquire_dial(account, "bench.1", wait=0), pacing.Grant):
            if time.monotonic() - killed > 10 * lease + 10:
                raise RuntimeError("the killed worker's channel never came back")
            time.sleep(0.005)
        back = time.monotonic() - killed
        pacing.release(account, "bench.1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return {
        "mode": "lease_recovery",
        "store": store,
        "lease_seconds": lease,
        "held_seconds": hold,
        "refused_while_held": refused,
        "granted_while_held": granted,
        "back_after_kill_ms": round(back * 1000, 1),
        "within_one_lease": back <= lease,
    }


def _default_redis() -> str:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    return (
        os.environ.get("HERALD_PACING_REDIS_URL")
        or (broker if broker.startswith(("redis://", "rediss://")) else "")
        or "redis://127.0.0.1:6379/0"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cps", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--store", choices=["redis", "file"], default="redis")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--wait", type=float, default=None, help="longest sleep for a slot (pacing.DIAL_WAIT)")
    parser.add_argument("--channels", type=int, default=1000, help="channels of the account (not the limit here)")
    parser.add_argument("--lease-recovery", action="store_true", help="time a killed worker's channel coming back")
    parser.add_argument("--lease", type=float, default=1.0, help="--lease-recovery: the renewed lease, seconds")
    parser.add_argument("--hold", type=float, default=3.0, help="--lease-recovery: seconds the worker holds it")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--holder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--account", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--created-us", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.holder:
        holder(args)
        return
    redis_url = args.redis_url if args.redis_url is not None else _default_redis()
    where = redis_url if args.store == "redis" else "a locked state file"
    if args.lease_recovery:
        print(f"pacing lease recovery: lease {args.lease:g} s, held {args.hold:g} s, through {where}", flush=True)
        figures = lease_recovery(store=args.store, redis_url=redis_url, lease=args.lease, hold=args.hold)
        print(
            f"while the worker lived: {figures['refused_while_held']} asks refused, "
            f"{figures['granted_while_held']} granted (target 0); channel back {figures['back_after_kill_ms']} ms "
            f"after the kill (target <= one lease, {args.lease * 1000:g} ms)"
        )
        print(json.dumps(figures))
        return
    print(f"pacing: {args.workers} processes, {args.cps:g} CPS, {args.seconds:g} s, through {where}", flush=True)
    figures = run(
        seconds=args.seconds, cps=args.cps, workers=args.workers, store=args.store, redis_url=redis_url,
        wait=args.wait, channels=args.channels,
    )
    print(
        f"{figures['dials']} dials ({figures['dials_per_worker']} per worker, {figures['refusals']} refusals); "
        f"most in any 1 s window: {figures['max_in_any_1s_window']} (target <= {args.cps:g}); "
        f"average {figures['average_cps']:.3f}/s = {figures['ratio_to_target']:.2%} of target; "
        f"smallest gap {figures['min_gap_ms']} ms"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
