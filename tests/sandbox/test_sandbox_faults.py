"""The sandbox's call list (Twilio's filters and paging) and the faults it injects for tests of the client.

Exercised through the real ``twilio`` library, like Herald uses it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient

from sandbox.twilio import CREATE_FAULTS, TwilioSandbox
from tests.sandbox.test_twilio_sandbox import FROM, SID, TOKEN, client_for, play_gather_twiml

TO = "+15551230100"
EVENTS = ["initiated", "ringing", "answered", "completed"]


@pytest.fixture
def make_sandbox(make_sandbox):
    """The shared fixture, with no callee hanging up early unless a test asks: these tests count calls."""
    return lambda **kwargs: make_sandbox(**{"hangup_early": 0, **kwargs})


def create(client, herald, to: str = TO, from_: str = FROM):
    return client.calls.create(
        to=to, from_=from_, twiml=play_gather_twiml(herald), status_callback=herald.url("/status"),
        status_callback_event=EVENTS, machine_detection="Enable",
    )


# ----------------------------------------------------------------------------- the call list


def test_list_filters_by_to_from_and_start_date_like_twilio(make_sandbox, herald):
    sandbox = make_sandbox(busy=1.0, answer=0, no_answer=0, machine=0)
    client = client_for(sandbox)
    ours = [create(client, herald).sid for _ in range(2)]
    other_number = create(client, herald, to="+15551230101").sid
    other_caller = create(client, herald, from_="+15005550007").sid
    assert sandbox.wait_idle(10)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    assert [c.sid for c in client.calls.list(to=TO)] == [other_caller, *reversed(ours)]  # newest first
    assert [c.sid for c in client.calls.list(to=TO, from_=FROM)] == list(reversed(ours))
    assert {c.sid for c in client.calls.list(start_time_after=today)} == {*ours, other_number, other_caller}
    assert client.calls.list(to=TO, start_time_after=today + timedelta(days=1)) == []
    assert {c.sid for c in client.calls.list(to=TO, start_time=today)} == {*ours, other_caller}
    assert client.calls.list(to=TO, start_time_before=today - timedelta(days=1)) == []
    assert {c.sid for c in client.calls.list(to=TO, end_time_after=today)} == {*ours, other_caller}


def test_a_queued_call_has_no_start_time_and_no_start_time_filter_finds_it(make_sandbox, herald):
    sandbox = make_sandbox(queue_delay=2.0)
    client = client_for(sandbox)
    sid = create(client, herald).sid
    today = datetime.now(UTC).date()

    assert client.calls(sid).fetch().start_time is None
    assert client.calls.list(to=TO, start_time_after=today) == []
    assert [c.sid for c in client.calls.list(to=TO, status="queued")] == [sid]
    client.calls(sid).update(status="canceled")
    assert sandbox.wait_idle(10)
    assert client.calls(sid).fetch().status == "canceled"


def test_list_pages_follow_next_page_uri(make_sandbox, herald):
    sandbox = make_sandbox(busy=1.0, answer=0, no_answer=0, machine=0)
    client = client_for(sandbox)
    sids = [create(client, herald).sid for _ in range(5)]
    assert sandbox.wait_idle(10)

    page = client.calls.page(to=TO, page_size=2)
    assert len(list(page)) == 2 and page.next_page_url is not None
    assert [c.sid for c in client.calls.list(to=TO, page_size=2)] == list(reversed(sids))
    assert len(client.calls.list(to=TO, page_size=2, limit=3)) == 3


def test_a_bad_date_filter_is_a_400(make_sandbox):
    sandbox = make_sandbox()
    with pytest.raises(TwilioException, match="HTTP 400.*Invalid StartTime"):
        client_for(sandbox).calls.list(start_time_after="yesterday")


# ----------------------------------------------------------------------------- create faults


@pytest.mark.parametrize(
    ("fault", "status", "code", "created"),
    [
        ("500-after", 500, 20500, True),
        ("500-before", 500, 20500, False),
        ("20429", 429, 20429, False),
        ("21211", 400, 21211, False),
        ("13224", 400, 13224, False),
        ("20003", 401, 20003, False),
        ("21210", 400, 21210, False),
        ("21212", 400, 21212, False),
        ("21215", 400, 21215, False),
    ],
)
def test_scripted_create_faults_answer_like_twilio(make_sandbox, herald, fault, status, code, created):
    sandbox = make_sandbox(busy=1.0, answer=0, no_answer=0, machine=0, create_fault_script={TO: [fault]})
    client = client_for(sandbox)

    with pytest.raises(TwilioRestException) as err:
        create(client, herald)
    assert (err.value.status, err.value.code) == (status, code)
    assert len(sandbox.calls()) == int(created)
    (request,) = sandbox.create_requests()
    assert request["fault"] == fault and (request["sid"] is not None) == created
    if created:
        assert sandbox.wait_idle(10)
        (call,) = sandbox.calls()
        assert call["create_fault"] == fault and call["status"] == "busy"
        assert [h["params"]["CallStatus"] for h in herald.hits_for(call["sid"], "/status")][-1] == "busy"

    second = create(client, herald)  # the script is used up: the next create goes through
    assert sandbox.calls()[-1]["sid"] == second.sid


def test_timeout_creates_the_call_and_never_answers(make_sandbox, herald):
    sandbox = make_sandbox(busy=1.0, answer=0, no_answer=0, machine=0, create_fault_script={TO: ["timeout"]},
                           create_hang_seconds=1.0)
    client = client_for(sandbox, http_client=TwilioHttpClient(timeout=0.3))
    with pytest.raises(requests.Timeout):
        create(client, herald)
    patient = client_for(sandbox, http_client=TwilioHttpClient(timeout=5))
    sandbox.create_fault_script[TO] = [None, "timeout"]
    with pytest.raises(requests.ConnectionError):  # held, then dropped without a response
        create(patient, herald)
    assert [c["create_fault"] for c in sandbox.calls()] == ["timeout", "timeout"]


def test_seeded_create_faults_are_reproducible_and_leave_callees_alone(make_sandbox, herald):
    faults = {"500-after": 0.2, "500-before": 0.2, "20429": 0.2}

    def run(**kwargs) -> tuple[list, list]:
        sandbox = make_sandbox(seed=5, busy=0.5, answer=0, no_answer=0.5, machine=0, **kwargs)
        client = client_for(sandbox)
        for i in range(12):
            try:
                create(client, herald, to=f"+1555123{i % 3:04d}")
            except TwilioRestException:
                pass
        assert sandbox.wait_idle(10)
        outcomes = [(c["to"], c["n"], c["outcome"]) for c in sandbox.calls()]
        return [r["fault"] for r in sandbox.create_requests()], outcomes

    faults_1, outcomes_1 = run(create_faults=faults)
    faults_2, outcomes_2 = run(create_faults=faults)
    _, clean = run()
    assert faults_1 == faults_2 and set(faults_1) - {None} and None in faults_1
    assert outcomes_1 == outcomes_2
    # The k-th call a number receives behaves the same with or without faults in between.
    assert set(outcomes_1) <= set(clean)


def test_unknown_faults_are_refused():
    with pytest.raises(ValueError, match="unknown create faults"):
        TwilioSandbox({SID: TOKEN}, create_faults={"teapot": 0.1})
    with pytest.raises(ValueError, match="unknown create faults"):
        TwilioSandbox({SID: TOKEN}, create_fault_script={TO: ["500"]})
    assert set(CREATE_FAULTS) == {
        "timeout", "500-after", "500-before", "20429", "21211", "13224", "20003", "20005", "21210", "21212", "21215"
    }


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("20003", "Authenticate"),
        ("20005", "Account not active"),
        ("21210", f"The source phone number provided, {FROM}, is not yet verified for your account."),
        ("21212", f"The phone number you are attempting to call from, {FROM}, is not valid."),
        ("21215", f"Account not authorized to call {TO}. Perhaps you need to enable some international permissions"),
    ],
)
def test_account_refusals_are_worded_like_twilio_and_create_nothing(make_sandbox, herald, fault, says):
    sandbox = make_sandbox(create_fault_script={TO: [fault, fault]})
    client = client_for(sandbox)

    for _ in range(2):  # refused each time the script says, with Twilio's error resource
        with pytest.raises(TwilioRestException) as err:
            create(client, herald)
        assert err.value.code == int(fault) and err.value.msg.startswith(f"Unable to create record: {says}")
    assert sandbox.calls() == [] and client.calls.list(to=TO) == []
    assert [(r["fault"], r["sid"]) for r in sandbox.create_requests()] == [(fault, None), (fault, None)]


# ----------------------------------------------------------------------------- callback delivery


def test_duplicate_callbacks_deliver_every_status_callback_and_gather_twice(make_sandbox, herald):
    sandbox = make_sandbox(answer=1, busy=0, no_answer=0, machine=0, digits={"1": 1.0}, duplicate_callbacks=1.0)
    sid = create(client_for(sandbox), herald).sid
    assert sandbox.wait_idle(10)

    statuses = [h["params"]["CallStatus"] for h in herald.hits_for(sid, "/status")]
    assert statuses == ["initiated", "initiated", "ringing", "ringing", "in-progress", "in-progress",
                        "completed", "completed"]
    assert all(h["valid"] for h in herald.hits_for(sid, "/status"))
    assert [h["params"]["Digits"] for h in herald.hits_for(sid, "/gather")] == ["1", "1"]
    assert len(sandbox.calls()[0]["callbacks"]) == 8


def test_reordered_callbacks_arrive_late_but_all_arrive(make_sandbox, herald):
    sandbox = make_sandbox(answer=1, busy=0, no_answer=0, machine=0, digits={}, reorder_callbacks=1.0)
    sid = create(client_for(sandbox), herald).sid
    assert sandbox.wait_idle(10)

    hits = herald.hits_for(sid, "/status")
    # Every callback but the final one is held back until a later one has gone: the final arrives first.
    assert [h["params"]["CallStatus"] for h in hits] == ["completed", "initiated", "ringing", "in-progress"]
    assert [h["params"]["SequenceNumber"] for h in hits] == ["3", "0", "1", "2"]
    assert all(h["valid"] for h in hits)


def test_partly_reordered_callbacks_are_a_permutation(make_sandbox, herald):
    sandbox = make_sandbox(seed=3, answer=0.5, busy=0.5, no_answer=0, machine=0, digits={},
                           reorder_callbacks=0.5, duplicate_callbacks=0.3)
    client = client_for(sandbox)
    sids = [create(client, herald, to=f"+1555124{i:04d}").sid for i in range(20)]
    assert sandbox.wait_idle(10)

    out_of_order = 0
    for sid in sids:
        sequence = [int(h["params"]["SequenceNumber"]) for h in herald.hits_for(sid, "/status")]
        assert set(Counter(sequence)) == set(range(max(sequence) + 1))
        assert all(count in (1, 2) for count in Counter(sequence).values())
        out_of_order += sequence != sorted(sequence)
    assert out_of_order > 0
