"""What the sandbox says about how a call ended beyond its status: the final SIP response (SipResponseCode),
numbers the carrier does not know, and every AnsweredBy detection can report. Through the real twilio library."""

from __future__ import annotations

import random

import pytest

from sandbox.twilio import TwilioSandbox
from sandbox.twilio.callee import FAILURES, draw_plan
from tests.sandbox.test_sandbox_amd import create as create_with_async_amd
from tests.sandbox.test_sandbox_amd import wait_for
from tests.sandbox.test_twilio_sandbox import (
    FROM,
    SID,
    TOKEN,
    client_for,
    play_gather_twiml,
    record_for,
    statuses,
)

NONE = {"answer": 0, "busy": 0, "no_answer": 0, "machine": 0, "failed": 0}


def create(sandbox, herald, to: str):
    return client_for(sandbox).calls.create(
        to=to, from_=FROM, twiml=play_gather_twiml(herald), status_callback=herald.url("/status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"], timeout=10,
    )


def test_a_number_the_carrier_does_not_know_fails_with_sip_404(herald, make_sandbox):
    sandbox = make_sandbox(**NONE, invalid_number=1.0)
    call = create(sandbox, herald, "+15551231001")
    assert sandbox.wait_idle(10)

    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits) == ["initiated", "failed"] and all(h["valid"] for h in hits)
    final = hits[-1]["params"]
    assert (final["SipResponseCode"], final["ErrorCode"], final["CallDuration"]) == ("404", "13224", "0")
    assert "not valid" in final["ErrorMessage"]
    rec = record_for(sandbox, call.sid)
    assert (rec["outcome"], rec["status"], rec["sip_response_code"]) == ("invalid-number", "failed", 404)
    assert client_for(sandbox).calls(call.sid).fetch().status == "failed"


@pytest.mark.parametrize(
    ("outcome", "status", "sip"),
    [("answer", "completed", "200"), ("busy", "busy", "486"), ("no_answer", "no-answer", "487"),
     ("failed", "failed", "503")],
)
def test_every_final_callback_carries_the_sip_response(herald, make_sandbox, outcome, status, sip):
    sandbox = make_sandbox(**{**NONE, outcome: 1.0}, digits={"1": 1.0})
    call = create(sandbox, herald, "+15551231002")
    assert sandbox.wait_idle(10)

    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits)[-1] == status
    assert hits[-1]["params"]["SipResponseCode"] == sip
    assert all("SipResponseCode" not in h["params"] for h in hits[:-1])  # only the final callback says
    if outcome == "failed":
        assert hits[-1]["params"]["ErrorCode"] == "31005"  # a carrier failure, not a number the carrier refused


@pytest.mark.parametrize("answered_by", ["fax", "unknown", "machine_end_silence", "machine_end_other"])
def test_detection_reports_the_scripted_answered_by(herald, make_sandbox, answered_by):
    to = "+15551231003"
    sandbox = make_sandbox(answer=0, busy=0, no_answer=0, machine=1, failed=0, time_scale=0.01,
                           amd_script={to: answered_by})
    call = create_with_async_amd(sandbox, herald, to)

    (amd,) = wait_for(herald, call.sid, "/amd")
    assert amd["valid"] and amd["params"]["AnsweredBy"] == answered_by
    client_for(sandbox).calls(call.sid).update(status="completed")
    assert sandbox.wait_idle(5)
    assert record_for(sandbox, call.sid)["answered_by"] == answered_by
    assert herald.hits_for(call.sid, "/status")[-1]["params"]["AnsweredBy"] == answered_by


def test_an_unknown_answered_by_is_refused():
    with pytest.raises(ValueError, match="unknown AnsweredBy"):
        TwilioSandbox({SID: TOKEN}, amd_script={"+15551231004": "robot"})


def create_with_detection(sandbox, herald, to: str, mode: str):
    return client_for(sandbox).calls.create(
        to=to, from_=FROM, twiml=play_gather_twiml(herald), status_callback=herald.url("/status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"], timeout=10, machine_detection=mode,
    )


@pytest.mark.parametrize(
    ("drawn", "mode", "reported"),
    [("machine_end_silence", "DetectMessageEnd", "machine_end_silence"),
     ("machine_end_other", "DetectMessageEnd", "machine_end_other"),
     ("machine_end_silence", "Enable", "machine_start"),  # Enable stops at the start of the greeting
     ("fax", "DetectMessageEnd", "fax"), ("fax", "Enable", "fax")],
)
def test_machines_are_drawn_as_every_kind_detection_reports(herald, make_sandbox, drawn, mode, reported):
    sandbox = make_sandbox(**{**NONE, "machine": 1.0}, machine_answers={drawn: 1.0}, time_scale=0.001)
    call = create_with_detection(sandbox, herald, "+15551231005", mode)
    assert sandbox.wait_idle(10)
    answered = next(h for h in herald.hits_for(call.sid, "/status") if h["params"]["CallStatus"] == "in-progress")
    assert answered["params"]["AnsweredBy"] == reported
    assert record_for(sandbox, call.sid)["answered_by"] == reported


def test_detection_that_cannot_decide_says_unknown_for_people_and_machines(herald, make_sandbox):
    sandbox = make_sandbox(**{**NONE, "answer": 0.5, "machine": 0.5}, amd_unknown=1.0, time_scale=0.001)
    calls = [create_with_detection(sandbox, herald, f"+1555123101{i}", "DetectMessageEnd") for i in range(6)]
    assert sandbox.wait_idle(10)
    records = [record_for(sandbox, call.sid) for call in calls]
    assert {r["outcome"] for r in records} == {"answered", "machine"}  # both kinds of callee were drawn
    assert {r["answered_by"] for r in records} == {"unknown"}


def test_a_mix_draws_each_kind_and_a_sandbox_without_one_draws_as_before():
    weights = {"answered": 0.2, "machine": 0.8}
    mix = {"machine_end_beep": 0.4, "machine_end_silence": 0.3, "machine_end_other": 0.2, "fax": 0.1}
    drawn = [draw_plan(random.Random(f"7:+1555:{n}"), weights, 0.1, machine_answers=mix)["machine_answer"]
             for n in range(400)]
    assert set(drawn) == set(mix) and 0.3 < drawn.count("machine_end_beep") / 400 < 0.5
    # The new draws come after the old ones: a sandbox without a mix draws exactly the plan it always drew.
    plain = draw_plan(random.Random("7:+1555:0"), weights, 0.1)
    mixed = draw_plan(random.Random("7:+1555:0"), weights, 0.1, machine_answers=mix, amd_unknown=0.5)
    assert {k: mixed[k] for k in plain} == plain and set(mixed) - set(plain) == {"machine_answer", "amd_unknown"}


def test_a_machine_answer_twilio_does_not_report_is_refused():
    with pytest.raises(ValueError, match="unknown machine answers"):
        TwilioSandbox({SID: TOKEN}, machine_answers={"machine_start": 1.0})
    with pytest.raises(ValueError, match="amd_unknown"):
        TwilioSandbox({SID: TOKEN}, amd_unknown=1.5)


def test_the_command_line_takes_the_mix_and_names_a_wrong_kind(capsys):
    from sandbox.twilio.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["--account", f"{SID}:{TOKEN}", "--port", "0", "--machine-answer", "voicemail:0.5"])
    assert refused.value.code == 2 and "unknown machine answers ['voicemail']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["--account", f"{SID}:{TOKEN}", "--port", "0", "--failure", "not-found:0.5", "--failure", "lost:0.5"])
    assert refused.value.code == 2 and "unknown failures ['lost']" in capsys.readouterr().err


# What Herald makes of each failure the sandbox reports: the status, the error code it stores (its Twilio
# status_error), and whether campaigns.policy calls it an invalid number or counts it against the provider.
HERALD_READS = {
    "carrier-error": ("failed", "31005", False, True),
    "server-error": ("failed", "31005", False, True),
    "unavailable": ("no-answer", "", False, False),
    "timeout": ("no-answer", "", False, False),
    "declined": ("busy", "", False, False),
    "not-found": ("failed", "sip-404", True, False),
    "gone": ("failed", "sip-410", True, False),
    "incomplete": ("failed", "sip-484", True, False),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_each_kind_of_failure_reports_its_status_error_and_sip_response(herald, make_sandbox, kind):
    from campaigns.policy import is_invalid_number, is_provider_failure
    from telephony.providers.twilio import status_error

    status, code, sip = FAILURES[kind]
    sandbox = make_sandbox(**{**NONE, "failed": 1.0}, failures={kind: 1.0}, time_scale=0.001)
    call = create(sandbox, herald, "+15551231020")
    assert sandbox.wait_idle(10)

    hits = herald.hits_for(call.sid, "/status")
    assert all(hit["valid"] for hit in hits)
    final = hits[-1]["params"]
    assert (final["CallStatus"], final["SipResponseCode"], final.get("ErrorCode")) == (
        status, str(sip), str(code) if code else None,
    )
    assert statuses(hits)[:-1] == (["initiated", "ringing"] if status == "no-answer" else ["initiated"])
    assert final["CallDuration"] == "0"
    assert client_for(sandbox).calls(call.sid).fetch().status == status

    herald_status, herald_code, invalid, provider_failure = HERALD_READS[kind]
    stored, _message = status_error(final["CallStatus"], final)
    assert (final["CallStatus"], stored) == (herald_status, herald_code)
    assert is_invalid_number(stored) is invalid
    assert is_provider_failure(final["CallStatus"], stored) is provider_failure


def test_failures_are_drawn_after_every_other_draw_and_by_weight():
    weights = {"failed": 1.0}
    mix = {"not-found": 0.5, "unavailable": 0.3, "declined": 0.2}
    drawn = [draw_plan(random.Random(f"7:+1555:{n}"), weights, 0.1, failures=mix)["failure"] for n in range(500)]
    assert set(drawn) == set(mix) and 0.4 < drawn.count("not-found") / 500 < 0.6
    plain = draw_plan(random.Random("7:+1555:0"), weights, 0.1)
    mixed = draw_plan(random.Random("7:+1555:0"), weights, 0.1, failures=mix)
    assert {k: mixed[k] for k in plain} == plain and set(mixed) - set(plain) == {"failure"}


def test_an_unknown_failure_is_refused():
    with pytest.raises(ValueError, match="unknown failures"):
        TwilioSandbox({SID: TOKEN}, failures={"exploded": 1.0})
    with pytest.raises(ValueError, match="failure probabilities"):
        TwilioSandbox({SID: TOKEN}, failures={"gone": 0.0})
