"""The call-flow walk (campaigns.callflow): every key leads somewhere, nothing strands a callee, and every call
ends within a bounded number of keys whatever the callee presses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import callflow
from campaigns.callflow import FlowError, build, check, clip_names, press, start

ROWS = [
    ("1", "confirm", "", []),
    ("2", "reschedule", "", [("1", "slot", ""), ("2", "slot", ""), ("*", "repeat", "")]),
    ("9", "opt_out", "", []),
    ("0", "transfer", "+864008001234", []),
    ("*", "repeat", "", []),
]


@pytest.fixture
def flow() -> callflow.Flow:
    return build(ROWS, max_prompts=3, has_menu_prompt=True, transfer_fallback=["0"])


def test_the_message_comes_first_then_a_key(flow):
    assert start(flow) == callflow.Step(play=("message",), gather="", prompts=1, node="")


def test_each_action(flow):
    assert press(flow, "", 1, "1").action == "confirmed"
    sub = press(flow, "", 1, "2")
    assert (sub.play, sub.gather, sub.prompts, sub.action) == (("2",), "2", 1, "")
    assert press(flow, "2", 1, "1").action == "rescheduled" and press(flow, "2", 1, "1").play == ("2.1",)
    opt = press(flow, "", 1, "9")
    assert opt.opt_out and opt.action == "opted_out" and opt.play == ("9",)
    transfer = press(flow, "", 1, "0")
    assert (transfer.transfer_to, transfer.action, transfer.play) == ("+864008001234", "transferred", ("0",))
    refused = callflow.transfer_refused(flow, "0")
    assert (refused.play, refused.action) == (("0:fallback",), "transfer_refused")


def test_invalid_and_silence_offer_the_menu_again_then_goodbye(flow):
    step = press(flow, "", 1, "7")
    assert (step.play, step.gather, step.prompts) == (("invalid", "menu"), "", 2)
    step = press(flow, "", 2, "")
    assert (step.play, step.gather, step.prompts) == (("no_input", "menu"), "", 3)
    last = press(flow, "", 3, None)
    assert (last.play, last.gather, last.action, last.detail) == (("no_input", "goodbye"), None, "no_input", "message")
    # In the slot menu, the menu said again is the slot menu's own prompt.
    assert press(flow, "2", 1, "5").play == ("invalid", "2")


def test_repeat_replays_and_counts_as_an_offer(flow):
    assert press(flow, "", 1, "*") == callflow.Step(play=("menu",), gather="", prompts=2, node="*")
    assert press(flow, "2", 2, "*").play == ("2",)
    assert press(flow, "", 3, "*").action == "no_input"
    # Without a menu prompt the whole message is said again.
    plain = build(ROWS, transfer_fallback=["0"])
    assert press(plain, "", 1, "*").play == ("message",)


def test_a_path_that_is_not_a_menu_is_an_error(flow):
    with pytest.raises(FlowError, match="not a menu"):
        press(flow, "1", 1, "1")
    with pytest.raises(FlowError, match="no node"):
        press(flow, "5", 1, "1")


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([], "has no keys"),
        ([("1", "slot", "", [])], "a slot belongs under a reschedule key"),
        ([("2", "reschedule", "", [])], "needs at least one slot"),
        ([("2", "reschedule", "", [("1", "confirm", "")])], "offers slots"),
        ([("0", "transfer", "", [])], "needs a number or SIP address"),
        ([("#", "confirm", "", [])], "not a key callees can press"),
        ([("1", "confirm", "", [("1", "slot", "")])], "only a reschedule key has keys under it"),
        ([("1", "dance", "", [])], "unknown action"),
    ],
)
def test_check_names_what_would_strand_a_callee(rows, problem):
    with pytest.raises(FlowError, match=problem):
        build(rows)


def test_check_bounds_offers():
    flow = callflow.Flow(root=callflow.Node(path="", action="menu", children={"1": callflow.Node("1", "confirm")}),
                         max_prompts=9)
    assert any("1 to 5 times" in p for p in check(flow))


def test_every_clip_a_call_may_play_is_named(flow):
    assert clip_names(flow) == ["message", "invalid", "no_input", "goodbye", "menu", "1", "2", "2.1", "2.2", "9", "0",
                                "0:fallback"]


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.sampled_from([*"0123456789*", ""]), max_size=40), prompts=st.integers(1, 5))
def test_any_key_sequence_ends_within_a_bound_and_plays_only_named_clips(keys, prompts):
    flow = build(ROWS, max_prompts=prompts, has_menu_prompt=bool(prompts % 2), transfer_fallback=["0"])
    names = set(clip_names(flow))
    step = start(flow)
    path: list[str] = []
    pressed = 0
    for key in keys:
        if step.gather is None:
            break
        step = press(flow, step.gather, step.prompts, key)
        path = callflow.record(path, step)
        pressed += 1
        assert set(step.play) <= names
        assert step.action in ("", *callflow.FINAL_ACTIONS)
        assert (step.gather is None) == bool(step.action)
    # Two menus, each offered at most max_prompts times: a call never needs more keys than that to end.
    assert pressed <= 2 * prompts
    assert path[:1] == (["message"] if pressed else [])
