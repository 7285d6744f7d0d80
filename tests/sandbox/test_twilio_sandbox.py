"""The Twilio sandbox, exercised through the real ``twilio`` library.

A small local HTTP server stands in for Herald: it serves WAV audio and TwiML,
and records every webhook together with the result of
``RequestValidator.validate`` on its ``X-Twilio-Signature``.
"""

from __future__ import annotations

import collections
import io
import math
import re
import signal
import struct
import subprocess
import sys
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
import soundfile
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from sandbox.twilio import WavError, wav_info
from tests.wait import wait_until

SID = "AC" + "1" * 32
TOKEN = "sandbox-test-token"
OTHER_SID = "AC" + "2" * 32
OTHER_TOKEN = "other-token"
FROM = "+15005550006"
AUDIO_SECONDS = 2.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def ulaw_wav(seconds: float = AUDIO_SECONDS) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000.0
    buf = io.BytesIO()
    soundfile.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format="WAV", subtype="ULAW")
    return buf.getvalue()


def pcm_wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return buf.getvalue()


# ------------------------------------------------------------------ fake Herald


class Herald:
    """Records signed webhooks; serves audio and TwiML."""

    def __init__(self, token: str = TOKEN):
        self.validator = RequestValidator(token)
        self.hits: list[dict] = []
        self.lock = threading.Lock()
        self.wav = ulaw_wav()
        self.gather_reply = "<Response><Say>Thank you, goodbye.</Say><Hangup/></Response>"
        self.twiml = ""  # set by tests using Url=
        herald = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", ctype="text/xml"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, params):
                url = f"http://127.0.0.1:{herald.port}{self.path}"
                valid = herald.validator.validate(url, params, self.headers.get("X-Twilio-Signature", ""))
                hit = {
                    "method": self.command,
                    "path": urlsplit(self.path).path,
                    "params": params,
                    "valid": valid,
                }
                with herald.lock:
                    herald.hits.append(hit)

            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/audio.wav":
                    self._reply(200, herald.wav, "audio/wav")
                elif path == "/missing.wav":
                    self._reply(404, b"gone", "text/plain")
                elif path == "/forbidden.wav":
                    self._reply(403, b"expired signature", "text/plain")
                elif path == "/notwav":
                    self._reply(200, b"<html>hello</html>", "text/html")
                elif path == "/status":  # StatusCallbackMethod=GET: params are in the URL
                    self._record({})
                    self._reply(200)
                else:
                    self._reply(404)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                params = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                self._record(params)
                path = urlsplit(self.path).path
                if path == "/gather":
                    self._reply(200, herald.gather_reply.encode())
                elif path == "/twiml":
                    self._reply(200, herald.twiml.encode())
                else:
                    self._reply(200)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def url(self, path: str) -> str:
        return self.base + path

    def hits_for(self, call_sid: str, path: str) -> list[dict]:
        with self.lock:
            return [h for h in self.hits if h["path"] == path and h["params"].get("CallSid") == call_sid]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def client_for(sandbox, sid=SID, token=TOKEN, **kwargs) -> Client:
    client = Client(sid, token, **kwargs)
    client.api.base_url = sandbox.url
    return client


def play_gather_twiml(herald, audio="/audio.wav", extra_gather="", after="") -> str:
    return (
        "<Response>"
        f'<Gather numDigits="1" timeout="5" action="{herald.url("/gather")}" method="POST"{extra_gather}>'
        f"<Play>{herald.url(audio)}</Play>"
        "</Gather>"
        f"{after}"
        "</Response>"
    )


def statuses(hits):
    return [h["params"]["CallStatus"] for h in hits]


def record_for(sandbox, sid):
    (rec,) = [c for c in sandbox.calls() if c["sid"] == sid]
    return rec


def human_sandbox(make_sandbox, **kwargs):
    kwargs = {"answer": 1, "busy": 0, "no_answer": 0, "machine": 0, "failed": 0, "hangup_early": 0, **kwargs}
    return make_sandbox(**kwargs)


# ------------------------------------------------------------------------- WAV


def test_wav_info_reads_ulaw_pcm_and_rejects_other_bytes():
    info = wav_info(ulaw_wav(1.5))
    assert (info["format_tag"], info["sample_rate"], info["channels"]) == (7, 8000, 1)
    assert info["duration"] == pytest.approx(1.5)

    # a hand-written minimal mu-law header (fmt chunk of 16 bytes, no fact chunk)
    body = b"\xff" * 4000
    header = b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
    header += (
        b"fmt " + struct.pack("<IHHIIHH", 16, 7, 1, 8000, 8000, 1, 8) + b"data" + struct.pack("<I", len(body))
    )
    assert wav_info(header + body)["duration"] == pytest.approx(0.5)

    assert wav_info(pcm_wav(0.25))["duration"] == pytest.approx(0.25)
    for bad in (b"", b"hello world, not audio", b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00"):
        with pytest.raises(WavError):
            wav_info(bad)


# ------------------------------------------------------------ a complete call


def test_answered_call_events_signatures_gather_and_fetch(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox, digits={"1": 1.0})
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230001",
        from_=FROM,
        twiml=play_gather_twiml(herald),
        status_callback=herald.url("/status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        machine_detection="Enable",
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert call.account_sid == SID
    assert call.to == "+15551230001" and call._from == FROM
    assert call.date_created is not None

    assert sandbox.wait_idle(10)
    callbacks = herald.hits_for(call.sid, "/status")
    assert statuses(callbacks) == ["initiated", "ringing", "in-progress", "completed"]
    assert [h["params"]["SequenceNumber"] for h in callbacks] == ["0", "1", "2", "3"]
    assert all(h["valid"] for h in callbacks)
    for hit in callbacks:
        p = hit["params"]
        assert p["AccountSid"] == SID and p["To"] == p["Called"] == "+15551230001"
        assert p["From"] == p["Caller"] == FROM
        assert p["Direction"] == "outbound-api" and p["ApiVersion"] == "2010-04-01"
        assert p["CallbackSource"] == "call-progress-events"
        assert re.match(r"\w{3}, \d{2} \w{3} \d{4} \d\d:\d\d:\d\d ", p["Timestamp"])
    assert "AnsweredBy" not in callbacks[0]["params"] and "AnsweredBy" not in callbacks[1]["params"]
    assert callbacks[2]["params"]["AnsweredBy"] == "human"
    final = callbacks[3]["params"]
    assert final["AnsweredBy"] == "human"
    assert int(final["CallDuration"]) >= math.ceil(AUDIO_SECONDS)
    assert final["Duration"] == "1"  # billed minutes

    (action,) = herald.hits_for(call.sid, "/gather")
    assert action["valid"]
    assert action["params"]["Digits"] == "1"
    assert action["params"]["CallStatus"] == "in-progress"
    assert action["params"]["msg"] == "Gather End"
    assert action["params"]["FinishedOnKey"] == ""

    fetched = client.calls(call.sid).fetch()
    assert fetched.status == "completed"
    assert fetched.answered_by == "human"
    assert fetched.duration == final["CallDuration"]
    assert fetched.start_time is not None and fetched.end_time is not None

    rec = record_for(sandbox, call.sid)
    assert rec["outcome"] == "answered"
    assert rec["status"] == "completed"
    assert rec["digits"] == "1"
    assert rec["listened_to_end"] is True
    assert rec["audio_fetched"] is True and rec["audio_status"] == 200
    assert rec["audio"][0]["format_tag"] == 7
    assert rec["duration"] == int(final["CallDuration"])
    assert [cb[1]["CallStatus"] for cb in rec["callbacks"]] == statuses(callbacks)
    assert all(cb[2] == 200 for cb in rec["callbacks"])

    listed = requests.get(sandbox.url + "/sandbox/calls.json", timeout=5).json()
    assert [c["sid"] for c in listed] == [call.sid]
    assert listed[0]["digits"] == "1" and listed[0]["callbacks"][0][0] == herald.url("/status")


def test_url_twiml_is_fetched_signed_and_default_events_are_completed_only(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox, digits={"2": 1.0})
    herald.twiml = play_gather_twiml(herald)
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230002",
        from_=FROM,
        url=herald.url("/twiml?campaign=7"),
        status_callback=herald.url("/status"),
    )
    assert sandbox.wait_idle(10)
    (fetch,) = herald.hits_for(call.sid, "/twiml")
    assert fetch["valid"] and fetch["params"]["CallStatus"] == "in-progress"
    assert "AnsweredBy" not in fetch["params"]  # no MachineDetection requested
    assert herald.hits_for(call.sid, "/gather")[0]["params"]["Digits"] == "2"
    (final,) = herald.hits_for(call.sid, "/status")
    assert final["valid"] and final["params"]["CallStatus"] == "completed"
    assert final["params"]["SequenceNumber"] == "0"
    assert "AnsweredBy" not in final["params"]


def test_status_callback_get_is_signed_over_the_url(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox)
    call = client_for(sandbox).calls.create(
        to="+15551230003",
        from_=FROM,
        twiml="<Response><Say>Hello there</Say></Response>",
        status_callback=herald.url("/status"),
        status_callback_method="GET",
    )
    assert sandbox.wait_idle(10)
    (rec,) = sandbox.calls()
    assert rec["callbacks"][0][2] == 200
    hits = [h for h in herald.hits if h["method"] == "GET" and h["path"] == "/status"]
    assert len(hits) == 1 and hits[0]["valid"]
    assert rec["sid"] == call.sid


# ------------------------------------------------------------------ outcomes


@pytest.mark.parametrize(
    "outcome, expected",
    [
        ("busy", ["initiated", "busy"]),
        ("no_answer", ["initiated", "ringing", "no-answer"]),
        ("failed", ["initiated", "failed"]),
    ],
)
def test_unanswered_outcomes(herald, make_sandbox, outcome, expected):
    weights = {"answer": 0, "busy": 0, "no_answer": 0, "machine": 0, "failed": 0, outcome: 1}
    sandbox = make_sandbox(**weights)
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230010",
        from_=FROM,
        twiml=play_gather_twiml(herald),
        status_callback=herald.url("/status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        timeout=10,
    )
    assert sandbox.wait_idle(10)
    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits) == expected and all(h["valid"] for h in hits)
    final = hits[-1]["params"]
    assert final["CallDuration"] == "0"
    assert ("ErrorCode" in final) == (outcome == "failed")
    assert client.calls(call.sid).fetch().status == expected[-1]
    rec = record_for(sandbox, call.sid)
    assert rec["audio_fetched"] is False and rec["digits"] is None and rec["listened_to_end"] is False
    assert herald.hits_for(call.sid, "/gather") == []


@pytest.mark.parametrize(
    "detection, answered_by", [("Enable", "machine_start"), ("DetectMessageEnd", "machine_end_beep")]
)
def test_machine_plays_message_without_digits(herald, make_sandbox, detection, answered_by):
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=1, digits={"1": 1.0})
    call = client_for(sandbox).calls.create(
        to="+15551230020",
        from_=FROM,
        twiml=play_gather_twiml(herald, extra_gather=' actionOnEmptyResult="true"'),
        status_callback=herald.url("/status"),
        status_callback_event=["answered", "completed"],
        machine_detection=detection,
    )
    assert sandbox.wait_idle(10)
    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits) == ["in-progress", "completed"]
    assert [h["params"]["AnsweredBy"] for h in hits] == [answered_by, answered_by]
    (action,) = herald.hits_for(call.sid, "/gather")  # actionOnEmptyResult="true"
    assert action["valid"] and action["params"]["Digits"] == ""
    rec = record_for(sandbox, call.sid)
    assert rec["outcome"] == "machine" and rec["digits"] is None
    assert rec["audio_fetched"] is True and rec["listened_to_end"] is True


def test_human_hanging_up_early(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox, hangup_early=1.0, digits={"1": 1.0})
    call = client_for(sandbox).calls.create(
        to="+15551230030", from_=FROM, twiml=play_gather_twiml(herald), status_callback=herald.url("/status")
    )
    assert sandbox.wait_idle(10)
    (final,) = herald.hits_for(call.sid, "/status")
    assert final["params"]["CallStatus"] == "completed"
    assert final["params"]["CallDuration"] == str(math.ceil(AUDIO_SECONDS / 2))
    assert herald.hits_for(call.sid, "/gather") == []
    rec = record_for(sandbox, call.sid)
    assert rec["listened_to_end"] is False and rec["hung_up_early"] is True and rec["digits"] is None


def test_gather_without_digits_falls_through_to_next_verb(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox, digits={})
    call = client_for(sandbox).calls.create(
        to="+15551230040",
        from_=FROM,
        twiml=play_gather_twiml(herald, after=f"<Play>{herald.url('/missing.wav')}</Play>"),
        status_callback=herald.url("/status"),
    )
    assert sandbox.wait_idle(10)
    assert herald.hits_for(call.sid, "/gather") == []
    # fell through to the next verb, whose audio is missing: the call fails
    (final,) = herald.hits_for(call.sid, "/status")
    assert final["params"]["CallStatus"] == "failed" and final["params"]["ErrorCode"] == "11200"
    assert record_for(sandbox, call.sid)["gathers"] == [""]


@pytest.mark.parametrize(
    "path, audio_status",
    [("/missing.wav", 404), ("/forbidden.wav", 403), ("/notwav", "invalid WAV: not a RIFF/WAVE file")],
)
def test_unplayable_audio_fails_the_call_with_11200(herald, make_sandbox, path, audio_status):
    sandbox = human_sandbox(make_sandbox)
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230050",
        from_=FROM,
        twiml=play_gather_twiml(herald, audio=path),
        status_callback=herald.url("/status"),
        status_callback_event=["answered", "completed"],
    )
    assert sandbox.wait_idle(10)
    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits) == ["in-progress", "failed"] and all(h["valid"] for h in hits)
    assert hits[-1]["params"]["ErrorCode"] == "11200"
    assert hits[-1]["params"]["ErrorMessage"].startswith("HTTP retrieval failure")
    assert client.calls(call.sid).fetch().status == "failed"
    rec = record_for(sandbox, call.sid)
    assert rec["audio_fetched"] is False and rec["audio_status"] == audio_status
    assert rec["error_code"] == 11200 and rec["listened_to_end"] is False


# ---------------------------------------------------------------------- REST


def test_bad_credentials_are_rejected_with_twilio_401(make_sandbox):
    sandbox = make_sandbox()
    with pytest.raises(TwilioRestException) as exc:
        client_for(sandbox, token="wrong").calls.create(to="+15551230060", from_=FROM, twiml="<Response/>")
    assert exc.value.status == 401 and exc.value.code == 20003
    # valid credentials of one account may not act on another account's URL
    with pytest.raises(TwilioRestException) as exc:
        client_for(sandbox, account_sid=OTHER_SID).calls.create(
            to="+15551230060", from_=FROM, twiml="<Response/>"
        )
    assert exc.value.status == 401
    raw = requests.get(f"{sandbox.url}/2010-04-01/Accounts/{SID}/Calls.json", timeout=5)
    assert raw.status_code == 401
    assert raw.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert sandbox.calls() == []


def test_validation_errors_and_unknown_call(make_sandbox):
    sandbox = make_sandbox()
    client = client_for(sandbox)
    with pytest.raises(TwilioRestException) as exc:
        client.calls.create(to="5551234", from_=FROM, twiml="<Response/>")
    assert exc.value.status == 400 and exc.value.code == 21211
    with pytest.raises(TwilioRestException) as exc:
        client.calls.create(to="+15551230070", from_="", twiml="<Response/>")
    assert exc.value.status == 400 and exc.value.code == 21213
    with pytest.raises(TwilioRestException) as exc:
        client.calls.create(to="+15551230070", from_=FROM)
    assert exc.value.status == 400 and exc.value.code == 21205
    with pytest.raises(TwilioRestException) as exc:
        client.calls("CA" + "0" * 32).fetch()
    assert exc.value.status == 404 and exc.value.code == 20404
    # the other account cannot see this account's calls
    call = client.calls.create(to="+15551230071", from_=FROM, twiml="<Response/>")
    with pytest.raises(TwilioRestException) as exc:
        client_for(sandbox, OTHER_SID, OTHER_TOKEN).calls(call.sid).fetch()
    assert exc.value.status == 404
    assert [c.sid for c in client.calls.list(to="+15551230071")] == [call.sid]


def test_cancel_a_ringing_call(herald, make_sandbox):
    sandbox = human_sandbox(make_sandbox, time_scale=1.0)  # rings for 3..15 real seconds
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230080", from_=FROM, twiml=play_gather_twiml(herald), status_callback=herald.url("/status")
    )
    wait_until(lambda: client.calls(call.sid).fetch().status == "ringing", "the call to ring", timeout=3,
               interval=0.05)
    assert client.calls(call.sid).update(status="canceled").status == "canceled"
    assert sandbox.wait_idle(5)
    (final,) = herald.hits_for(call.sid, "/status")
    assert final["params"]["CallStatus"] == "canceled" and final["params"]["CallDuration"] == "0"
    assert client.calls(call.sid).fetch().status == "canceled"
    assert record_for(sandbox, call.sid)["audio_fetched"] is False


def test_hang_up_an_in_progress_call(herald, make_sandbox):
    herald.wav = ulaw_wav(120.0)  # plays for 6 real seconds
    sandbox = human_sandbox(make_sandbox, time_scale=0.05)  # rings 0.15..0.75 s
    client = client_for(sandbox)
    call = client.calls.create(
        to="+15551230090",
        from_=FROM,
        twiml=f"<Response><Play>{herald.url('/audio.wav')}</Play><Say>Goodbye</Say></Response>",
        status_callback=herald.url("/status"),
    )
    wait_until(lambda: client.calls(call.sid).fetch().status == "in-progress", "the call to be answered", timeout=5)
    # status=canceled does nothing to an in-progress call; completed hangs it up
    assert client.calls(call.sid).update(status="canceled").status == "in-progress"
    assert client.calls(call.sid).update(status="completed").status == "completed"
    assert sandbox.wait_idle(5)
    (final,) = herald.hits_for(call.sid, "/status")
    assert final["params"]["CallStatus"] == "completed"
    assert 1 <= int(final["params"]["CallDuration"]) < 120
    rec = record_for(sandbox, call.sid)
    assert rec["listened_to_end"] is False and rec["audio_fetched"] is True


# ---------------------------------------------------- determinism, statistics


def run_batch(sandbox, herald, numbers):
    client = client_for(sandbox)
    twiml = play_gather_twiml(herald)
    sids = [
        client.calls.create(to=n, from_=FROM, twiml=twiml, machine_detection="Enable").sid for n in numbers
    ]
    assert sandbox.wait_idle(15)
    by_sid = {c["sid"]: c for c in sandbox.calls()}
    return [
        (
            by_sid[s]["to"],
            by_sid[s]["outcome"],
            by_sid[s]["digits"],
            by_sid[s]["hung_up_early"],
            by_sid[s]["duration"],
        )
        for s in sids
    ]


def test_same_seed_same_outcomes(herald, make_sandbox):
    numbers = [f"+1555123{i % 7:04d}" for i in range(30)]  # repeated numbers: n counts per number
    first = run_batch(make_sandbox(seed=7, time_scale=0), herald, numbers)
    again = run_batch(make_sandbox(seed=7, time_scale=0), herald, numbers)
    other = run_batch(make_sandbox(seed=8, time_scale=0), herald, numbers)
    assert first == again
    assert [r[1:] for r in first] != [r[1:] for r in other]
    # order of creation across different numbers does not matter
    shuffled = run_batch(make_sandbox(seed=7, time_scale=0), herald, sorted(numbers))
    assert collections.Counter(first) == collections.Counter(shuffled)


def test_probabilities_are_roughly_honoured(herald, make_sandbox):
    n = 200
    sandbox = make_sandbox(seed=3, time_scale=0)  # defaults: .6 answer .1 busy .2 no-answer .1 machine
    results = run_batch(sandbox, herald, [f"+1555200{i:04d}" for i in range(n)])
    outcomes = collections.Counter(r[1] for r in results)
    for name, p in {"answered": 0.6, "busy": 0.1, "no-answer": 0.2, "machine": 0.1, "failed": 0.0}.items():
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(outcomes[name] - n * p) <= 4 * sigma + 1, (name, outcomes)

    humans = [r for r in results if r[1] == "answered"]
    early = sum(r[3] for r in humans)
    assert abs(early - 0.1 * len(humans)) <= 4 * math.sqrt(len(humans) * 0.09) + 1
    listened = [r for r in humans if not r[3]]
    digits = collections.Counter(r[2] for r in listened)
    assert abs(digits["1"] - 0.5 * len(listened)) <= 4 * math.sqrt(len(listened) * 0.25) + 1
    assert set(digits) <= {"1", "2", "9", None}
    assert all(r[2] is None for r in results if r[1] != "answered")
    calls = sandbox.calls()
    assert all(c["answered_by"] == "machine_start" for c in calls if c["outcome"] == "machine")
    assert all(c["audio_fetched"] for c in calls if c["outcome"] in ("answered", "machine"))


# ------------------------------------------------------------------------ CLI


def test_cli_serves_until_sigterm(herald):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.twilio",
            "--port",
            "0",
            "--account",
            f"{SID}:{TOKEN}",
            "--seed",
            "1",
            "--answer",
            "1",
            "--busy",
            "0",
            "--no-answer",
            "0",
            "--machine",
            "0",
            "--digits",
            "9:1",
            "--hangup-early",
            "0",
            "--time-scale",
            "0",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"twilio sandbox listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        client = Client(SID, TOKEN)
        client.api.base_url = match[1]
        call = client.calls.create(to="+15551239999", from_=FROM, twiml=play_gather_twiml(herald))

        def finished() -> list[dict]:
            records = requests.get(match[1] + "/sandbox/calls.json", timeout=5).json()
            return records if records and records[0]["done"] else []

        records = wait_until(finished, "the call to finish", timeout=10, interval=0.05)
        assert records[0]["sid"] == call.sid and records[0]["digits"] == "9"
        assert herald.hits_for(call.sid, "/gather")[0]["valid"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0
