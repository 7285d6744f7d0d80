"""Trunk rules: a trunk that never answers is a failure that names it, talk time ends at the BYE, and the
caller presentation (From display name, P-Asserted-Identity, Privacy) reaches the trunk as RFC 3261/3325 say.

Calls go to a real sipp UAS (tests/telephony/sip/scenarios) with T1 shortened to 50 ms, so Timer B and
Timer F (64 x T1) end after 3.2 s instead of 32 s. What is asserted is what the timers decide (which outcome,
which error, what was sent), never how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import math
import re

import pytest

from campaigns.models import CallAttempt
from campaigns.policy import is_provider_failure
from telephony.providers.sip import ending_for
from telephony.sip.types import (
    ANSWERED,
    FAILED,
    CallSpec,
    display_name_problem,
    quote_display_name,
)
from telephony.sip.ua import asserted_identity_problem, place_call
from tests.sipp import Sipp
from tests.telephony.sip.test_sipp import CLIP, call, cli, received, sipp_ok, via_branch, write_wav

S = CallAttempt.Status
T1 = 0.05  # Timer B and Timer F: 64 x T1 = 3.2 s
CALLER = "+862161234567"


def header(message: str, name: str) -> list[str]:
    """The values of header `name` in one message of sipp's trace."""
    head = message.split("\n\n", 1)[0]
    return [value.strip() for value in re.findall(rf"^{re.escape(name)}:(.*)$", head, re.M | re.I)]


# --- a trunk that does not answer -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_trunk_that_never_answers_the_invite_fails_by_timer_b_and_names_the_trunk(transport):
    progress: list[str] = []
    with Sipp("silent_trunk.xml", transport=transport) as uas:
        # A ring timeout shorter than Timer B is the production case (30 s against 32 s): it must not turn a
        # dead trunk into a callee who did not answer.
        result = call(uas, progress, ring_timeout=0.5, t1=T1)
        sipp_ok(uas)
    assert (result.outcome, result.sip_code) == (FAILED, None), result
    assert result.error == (
        f"the trunk 127.0.0.1:{uas.port} ({transport}) did not answer the INVITE within 3.2 s (Timer B)"
    )
    assert progress == [] and result.answered_at is None
    invites = received(uas, "INVITE")
    assert len({via_branch(invite) for invite in invites}) == 1  # retransmissions (UDP) of one transaction
    assert received(uas, "CANCEL") == []  # RFC 3261 9.1: no CANCEL before a provisional response

    ending = ending_for(result)
    assert (ending.status, ending.permanent, ending.error_code) == (S.FAILED, False, "sip")
    assert f"127.0.0.1:{uas.port} ({transport}) did not answer the INVITE" in ending.error_message
    assert is_provider_failure(ending.status, ending.error_code)  # counted by the campaign's breaker


def test_a_trunk_that_sends_100_then_ignores_our_cancel_fails_too():
    progress: list[str] = []
    with Sipp("trying_then_silent.xml") as uas:
        result = call(uas, progress, ring_timeout=0.3, t1=T1)
        sipp_ok(uas)  # sipp got the CANCEL
    assert (result.outcome, result.sip_code) == (FAILED, None), result
    assert result.error == (
        f"the trunk 127.0.0.1:{uas.port} (udp) answered neither the INVITE nor our CANCEL within 3.2 s (Timer F)"
    )
    assert progress == ["trying"]  # the ring timeout ran from the 100, and only then did we CANCEL
    assert len(received(uas, "CANCEL")) >= 1
    ending = ending_for(result)
    assert (ending.status, ending.permanent) == (S.FAILED, False)
    assert is_provider_failure(ending.status, ending.error_code)


# --- talk time --------------------------------------------------------------------------------------------


def test_talk_time_ends_when_our_bye_is_sent_not_when_its_transaction_gives_up():
    with Sipp("bye_unanswered.xml") as uas:
        result = call(uas, t1=T1)
        sipp_ok(uas)  # sipp got our BYE (and never answered it)
    assert (result.outcome, result.hangup_by, result.error) == (ANSWERED, "local", ""), result
    assert result.answered_at is not None and result.hung_up_at is not None
    assert result.talk_seconds == round(result.hung_up_at - result.answered_at, 3)
    # The BYE went unanswered until Timer F; none of that wait is talk time.
    assert result.ended_at - result.hung_up_at >= 64 * T1
    assert result.talk_seconds <= round(result.ended_at - result.answered_at - 64 * T1, 3) + 0.001
    assert ending_for(result).duration == math.ceil(result.talk_seconds)
    bye, *retransmitted = received(uas, "BYE")
    assert all(via_branch(again) == via_branch(bye) for again in retransmitted)


def test_talk_time_ends_when_their_bye_arrives():
    with Sipp("remote_bye.xml") as uas:
        result = call(uas, audio=CLIP * 3)
        sipp_ok(uas)
    assert (result.outcome, result.hangup_by) == (ANSWERED, "remote"), result
    assert result.hung_up_at is not None and result.answered_at <= result.hung_up_at <= result.ended_at
    assert result.talk_seconds == round(result.hung_up_at - result.answered_at, 3)


# --- caller presentation ----------------------------------------------------------------------------------


def test_the_invite_presents_the_caller_to_the_trunk():
    with Sipp("presentation.xml") as uas:
        result = call(
            uas, from_uri=f"sip:{CALLER}@127.0.0.1", display_name="Herald Notices",
            asserted_identity=f"tel:{CALLER}", privacy="id",
        )
        sipp_ok(uas)  # the scenario's regexp checks on From, P-Asserted-Identity and Privacy passed
    assert result.outcome == ANSWERED, result
    (invite,) = received(uas, "INVITE")
    (from_value,) = header(invite, "From")
    assert from_value.startswith(f'"Herald Notices" <sip:{CALLER}@127.0.0.1>;tag=')
    assert header(invite, "P-Asserted-Identity") == [f'"Herald Notices" <tel:{CALLER}>']
    assert header(invite, "Privacy") == ["id"]
    # Every request of the call carries the same From; only the INVITE asserts an identity.
    for method in ("ACK", "BYE"):
        (request,) = received(uas, method)
        assert header(request, "From") == [from_value], method
        assert header(request, "P-Asserted-Identity") == [] and header(request, "Privacy") == [], method


def test_the_scenarios_presentation_checks_are_live():
    with Sipp("presentation.xml") as uas:
        call(uas, from_uri=f"sip:{CALLER}@127.0.0.1", display_name="Herald Notices", privacy="id")
        code = uas.wait(10)
    assert code != 0 and "P-Asserted-Identity" in uas.errors, uas.report()  # sipp's regexp check failed it


def test_a_display_name_with_quotes_backslashes_and_chinese_is_sent_quoted():
    name = 'Acme "Express" \\ 快递'
    with Sipp("answer.xml") as uas:
        result = call(uas, display_name=name, privacy="none")
        sipp_ok(uas)
    assert result.outcome == ANSWERED, result
    (invite,) = received(uas, "INVITE")
    (from_value,) = header(invite, "From")
    assert from_value.startswith('"Acme \\"Express\\" \\\\ 快递" <sip:herald@127.0.0.1>;tag='), from_value
    assert header(invite, "Privacy") == ["none"] and header(invite, "P-Asserted-Identity") == []


def test_no_presentation_headers_unless_configured():
    with Sipp("answer.xml") as uas:
        call(uas)
        sipp_ok(uas)
    (invite,) = received(uas, "INVITE")
    assert header(invite, "From")[0].startswith("<sip:herald@127.0.0.1>;tag=")
    assert header(invite, "P-Asserted-Identity") == [] and header(invite, "Privacy") == []


def test_the_cli_presents_the_caller(tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    with Sipp("presentation.xml") as uas:
        done = cli(
            "--to", uas.uri("alice"), "--audio", str(wav), "--digit-timeout", "0.3", "--from",
            f"sip:{CALLER}@127.0.0.1", "--display-name", "Herald Notices", "--asserted-identity", f"tel:{CALLER}",
            "--privacy", "id",
        )
        sipp_ok(uas)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == ANSWERED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--display-name", "Acme\r\nX-Evil: 1"), "control characters"),
        (("--display-name", "x" * 65), "at most 64 characters"),
        (("--asserted-identity", "mailto:ops@example.com"), "neither a SIP URI"),
        (("--asserted-identity", "tel:12345"), "needs +country code"),
        (("--privacy", "header"), "--privacy"),
    ],
)
def test_the_cli_refuses_a_bad_presentation(tmp_path, args, message):
    wav = write_wav(tmp_path / "clip.wav", seconds=0.1)
    done = cli("--to", "sip:alice@127.0.0.1:5060", "--audio", str(wav), *args)
    assert done.returncode == 2 and message in done.stderr, (done.returncode, done.stderr)
    assert done.stdout == ""


# --- quoting and validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("Herald", '"Herald"'),
        ("Acme Deliveries", '"Acme Deliveries"'),
        ('Say "hi"', '"Say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ('\\"', '"\\\\\\""'),  # a backslash then a quote: each escaped on its own
        ("快递通知", '"快递通知"'),
        ("<sip:evil@x>;tag=1", '"<sip:evil@x>;tag=1"'),  # inside the quotes it is only text
        ("", '""'),
    ],
)
def test_display_names_are_rfc_3261_quoted_strings(name, quoted):
    assert quote_display_name(name) == quoted
    # Read back by the quoted-string grammar (qdtext / quoted-pair), it is the name again.
    inner = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', quoted).group(1)
    assert re.sub(r"\\(.)", r"\1", inner) == name


@pytest.mark.parametrize("bad", ["a\r\nVia: x", "a\nb", "a\rb", "tab\there", "nul\x00", "del\x7f", "nel\x85",
                                 "line\u2028sep", "para\u2029sep"])
def test_control_characters_are_refused_in_display_names(bad):
    assert "control characters" in display_name_problem(bad)
    with pytest.raises(ValueError, match="control characters"):
        quote_display_name(bad)


def test_a_display_name_has_a_length_limit():
    assert display_name_problem("x" * 64) is None
    assert display_name_problem("x" * 65) == "A display name is at most 64 characters (65 given)."


@pytest.mark.parametrize(
    "uri", ["tel:+862161234567", "tel:+86-21-6123-4567", "tel:6123;phone-context=+8621", "sip:+862161234567@trunk.example",
            "sips:alice@[2001:db8::1]:5061", "sip:herald@10.0.0.1;user=phone"],
)
def test_asserted_identities_that_are_accepted(uri):
    assert asserted_identity_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("+862161234567", "neither a SIP URI"),
        ("mailto:ops@example.com", "neither a SIP URI"),
        ("tel:6123", "needs +country code or ;phone-context="),
        ("tel:+", "not a tel: URI"),
        ("tel:+86 21 6123", "no spaces"),
        ("<sip:a@b>", "no spaces, quotes or <>"),
        ("sip:a@b>;x=<y", "no spaces, quotes or <>"),
        ('"Name" sip:a@b', "no spaces, quotes or <>"),
        ("sip:a@b\r\nVia: x", "no spaces"),
    ],
)
def test_asserted_identities_that_are_refused(uri, message):
    assert message in asserted_identity_problem(uri)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"display_name": "a\nb"}, "control characters"),
        ({"asserted_identity": "mailto:x@y"}, "P-Asserted-Identity:"),
        ({"privacy": "header"}, "Privacy must be one of"),
    ],
)
def test_place_call_refuses_a_bad_presentation_before_sending_anything(fields, message):
    # Port 9 (discard) on loopback: nothing listens, and nothing is sent, since the spec is refused first.
    spec = CallSpec(to="sip:alice@127.0.0.1:9", audio=CLIP, **fields)
    with pytest.raises(ValueError, match=message):
        asyncio.run(place_call(spec))
