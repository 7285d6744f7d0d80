"""The sandbox's async answering-machine detection (AsyncAmd) and the call updates that act on it."""

from __future__ import annotations

from tests.sandbox.test_twilio_sandbox import FROM, client_for, record_for, statuses
from tests.wait import wait_until

LONG_TWIML = '<Response><Pause length="100"/></Response>'  # still running when detection reports


def machine_sandbox(make_sandbox, **kwargs):
    kwargs = {"answer": 0, "busy": 0, "no_answer": 0, "machine": 1, "failed": 0, "time_scale": 0.01, **kwargs}
    return make_sandbox(**kwargs)


def create(sandbox, herald, to: str, twiml: str = LONG_TWIML, **kwargs):
    return client_for(sandbox).calls.create(
        to=to, from_=FROM, twiml=twiml, status_callback=herald.url("/status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        machine_detection="DetectMessageEnd", async_amd="true", async_amd_status_callback=herald.url("/amd"),
        **kwargs,
    )


def wait_for(herald, sid: str, path: str, timeout: float = 5.0) -> list[dict]:
    return wait_until(lambda: herald.hits_for(sid, path), f"a {path} callback for {sid}", timeout=timeout,
                      interval=0.01)


def test_async_detection_reports_the_machine_after_its_greeting_and_a_hangup_ends_it(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox)
    call = create(sandbox, herald, "+15551239001")

    (amd,) = wait_for(herald, call.sid, "/amd")
    assert amd["valid"] and amd["method"] == "POST"
    assert amd["params"]["AnsweredBy"] == "machine_end_beep" and amd["params"]["CallSid"] == call.sid
    assert int(amd["params"]["MachineDetectionDuration"]) > 0
    client_for(sandbox).calls(call.sid).update(status="completed")
    assert sandbox.wait_idle(5)

    rec = record_for(sandbox, call.sid)
    assert rec["async_amd"] and rec["status"] == "completed" and rec["answered_by"] == "machine_end_beep"
    assert rec["updates"] == [{"status": "completed", "call_status": "in-progress"}]
    hits = herald.hits_for(call.sid, "/status")
    assert statuses(hits) == ["initiated", "ringing", "in-progress", "completed"]
    assert "AnsweredBy" not in hits[2]["params"]  # answered before detection decided
    assert hits[3]["params"]["AnsweredBy"] == "machine_end_beep"
    assert rec["duration"] < 100  # hung up long before the pause would have ended


def test_a_voicemail_replaces_the_running_twiml_and_is_played(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox)
    call = create(sandbox, herald, "+15551239002")

    wait_for(herald, call.sid, "/amd")
    voicemail = herald.url("/audio.wav") + "?voicemail=1"
    client_for(sandbox).calls(call.sid).update(twiml=f"<Response><Play>{voicemail}</Play><Hangup/></Response>")
    assert sandbox.wait_idle(5)

    rec = record_for(sandbox, call.sid)
    assert rec["status"] == "completed"
    (update,) = rec["updates"]
    assert voicemail in update["twiml"]
    (played,) = rec["audio"]
    assert played["url"] == voicemail and played["ok"]
    assert "TwiML replaced through the REST API" in rec["notes"]


def test_a_person_is_reported_as_human(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox, answer=1, machine=0)
    call = create(sandbox, herald, "+15551239003")

    (amd,) = wait_for(herald, call.sid, "/amd")
    assert amd["params"]["AnsweredBy"] == "human"
    client_for(sandbox).calls(call.sid).update(status="completed")
    assert sandbox.wait_idle(5)
    assert record_for(sandbox, call.sid)["answered_by"] == "human"


def test_a_call_that_ends_before_detection_reports_nothing(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox)
    call = create(sandbox, herald, "+15551239004", twiml="<Response><Hangup/></Response>")

    assert sandbox.wait_idle(5)  # joins the detection thread too: no result can be posted after this
    assert herald.hits_for(call.sid, "/amd") == []
    assert record_for(sandbox, call.sid)["amd_callbacks"] == []


def test_duplicate_detection_callbacks_when_asked(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox, duplicate_callbacks=1.0)
    call = create(sandbox, herald, "+15551239005")

    wait_until(lambda: len(herald.hits_for(call.sid, "/amd")) == 2, "the detection result and its duplicate",
               timeout=5)
    client_for(sandbox).calls(call.sid).update(status="completed")
    assert sandbox.wait_idle(5)
    assert len(herald.hits_for(call.sid, "/amd")) == 2


def test_without_async_amd_detection_stays_synchronous(herald, make_sandbox):
    sandbox = machine_sandbox(make_sandbox, time_scale=0.001)
    call = client_for(sandbox).calls.create(
        to="+15551239006", from_=FROM, twiml="<Response><Hangup/></Response>", status_callback=herald.url("/status"),
        status_callback_event=["answered", "completed"], machine_detection="DetectMessageEnd",
    )
    assert sandbox.wait_idle(5)

    rec = record_for(sandbox, call.sid)
    assert not rec["async_amd"] and rec["amd_callbacks"] == []
    answered = herald.hits_for(call.sid, "/status")[0]
    assert answered["params"]["AnsweredBy"] == "machine_end_beep"
