"""SIP load: N concurrent calls from one process to a sipp UAS on 127.0.0.1 (not a test).

    python bench/sip_load.py [--calls 100] [--seconds 10] [--ramp 2] [--transport udp] [--echo]

Every call is answered by sipp, plays a clip of --seconds, waits briefly for digits and hangs up. Prints
calls placed / answered / completed, how many were lost (no final outcome), and the RTP send-time error:
how late each 20 ms packet left against its due time on the absolute clock (p50 / p99 / max over all
packets of all calls). The last line is one JSON object. Target on a 2-core machine: 100 concurrent calls,
p99 < 2 ms, no call lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony.sip.g711 import linear_to_ulaw  # noqa: E402
from telephony.sip.types import ANSWERED, CallSpec  # noqa: E402
from telephony.sip.ua import place_call  # noqa: E402


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tone(seconds: float) -> bytes:
    return bytes(linear_to_ulaw(int(6000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(int(seconds * 8000)))


def start_sipp(calls: int, transport: str, echo: bool, workdir: str) -> tuple[subprocess.Popen, int]:
    sipp = shutil.which("sipp")
    if sipp is None:
        sys.exit("sipp is not installed: apt-get install sip-tester")
    port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    args = [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", str(calls), "-nostdin",
            "-t", "u1" if transport == "udp" else "t1", "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM))]
    if echo:
        args.append("-rtp_echo")
    proc = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit(f"sipp exited at start with {proc.returncode}")
    return proc, port


async def run(args: argparse.Namespace, port: int) -> list:
    clip = tone(args.seconds)

    async def one(i: int):
        await asyncio.sleep(i * args.ramp / max(1, args.calls))  # spread call set-up over the ramp
        spec = CallSpec(to=f"sip:{1000 + i}@127.0.0.1:{port}", audio=clip, transport=args.transport,
                        digit_timeout=0.5, ring_timeout=30)
        return await place_call(spec)

    return await asyncio.gather(*(one(i) for i in range(args.calls)), return_exceptions=True)


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length per call")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which calls start")
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--echo", action="store_true", help="sipp echoes RTP back (more load on the machine)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_sipp(args.calls, args.transport, args.echo, workdir)
        try:
            started = time.monotonic()
            results = asyncio.run(run(args, port))
            wall = time.monotonic() - started
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    crashed = [r for r in results if isinstance(r, BaseException)]
    done = [r for r in results if not isinstance(r, BaseException)]
    answered = [r for r in done if r.outcome == ANSWERED]
    completed = [r for r in answered if r.played_to_end and r.hangup_by == "local"]
    lateness = sorted(x for r in done for x in r.send_lateness_ms)
    expected_packets = math.ceil(args.seconds * 8000 / 160)
    short = [r for r in answered if r.rtp_packets_sent != expected_packets]
    figures = {
        "calls": args.calls,
        "answered": len(answered),
        "completed": len(completed),
        "lost": args.calls - len(completed),
        "exceptions": len(crashed),
        "packets": len(lateness),
        "calls_short_of_packets": len(short),
        "send_error_p50_ms": round(quantile(lateness, 0.50), 3),
        "send_error_p99_ms": round(quantile(lateness, 0.99), 3),
        "send_error_max_ms": round(lateness[-1], 3) if lateness else None,
        "clip_seconds": args.seconds,
        "transport": args.transport,
        "rtp_echo": args.echo,
        "wall_seconds": round(wall, 2),
        "cpus": os.cpu_count(),
    }
    print(f"{args.calls} concurrent calls over {args.transport}, {args.seconds:g} s clip each, ramp {args.ramp:g} s")
    print(f"answered {len(answered)}, completed {len(completed)}, lost {figures['lost']}, exceptions {len(crashed)}")
    for exc in crashed[:3]:
        print(f"  exception: {exc!r}")
    print(f"RTP send error over {len(lateness)} packets: p50 {figures['send_error_p50_ms']} ms, "
          f"p99 {figures['send_error_p99_ms']} ms, max {figures['send_error_max_ms']} ms (target p99 < 2 ms)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
