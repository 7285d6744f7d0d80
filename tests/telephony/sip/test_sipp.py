"""Herald's SIP user agent against a real sipp UAS, one scenario per behaviour.

Each test places a real call (`place_call`, or the CLI) to a sipp scenario in scenarios/ and checks both
sides: what the user agent reports, and sipp's exit status, which is 0 only when sipp saw every message its
scenario waits for (the ACKs, the CANCEL, valid credentials). With -rtp_echo sipp returns the audio we sent,
so the clip is compared byte for byte. How long the waits take (ring and digit timeouts, Retry-After, a
remote BYE) is measured by bench/sip_timers.py against the same scenarios, never asserted here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from telephony.sip.g711 import ulaw_to_alaw
from telephony.sip.types import (
    ANSWERED,
    BUSY,
    DECLINED,
    FAILED,
    INVALID_NUMBER,
    NO_ANSWER,
    CallResult,
    CallSpec,
)
from telephony.sip.ua import place_call
from tests.sipp import Sipp

ROOT = Path(__file__).resolve().parents[3]
CLIP_SECONDS = 1
CLIP = random.Random(711).randbytes(8000 * CLIP_SECONDS)  # μ-law; random bytes use every code of the table
USER, PASSWORD = "herald", "s3cret-digest"  # what auth_401.xml and auth_407.xml accept
CALL_LIMIT = 30.0  # seconds; a user agent that never returns fails the test instead of hanging the suite


def call(uas: Sipp, progress: list[str] | None = None, **spec) -> CallResult:
    """Place one call to the sipp UAS and return its result; short timeouts keep the suite fast."""
    defaults = dict(to=uas.uri("alice"), audio=CLIP, transport=uas.transport, ring_timeout=5.0, digit_timeout=0.3)

    async def record(event: str) -> None:
        progress.append(event)

    placing = place_call(CallSpec(**{**defaults, **spec}), on_progress=record if progress is not None else None)
    return asyncio.run(asyncio.wait_for(placing, CALL_LIMIT))


def echoed_clip(result: CallResult) -> bytes:
    """The echo of the clip: what sipp sent back, less the silence packets that followed it while we waited for
    keys (whole 160-byte packets of G.711 silence; a packet of the random clip is never all one byte)."""
    audio = result.received_audio
    while audio[-160:] in (b"\xff" * 160, b"\xd5" * 160):
        audio = audio[:-160]
    return audio


def sipp_ok(uas: Sipp) -> None:
    assert uas.wait(10) == 0, uas.report()


def received(uas: Sipp, method: str) -> list[str]:
    """The requests of `method` sipp received, in order, from its message trace."""
    requests = []
    for block in re.split(r"^-{20,} .*$", uas.messages, flags=re.M):
        head, _, message = block.strip("\n").partition("\n")
        message = message.lstrip("\n")
        if "message received" in head and message.startswith(method + " "):
            requests.append(message)
    return requests


# --- answered calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_answered_call_sends_the_clip_and_hangs_up(transport):
    progress: list[str] = []
    with Sipp("answer.xml", transport=transport, rtp_echo=True) as uas:
        result = call(uas, progress, capture_audio=True)
        sipp_ok(uas)
    assert (result.outcome, result.sip_code, result.codec, result.hangup_by) == (ANSWERED, 200, "PCMU", "local"), result
    assert progress == ["trying", "ringing", "answer"]
    assert result.played_to_end and result.error == ""
    assert (result.rtp_packets_sent, result.rtp_bytes_sent) == (50 * CLIP_SECONDS, len(CLIP))
    assert echoed_clip(result) == CLIP  # sipp echoed every 160-byte packet; in sequence order it is the clip
    # While it waited for a key after the clip, the line carried silence, not dead air; sipp echoed that too.
    assert result.silence_packets_sent > 0
    echo_of_silence = result.received_audio[len(CLIP):]  # the last few may come back after we hung up
    assert echo_of_silence == b"\xff" * len(echo_of_silence)
    assert 0 < len(echo_of_silence) // 160 <= result.silence_packets_sent
    assert result.setup_seconds is not None and result.talk_seconds is not None
    assert result.started_at <= result.answered_at <= result.ended_at


def test_pcma_answer_gets_the_clip_in_a_law():
    with Sipp("pcma.xml", rtp_echo=True) as uas:
        result = call(uas, capture_audio=True)
        sipp_ok(uas)
    assert (result.outcome, result.codec) == (ANSWERED, "PCMA"), result
    assert echoed_clip(result) == ulaw_to_alaw(CLIP)
    # And the transcode is right by G.711 itself, not only by the user agent's own table.
    for mu, a in zip(CLIP, echoed_clip(result), strict=True):
        expected, got = ulaw_sample(mu), alaw_sample(a)
        assert abs(got - expected) <= max(16, abs(expected) // 16), (hex(mu), hex(a), expected, got)


def ulaw_sample(code: int) -> int:
    """G.711 μ-law decoding to 16-bit linear, written from the recommendation's segment table."""
    code = ~code & 0xFF
    segment, step = (code >> 4) & 7, code & 15
    magnitude = (((2 * step + 33) << segment) - 33) << 2
    return -magnitude if code & 0x80 else magnitude


def alaw_sample(code: int) -> int:
    """G.711 A-law decoding to 16-bit linear (even bits inverted; sign bit set means positive)."""
    code ^= 0x55
    segment, step = (code >> 4) & 7, code & 15
    magnitude = (2 * step + 1 if segment == 0 else (2 * step + 33) << (segment - 1)) << 3
    return magnitude if code & 0x80 else -magnitude


def test_single_digit_is_collected_until_the_digit_timeout():
    with Sipp("digit.xml") as uas:
        result = call(uas, digit_timeout=0.5)
        sipp_ok(uas)
    assert (result.outcome, result.digits, result.hangup_by) == (ANSWERED, "#", "local"), result
    assert result.played_to_end  # max_digits=0: the digit does not cut the clip; we wait out digit_timeout
    assert result.rtp_packets_sent == 50 * CLIP_SECONDS  # the whole clip went out, the digit arriving meanwhile


def test_two_digits_hang_up_as_soon_as_max_digits_arrived():
    with Sipp("digits.xml") as uas:
        result = call(uas, max_digits=2, digit_timeout=10)
        sipp_ok(uas)
    assert (result.outcome, result.digits, result.hangup_by) == (ANSWERED, "12", "local"), result
    assert not result.played_to_end  # the second digit arrives ~0.75 s into the 1 s clip
    assert 0 < result.rtp_packets_sent < 50 * CLIP_SECONDS  # hung up at the second digit, the clip cut short


def test_early_media_before_the_answer_is_counted():
    progress: list[str] = []
    with Sipp("early_media.xml") as uas:
        result = call(uas, progress)
        sipp_ok(uas)
    assert (result.outcome, result.codec) == (ANSWERED, "PCMA"), result
    assert result.early_media_packets > 0  # 600 ms of sip-tester's A-law capture, in 30 ms packets
    assert progress == ["trying", "ringing", "answer"]


def test_remote_bye_in_the_middle_of_playback():
    with Sipp("remote_bye.xml") as uas:
        result = call(uas, audio=CLIP * 3)
        sipp_ok(uas)
    assert (result.outcome, result.hangup_by) == (ANSWERED, "remote"), result
    assert not result.played_to_end
    assert 0 < result.rtp_packets_sent < 150  # sipp hangs up 1 s after the ACK, well before the 3 s clip ends


def test_retransmitted_200_is_acked_again():
    # -nr: sipp would take the second ACK, identical to the first as RFC 3261 wants, for a retransmission.
    with Sipp("retransmit_200.xml", extra_args=["-nr"]) as uas:
        result = call(uas)
        sipp_ok(uas)
    assert (result.outcome, result.hangup_by) == (ANSWERED, "local"), result
    assert len(received(uas, "ACK")) == 2


def test_in_dialog_options_and_reinvite_are_answered():
    with Sipp("in_dialog.xml") as uas:
        result = call(uas, audio=CLIP * 2)
        sipp_ok(uas)  # sipp got 200 to its OPTIONS and 200 with SDP to its re-INVITE
    assert (result.outcome, result.hangup_by, result.codec) == (ANSWERED, "local", "PCMU"), result
    assert result.played_to_end  # the re-INVITE kept the media going


def test_fifty_concurrent_calls_all_get_their_own_audio_back():
    clips = [random.Random(i).randbytes(8000) for i in range(50)]

    async def place_all(uas: Sipp) -> list[CallResult]:
        spec = dict(to=uas.uri("alice"), digit_timeout=0.3, ring_timeout=10.0, capture_audio=True)
        calls = asyncio.gather(*(place_call(CallSpec(audio=clip, **spec)) for clip in clips))
        return await asyncio.wait_for(calls, CALL_LIMIT)

    with Sipp("answer.xml", calls=len(clips), rtp_echo=True) as uas:
        results = asyncio.run(place_all(uas))
        sipp_ok(uas)
    assert [r.outcome for r in results] == [ANSWERED] * len(clips), [r for r in results if r.outcome != ANSWERED]
    assert len({r.call_id for r in results}) == len(clips)
    for clip, result in zip(clips, results, strict=True):
        assert echoed_clip(result) == clip, (result.call_id, len(result.received_audio), result.send_error_ms)


# --- calls that are not answered --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code", "outcome"),
    [
        ("busy_486.xml", 486, BUSY),
        ("busy_everywhere_600.xml", 600, BUSY),
        ("decline_603.xml", 603, DECLINED),
        ("not_found_404.xml", 404, INVALID_NUMBER),
        ("unavailable_480.xml", 480, NO_ANSWER),
    ],
)
def test_rejected_call_is_acked_and_named(scenario, code, outcome):
    with Sipp(scenario) as uas:
        result = call(uas)
        sipp_ok(uas)  # sipp got the ACK for its final response
    assert (result.outcome, result.sip_code) == (outcome, code), result
    assert result.answered_at is None and result.rtp_packets_sent == 0 and result.hangup_by == ""


def test_ring_timeout_cancels_the_call():
    progress: list[str] = []
    with Sipp("no_answer.xml") as uas:
        result = call(uas, progress, ring_timeout=0.5)
        sipp_ok(uas)  # sipp got the CANCEL and the ACK for its 487
    assert (result.outcome, result.sip_code) == (NO_ANSWER, 487), result
    assert progress == ["trying", "ringing"]  # never answered: the CANCEL came from our ring timeout
    (invite,), (cancel,) = received(uas, "INVITE"), received(uas, "CANCEL")
    assert via_branch(cancel) == via_branch(invite)


def via_branch(message: str) -> str:
    return re.search(r"^Via:.*;branch=([^;\s]+)", message, re.M | re.I).group(1)


def test_503_with_short_retry_after_is_retried_once():
    with Sipp("retry_after_503.xml") as uas:
        result = call(uas)
        sipp_ok(uas)
    assert (result.outcome, result.sip_code, result.retry_after) == (ANSWERED, 200, None), result
    first, retry = received(uas, "INVITE")  # it waited out Retry-After: 1, then asked again
    assert call_id(first) == call_id(retry) and cseq(retry) == cseq(first) + 1


def test_503_with_long_retry_after_gives_up():
    with Sipp("retry_after_503_long.xml") as uas:
        result = call(uas)
        sipp_ok(uas)
    assert (result.outcome, result.sip_code, result.retry_after) == (FAILED, 503, 3600), result
    assert "503" in result.error
    assert len(received(uas, "INVITE")) == 1  # it gave up instead of waiting an hour to ask again


def call_id(message: str) -> str:
    return re.search(r"^Call-ID:\s*(\S+)", message, re.M | re.I).group(1)


def cseq(message: str) -> int:
    return int(re.search(r"^CSeq:\s*(\d+)", message, re.M | re.I).group(1))


# --- digest authentication --------------------------------------------------------------------------------


def test_401_challenge_is_answered_with_valid_credentials():
    with Sipp("auth_401.xml") as uas:
        result = call(uas, username=USER, password=PASSWORD)
        sipp_ok(uas)  # sipp's verifyauth accepted the Authorization header
    assert (result.outcome, result.sip_code) == (ANSWERED, 200), result
    first, retry = received(uas, "INVITE")
    assert call_id(first) == call_id(retry) and cseq(retry) == cseq(first) + 1


def test_401_with_a_wrong_password_fails_and_sipp_sees_it():
    with Sipp("auth_401.xml") as uas:
        result = call(uas, username=USER, password="not-" + PASSWORD)
        code = uas.wait(10)
    assert (result.outcome, result.sip_code) == (FAILED, 403), result
    assert code != 0 and "does not verify" in uas.errors, uas.report()  # the check in auth_401.xml is live


def test_407_challenge_is_answered_with_proxy_authorization():
    with Sipp("auth_407.xml") as uas:
        result = call(uas, username=USER, password=PASSWORD)
        sipp_ok(uas)  # the retried INVITE carried Proxy-Authorization with our realm and nonce
    assert (result.outcome, result.sip_code) == (ANSWERED, 200), result
    # sipp's verifyauth reads only Authorization; check the Proxy-Authorization digest here (RFC 2617, no qop).
    invite = received(uas, "INVITE")[1]
    request_uri = invite.split()[1]
    header = re.search(r"^Proxy-Authorization:\s*Digest\s+(.*)$", invite, re.M | re.I).group(1)
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header))
    assert fields["uri"] == request_uri
    ha1 = md5(f"{USER}:{fields['realm']}:{PASSWORD}")
    ha2 = md5(f"INVITE:{fields['uri']}")
    assert fields["response"] == md5(f"{ha1}:{fields['nonce']}:{ha2}"), header


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# --- the command line -------------------------------------------------------------------------------------


def write_wav(path: Path, seconds: float = 1.0) -> Path:
    """A 16-bit 8 kHz mono WAV of a 440 Hz tone (the CLI converts it to μ-law)."""
    import math

    frames = b"".join(
        int(8000 * math.sin(2 * math.pi * 440 * n / 8000)).to_bytes(2, "little", signed=True)
        for n in range(int(8000 * seconds))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "telephony.sip.call", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_cli_places_a_call_and_prints_json(tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    with Sipp("answer.xml") as uas:
        done = cli("--to", uas.uri("alice"), "--audio", str(wav), "--digit-timeout", "0.3", "--ring-timeout", "5")
        sipp_ok(uas)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["sip_code"], result["codec"], result["hangup_by"]) == (ANSWERED, 200, "PCMU", "local")
    assert result["rtp_packets_sent"] == 50 and result["played_to_end"] is True
    assert "received_audio" not in result


def test_cli_follows_a_redirect_and_reports_it(tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    with Sipp("redirect_302.xml") as uas:
        done = cli("--to", uas.uri("alice"), "--audio", str(wav), "--digit-timeout", "0.3", "--rtcp-interval", "0")
        sipp_ok(uas)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["redirects"], result["rtcp_reports_sent"]) == (
        ANSWERED, [uas.uri("forwarded")], 0,
    )  # fmt: skip


def test_cli_exits_0_on_a_busy_outcome(tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    with Sipp("busy_486.xml", transport="tcp") as uas:
        done = cli("--to", uas.uri("alice"), "--audio", str(wav), "--transport", "tcp")
        sipp_ok(uas)
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["outcome"], json.loads(done.stdout)["sip_code"]) == (BUSY, 486)


def test_cli_rejects_bad_arguments_with_exit_2(tmp_path):
    wav = write_wav(tmp_path / "clip.wav", seconds=0.1)
    not_wav = tmp_path / "notes.txt"
    not_wav.write_text("not audio")
    cases = [
        ((), "--to"),  # missing required arguments
        (("--to", "sip:alice@127.0.0.1:5060"), "--audio"),
        (("--to", "alice@127.0.0.1", "--audio", str(wav)), "not a SIP URI"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), "--transport", "smoke"), "--transport"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), "--ring-timeout", "soon"), "--ring-timeout"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(tmp_path / "missing.wav")), "missing.wav"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(not_wav)), "not a WAV"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), "--proxy", "proxy.example"), "not HOST:PORT"),
        (("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), "--max-hold", "-1"), "--max-hold"),
    ]
    for args, message in cases:
        done = cli(*args)
        assert done.returncode == 2, (args, done.returncode, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == "", args


def test_a_held_call_waits_with_the_clip_and_goes_on_in_the_codec_it_is_taken_back_in():
    """sipp holds the call (a=sendonly) 0.3 s into a 2 s clip, and takes it back a second later offering only
    PCMA. Nothing is sent into the held line; the clip resumes where it stopped, transcoded, and is played to
    the end once: the echo holds every packet once, μ-law up to the switch and A-law after it."""
    clip = CLIP * 2
    with Sipp("hold_then_pcma.xml", rtp_echo=True) as uas:
        result = call(uas, audio=clip, capture_audio=True)
        sipp_ok(uas)  # its checks: a=recvonly answered to the hold, PCMA and sendrecv to the take-back
    assert (result.outcome, result.hangup_by, result.codec) == (ANSWERED, "local", "PCMA"), result
    assert result.played_to_end and result.rtp_packets_sent == len(clip) // 160
    assert result.held_seconds > 0.5  # sipp held it for 1 s
    assert result.talk_seconds > len(clip) / 8000 + 0.5  # the clip waited out the hold
    echoed = echoed_clip(result)
    switches = [k for k in range(0, len(clip) + 1, 160) if echoed == clip[:k] + ulaw_to_alaw(clip[k:])]
    assert len(switches) == 1 and 0 < switches[0] < len(clip), len(echoed)


def test_a_call_held_longer_than_max_hold_is_hung_up_with_the_clip_unfinished():
    with Sipp("hold_forever.xml") as uas:
        result = call(uas, audio=CLIP * 3, max_hold=0.5)
        sipp_ok(uas)  # it got a=inactive back, then our BYE
    assert (result.outcome, result.hangup_by) == (ANSWERED, "local"), result
    assert not result.played_to_end and result.held_seconds >= 0.5
    assert result.rtp_packets_sent < 3 * 50  # nothing went into the held line


# --- redirects ----------------------------------------------------------------------------------------------


def test_a_302_to_another_user_on_the_trunk_is_followed():
    """The contact with the higher q is on this trunk; the other, on another host, is passed over."""
    with Sipp("redirect_302.xml", rtp_echo=True) as uas:
        result = call(uas, capture_audio=True)
        sipp_ok(uas)  # it checked that the second INVITE went to the redirect's URI, with our usual offer
    assert (result.outcome, result.sip_code, result.hangup_by) == (ANSWERED, 200, "local"), result
    assert result.redirects == [uas.uri("forwarded")]
    assert echoed_clip(result) == CLIP
    first, second = received(uas, "INVITE")
    assert first.startswith(f"INVITE {uas.uri('alice')} ") and second.startswith(f"INVITE {uas.uri('forwarded')} ")
    # The same call: one Call-ID and From tag, a new transaction and a higher CSeq.
    header = lambda msg, name: re.search(rf"^{name}:\s*(.+)$", msg, re.M | re.I).group(1).strip()  # noqa: E731
    assert header(first, "Call-ID") == header(second, "Call-ID") and header(first, "From") == header(second, "From")
    assert int(header(second, "CSeq").split()[0]) > int(header(first, "CSeq").split()[0])


@pytest.mark.parametrize(
    ("scenario", "why"),
    [("redirect_elsewhere_302.xml", "another host than the trunk"), ("redirect_loop_302.xml", "redirect loop")],
)
def test_a_302_that_would_leave_the_trunk_or_loop_is_not_followed(scenario, why):
    with Sipp(scenario) as uas:
        result = call(uas)
        sipp_ok(uas)  # it got its ACK
    assert (result.outcome, result.sip_code) == (FAILED, 302), result
    assert why in result.error and "302 Moved Temporarily" in result.error
    assert result.redirects == [] and len(received(uas, "INVITE")) == 1


def test_a_reliable_183_is_pracked_before_the_answer():
    progress: list[str] = []
    with Sipp("prack_183.xml", rtp_echo=True) as uas:
        result = call(uas, progress, capture_audio=True)
        sipp_ok(uas)  # it checked Supported: 100rel, and the PRACK's target and RAck
    assert (result.outcome, result.hangup_by) == (ANSWERED, "local"), result
    assert echoed_clip(result) == CLIP and progress == ["trying", "ringing", "answer"]
    (prack,) = received(uas, "PRACK")  # one PRACK, though the 183 may have come again before it arrived
    (invite,) = received(uas, "INVITE")
    invite_cseq = re.search(r"^CSeq:\s*(\d+) INVITE", invite, re.M | re.I).group(1)
    assert re.search(rf"^RAck:\s*1 {invite_cseq} INVITE\s*$", prack, re.M | re.I), prack


# --- session timers (RFC 4028) ------------------------------------------------------------------------------


def test_the_caller_refreshes_a_session_timer_it_was_made_refresher_of():
    with Sipp("session_timer_refresh.xml", rtp_echo=True) as uas:
        result = call(uas, audio=CLIP * 2, capture_audio=True)  # 2 s of message: the 2 s session needs a refresh
        sipp_ok(uas)  # it got an UPDATE with Session-Expires: 2;refresher=uac before the BYE
    assert (result.outcome, result.hangup_by) == (ANSWERED, "local") and result.played_to_end, result
    assert echoed_clip(result) == CLIP * 2


def test_a_session_the_trunk_lets_expire_is_hung_up():
    with Sipp("session_timer_expiry.xml") as uas:
        result = call(uas, audio=CLIP * 8)  # 8 s of message; the 3 s session runs out after 2 s (3 - 3/3)
        sipp_ok(uas)
    assert (result.outcome, result.hangup_by) == (ANSWERED, "local"), result
    assert not result.played_to_end and result.rtp_packets_sent < 8 * 50


def test_a_422_is_retried_with_the_session_interval_it_asks_for():
    with Sipp("session_422.xml") as uas:
        result = call(uas)
        sipp_ok(uas)  # the second INVITE carried Session-Expires: 1800 and Min-SE: 1800
    assert (result.outcome, result.sip_code) == (ANSWERED, 200), result
    assert len(received(uas, "INVITE")) == 2 and len(received(uas, "ACK")) == 2
