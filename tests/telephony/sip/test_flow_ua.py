"""The user agent running a call flow against sipp, without Django: the flow is the bare walk
(campaigns.callflow, pure too), so these tests see exactly what the user agent asks and plays.

tests/telephony/test_sip_flows.py runs the same through the provider and the database; here are the transfer
endings that only the SIP side can produce (a NOTIFY with a failure sipfrag, the trunk hanging up after 202,
no answer to the REFER) and a sip: URI target.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from campaigns import callflow
from telephony.sip.types import ANSWERED, CallResult, CallSpec
from telephony.sip.ua import place_call
from tests.sipp import PCAP_DIR, SCENARIOS, Sipp

CALL_LIMIT = 30.0  # seconds; a user agent that never returns fails the test instead of hanging the suite
DESK = "sip:desk@desk.example"
FLOW = callflow.build(
    [("1", "confirm", "", []), ("0", "transfer", DESK, [])], max_prompts=2, transfer_fallback=["0"]
)
# Each clip its own bytes (0.2 s of one μ-law code), so a clip's length in packets says it played in full.
CLIPS = {name: bytes([0x10 + index]) * 1600 for index, name in enumerate(callflow.clip_names(FLOW))}


class Walk:
    """The bare walk as the user agent's FlowDriver, keeping what it was asked."""

    def __init__(self) -> None:
        self.presses: list[tuple[str, int, str]] = []
        self.transfers: list[tuple[str, bool]] = []

    def start(self) -> callflow.Step:
        return callflow.start(FLOW)

    async def press(self, menu: str, prompts: int, key: str) -> callflow.Step:
        self.presses.append((menu, prompts, key))
        return callflow.press(FLOW, menu, prompts, key)

    async def transfer_ended(self, node: str, connected: bool) -> callflow.Step | None:
        self.transfers.append((node, connected))
        return None if connected else callflow.transfer_refused(FLOW, node)


def press_0(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> str:
    """scenarios/`name` with the callee pressing 0 (transfer) 300 ms after the answer."""
    source = (SCENARIOS / name).read_text()
    marker = re.search(r"^ *<!-- KEYS:.*?-->\n", source, flags=re.M)
    assert marker, f"{name} has no KEYS comment"
    press = (f'  <pause milliseconds="300"/>\n'
             f'  <nop><action><exec play_pcap_audio="{PCAP_DIR}/dtmf_2833_0.pcap"/></action></nop>\n')
    source = source[: marker.start()] + press + source[marker.end():]
    for old, new in replacements:
        assert old in source, old
        source = source.replace(old, new)
    path = tmp_path / f"press-0-{name}"
    path.write_text(source)
    return str(path)


def call(uas: Sipp, walk: Walk, **spec) -> CallResult:
    defaults = dict(to=uas.uri("alice"), audio=CLIPS["message"], transport=uas.transport, ring_timeout=5.0,
                    digit_timeout=2.0, flow=walk, clips=CLIPS)
    return asyncio.run(asyncio.wait_for(place_call(CallSpec(**{**defaults, **spec})), CALL_LIMIT))


def refer_to(uas: Sipp) -> list[str]:
    return re.findall(r"^Refer-To: (.*?)\r?$", uas.messages, flags=re.M)


def test_a_notify_with_a_failure_sipfrag_is_a_refused_transfer(tmp_path):
    sipfrag = ("      SIP/2.0 200 OK\n    ]]>", "      SIP/2.0 486 Busy Here\n    ]]>")
    scenario = press_0(tmp_path, "flow_refer_accepted.xml", sipfrag)
    walk = Walk()
    with Sipp(scenario) as uas:
        result = call(uas, walk)
        assert uas.wait(10) == 0, uas.report()
    assert result.outcome == ANSWERED and result.hangup_by == "local"
    assert result.transfer == "refused: the transfer ended with SIP 486"
    assert walk.presses == [("", 1, "0")] and walk.transfers == [("0", False)]
    assert [name.rstrip("!") for name in result.clips_played] == ["message", "0", "0:fallback"]
    assert refer_to(uas) == [f"<{DESK}>"]  # a SIP address goes out as it is


def test_the_trunk_hanging_up_after_202_is_a_transfer_done(tmp_path):
    walk = Walk()
    with Sipp(press_0(tmp_path, "flow_refer_then_bye.xml")) as uas:
        result = call(uas, walk)
        assert uas.wait(10) == 0, uas.report()
    assert (result.transfer, result.hangup_by) == ("connected", "remote")
    assert walk.transfers == [("0", True)]
    assert result.clips_played[-1] == "0"  # no fallback


def test_a_refer_nobody_answers_is_a_refused_transfer(tmp_path):
    # The trunk never answers the REFER (over TCP, so nothing is retransmitted), then gets our BYE.
    scenario = press_0(tmp_path, "flow_refer_refused.xml")
    source = Path(scenario).read_text()
    refusal = re.search(r"  <send>\s*<!\[CDATA\[\s*SIP/2\.0 405.*?</send>\n", source, flags=re.S)
    assert refusal, "flow_refer_refused.xml changed: update this test"
    Path(scenario).write_text(source[: refusal.start()] + source[refusal.end():])
    walk = Walk()
    with Sipp(scenario, transport="tcp") as uas:
        result = call(uas, walk, refer_timeout=1.0)
        assert uas.wait(10) == 0, uas.report()
    assert result.transfer == "refused: no answer to REFER within 1 s"
    assert walk.transfers == [("0", False)] and result.clips_played[-1] == "0:fallback"
