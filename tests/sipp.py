"""A real sipp UAS for SIP tests: one scenario on 127.0.0.1 with free ports, always killed on exit.

    with Sipp("answer.xml", rtp_echo=True) as uas:
        result = asyncio.run(place_call(CallSpec(to=uas.uri("alice"), audio=clip)))
        assert uas.wait(5) == 0, uas.report()

sipp's exit status is 0 only when every call ran its scenario to the end, so it doubles as the far end's
verdict on what the user agent sent (ACKs, CANCEL, credentials). Scenarios live in
tests/telephony/sip/scenarios/ and play the RTP captures Debian's sip-tester installs in
/usr/share/sip-tester (absolute paths: sipp warns about relative ones). Playing a capture needs a raw
socket (root or CAP_NET_RAW); sipp exits with "Can't create raw IPv4 socket" otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.wait import wait_until

SCENARIOS = Path(__file__).resolve().parent / "telephony" / "sip" / "scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")  # the scenarios name these captures
HOST = "127.0.0.1"
SIPP_MISSING = "sipp is not installed: apt-get install sip-tester (it provides /usr/bin/sipp and the DTMF captures)"
BIND_FAILED = 254  # sipp's exit status -2: a socket could not be bound (we lost a port race; try new ports)


class SippTimeout(AssertionError):
    """sipp did not finish its calls in time: the user agent never sent what the scenario waits for."""


def sipp_binary() -> str:
    """Path of sipp; fails the calling test (never skips) when it is missing."""
    path = shutil.which("sipp")
    if path is None:
        pytest.fail(SIPP_MISSING, pytrace=False)
    if not PCAP_DIR.is_dir():
        pytest.fail(f"{PCAP_DIR} is missing: {SIPP_MISSING}", pytrace=False)
    return path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_media_port() -> int:
    """A UDP port p with p + 2 also free: sipp binds both (audio and video echo) whatever the scenario."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as audio:
            audio.bind((HOST, 0))
            port = audio.getsockname()[1]
            if port + 2 > 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as video:
                try:
                    video.bind((HOST, port + 2))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free UDP port pair for sipp media")


def _bound_by(pid: int, port: int, table: str, state: str) -> bool:
    """Whether process `pid` owns a socket on `port` in /proc/<pid>/net/<table> (udp or tcp) in `state`."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state and fields[9] in inodes:
            return True
    return False


class Sipp:
    """One sipp UAS process running `scenario` for `calls` calls (`-m`); use as a context manager."""

    host = HOST

    def __init__(
        self,
        scenario: str,
        *,
        transport: str = "udp",
        calls: int = 1,
        rtp_echo: bool = False,
        keys: dict[str, str] | None = None,  # -key NAME VALUE: [NAME] in scenario messages (not status lines)
        extra_args: Iterable[str] = (),
        timeout: float = 60.0,
        log_dir: Path | None = None,
    ) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"sipp transport must be udp or tcp, not {transport!r}")
        self.scenario = SCENARIOS / scenario
        if not self.scenario.is_file():
            raise FileNotFoundError(self.scenario)
        self.transport = transport
        self.calls = calls
        self.rtp_echo = rtp_echo
        self.keys = dict(keys or {})
        self.extra_args = list(extra_args)
        self.timeout = timeout  # sipp's own global timeout: it quits (failing) even if we are killed
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.log_dir = log_dir
        self.port = 0
        self.media_port = 0
        self.command: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.killed = False  # we stopped sipp before it finished its calls (its exit status then means nothing)
        self._logs: dict[str, str] = {}  # read back when sipp stops, so reports work after a temp dir is gone

    # --- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> Sipp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, startup_timeout: float = 10.0) -> None:
        binary = sipp_binary()
        if self.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sipp-")
            self.log_dir = Path(self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self._spawn(binary)
            try:
                self._wait_listening(startup_timeout)
                return
            except _PortTaken:
                if attempt == 2:
                    raise RuntimeError(f"sipp could not bind its ports three times\n{self.report()}") from None
            except BaseException:
                self.stop()
                raise

    def _spawn(self, binary: str) -> None:
        self.port = free_port(socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM)
        self.media_port = free_media_port()
        self.command = [
            binary, "-sf", str(self.scenario),
            "-t", "u1" if self.transport == "udp" else "t1",
            "-i", HOST, "-p", str(self.port), "-bind_local",
            "-mi", HOST, "-mp", str(self.media_port),
            "-m", str(self.calls),
            "-nostdin",
            "-timeout", f"{self.timeout:g}s", "-timeout_error",
            "-trace_err", "-error_file", str(self._path("errors")),
            "-trace_msg", "-message_file", str(self._path("messages")),
            "-trace_calldebug", "-calldebug_file", str(self._path("calldebug")),
            "-trace_screen", "-screen_file", str(self._path("screen")),
        ]
        if self.rtp_echo:
            self.command.append("-rtp_echo")
        for key, value in self.keys.items():
            self.command += ["-key", key, value]
        self.command += self.extra_args
        with self._path("stderr").open("wb") as stderr:
            self.proc = subprocess.Popen(
                self.command, cwd=self.log_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )

    def _wait_listening(self, startup_timeout: float) -> None:
        assert self.proc is not None
        proc = self.proc
        table, state = ("udp", "07") if self.transport == "udp" else ("tcp", "0A")

        def listening() -> bool:
            code = proc.poll()
            if code == BIND_FAILED:
                raise _PortTaken
            if code is not None:
                raise RuntimeError(f"sipp exited with {code} while starting\n{self.report()}")
            # sipp binds its SIP socket first, then the media sockets: once the media port is ours, both are.
            return _bound_by(proc.pid, self.port, table, state) and _bound_by(proc.pid, self.media_port, "udp", "07")

        wait_until(listening, lambda: f"sipp to listen on {HOST}:{self.port}\n{self.report()}",
                   timeout=startup_timeout)

    def wait(self, timeout: float = 10.0) -> int:
        """sipp's exit status once its calls are done; kills it and raises SippTimeout if they are not."""
        assert self.proc is not None, "sipp was not started"
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise SippTimeout(f"sipp still had calls open after {timeout}s\n{self.report()}") from None
        self._read_logs()
        return code

    def stop(self) -> None:
        """Stop sipp (SIGINT, then SIGKILL) and reap it; safe to call twice."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.killed = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._read_logs()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- what the test needs ----------------------------------------------------------------------

    def uri(self, user: str = "callee") -> str:
        """The request URI of a callee on this sipp."""
        return f"sip:{user}@{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def messages(self) -> str:
        """sipp's message trace: every SIP message it sent and received, in order."""
        return self._log("messages")

    @property
    def errors(self) -> str:
        """Unexpected messages and scenario failures, as sipp reports them."""
        return self._log("errors") + self._log("stderr")

    def report(self, tail: int = 6000) -> str:
        """Everything useful for an assertion message: command, status, errors, the end of the message trace."""
        status = "stopped by the test before its calls were done" if self.killed else self.returncode
        parts = [f"sipp command: {' '.join(self.command)}", f"sipp exit status: {status}"]
        for name in ("stderr", "errors", "calldebug", "messages"):
            text = self._log(name)
            if name == "errors" and text.replace("The following events occurred:\n", "").strip() in self._log("stderr"):
                continue  # sipp writes the same events to stderr
            if text.strip():
                parts.append(f"--- sipp {name} (last {tail} chars) ---\n{text[-tail:]}")
        return "\n".join(parts)

    # --- internals ----------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{name}.log"

    def _log(self, name: str) -> str:
        if name in self._logs:
            return self._logs[name]
        try:
            return self._path(name).read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def _read_logs(self) -> None:
        if self.log_dir is not None and self._tmp is not None:
            for name in ("stderr", "errors", "calldebug", "messages", "screen"):
                self._logs[name] = self._log(name)


class _PortTaken(Exception):
    pass
