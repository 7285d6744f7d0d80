"""Place one SIP call from the command line and print what became of it as one JSON object.

    python -m telephony.sip.call --to sip:1001@127.0.0.1:5060 --audio clip.wav [--username U --password P]
        [--transport udp|tcp|tls] [--ring-timeout S] [--digit-timeout S] [--from sip:...]
        [--display-name NAME] [--asserted-identity sip:...|tel:+...] [--privacy id|none]
        [--srv [--dns-server IP[:PORT]]] [--backup HOST:PORT ...]
        [--external-ip IP | --stun-server HOST[:PORT]] [--rtp-ports FIRST-LAST] [--no-symmetric-rtp]
        [--local-port PORT]

Exit status 0 whenever the call reached an outcome (busy and failed included), 2 for bad arguments or an
audio file that cannot be played. The password may also come from the SIP_PASSWORD environment variable,
which keeps it out of the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys

from telephony.sip.srv import split_server
from telephony.sip.stun import split_server as stun_server
from telephony.sip.transport import TRANSPORTS
from telephony.sip.types import PRIVACY_VALUES, CallSpec, display_name_problem
from telephony.sip.ua import asserted_identity_problem, parse_uri, place_call
from telephony.sip.wav import ClipError, read_clip


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def _uri(text: str) -> str:
    try:
        parse_uri(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _display_name(text: str) -> str:
    problem = display_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _asserted_identity(text: str) -> str:
    problem = asserted_identity_problem(text) if text else None  # argparse passes the "" default through here
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _dns_server(text: str) -> str:
    try:
        split_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _ip(text: str) -> str:
    if not text:  # argparse passes the "" default through here
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def _stun(text: str) -> str:
    if not text:
        return text
    try:
        stun_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit() and 0 < int(first) < int(last) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range FIRST-LAST, e.g. 10000-20000")
    return int(first), int(last)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m telephony.sip.call", description=__doc__.split("\n")[0])
    parser.add_argument("--to", required=True, type=_uri, help="request URI, sip:USER@HOST[:PORT]")
    parser.add_argument("--audio", required=True, help="8 kHz mono WAV (μ-law, A-law or 16-bit PCM)")
    parser.add_argument("--from", dest="from_uri", default=None, type=_uri, help="From URI (default sip:herald@<local ip>)")
    parser.add_argument("--username", default="", help="digest user name")
    parser.add_argument("--password", default=None, help="digest password (or SIP_PASSWORD in the environment)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="udp")
    parser.add_argument("--ring-timeout", type=_positive, default=30.0, help="seconds before CANCEL (default 30)")
    parser.add_argument("--digit-timeout", type=_positive, default=5.0, help="seconds to wait for digits after the clip")
    parser.add_argument("--max-digits", type=int, default=0, help="hang up after this many digits (0: no limit)")
    parser.add_argument("--display-name", default="", type=_display_name, help="From display name (sent quoted)")
    parser.add_argument(
        "--asserted-identity", default="", type=_asserted_identity, help="P-Asserted-Identity: a sip: or tel: URI"
    )
    parser.add_argument(
        "--privacy", choices=[value for value in PRIVACY_VALUES if value], default="", help="Privacy header"
    )
    parser.add_argument("--proxy", default=None, type=_host_port, help="outbound proxy HOST:PORT (requests go there)")
    parser.add_argument(
        "--srv", action="store_true", help="look up the host's DNS SRV records and try the servers they name in order"
    )
    parser.add_argument(
        "--dns-server", dest="dns_servers", action="append", default=[], type=_dns_server,
        help="DNS server for --srv, IP or IP:PORT (repeatable; default: the system's resolver)",
    )
    parser.add_argument(
        "--backup", dest="backup_hops", action="append", default=[], type=_host_port,
        help="another server of the trunk, HOST:PORT, tried when the ones before cannot take the call (repeatable)",
    )
    parser.add_argument("--external-ip", default="", type=_ip, help="the NAT's public address, for Contact and SDP")
    parser.add_argument("--stun-server", default="", type=_stun, help="learn the public address from this STUN server")
    parser.add_argument("--rtp-ports", default=None, type=_port_range, help="RTP/RTCP port range, FIRST-LAST")
    parser.add_argument(
        "--local-port", type=int, default=0, choices=range(0, 65536), metavar="PORT",
        help="UDP: send and listen on this fixed local SIP port (default: a new one)",
    )
    parser.add_argument(
        "--no-symmetric-rtp", dest="symmetric_rtp", action="store_false",
        help="always send RTP to the SDP's address, even when the far end's comes from another",
    )
    parser.add_argument(
        "--max-hold", type=_positive, default=120.0, help="seconds the far end may hold the call before we hang up"
    )
    parser.add_argument(
        "--rtcp-interval", type=float, default=5.0, help="seconds between RTCP sender reports (0: no RTCP)"
    )
    parser.add_argument("--verbose", action="store_true", help="log SIP events to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 with a message on bad arguments
    try:
        audio = read_clip(args.audio)
    except ClipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    password = args.password if args.password is not None else os.environ.get("SIP_PASSWORD", "")
    spec = CallSpec(
        to=args.to,
        audio=audio,
        from_uri=args.from_uri or "",
        username=args.username,
        password=password,
        transport=args.transport,
        ring_timeout=args.ring_timeout,
        digit_timeout=args.digit_timeout,
        max_digits=max(0, args.max_digits),
        display_name=args.display_name,
        asserted_identity=args.asserted_identity,
        privacy=args.privacy,
        proxy=args.proxy,
        max_hold=args.max_hold,
        rtcp_interval=max(0.0, args.rtcp_interval),
        srv=args.srv,
        dns_servers=tuple(args.dns_servers),
        backup_hops=tuple(args.backup_hops),
        external_ip=args.external_ip,
        stun_server=args.stun_server,
        rtp_port_range=args.rtp_ports,
        symmetric_rtp=args.symmetric_rtp,
        local_port=args.local_port if args.transport == "udp" else 0,
    )
    result = asyncio.run(place_call(spec))
    print(json.dumps(result.as_json(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
