"""What the sandbox says about how a call ended beyond its status: the final SIP response (SipResponseCode),
numbers the carrier does not know, and every AnsweredBy detection can report. Through the real twilio library."""

from __future__ import annotations

import pytest

from sandbox.twilio import TwilioSandbox
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
