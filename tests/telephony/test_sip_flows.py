"""Call flows over SIP, end to end: place_call hands a flow call to the real SIP runtime and user agent, whose
callee is a sipp UAS pressing RFC 4733 keys (Debian's sip-tester captures) at set moments after the answer.

Each key goes through the flow and is recorded on the attempt (path, keys, final action) from the runtime's
database threads, so these tests commit (transaction=True). The user agent keeps keys typed ahead for the next
menu, so a key may land anywhere from the previous key to the end of its menu's 2 s wait: keys are pressed
1.2 s apart, well inside that. What
the callee heard is the user agent's list of clips started (cut short ones marked "!"); sipp's exit status is
its verdict on the SIP (REFER, NOTIFY, BYE), and its message trace shows the REFER we sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from campaigns import callflow
from campaigns.models import Call, CallAttempt, CallClip, CallFlow, DoNotCall, VariantClip
from synthesis.audio import Waveform, write_mulaw_wav
from synthesis.models import RenderedAudio
from telephony import outcomes
from telephony.actions import place_call
from telephony.models import TelephonyAccount
from telephony.providers import sip as sip_provider
from telephony.providers.sip import RUNTIME
from tests.sipp import PCAP_DIR, SCENARIOS, Sipp
from tests.telephony.conftest import CALLER_ID, delivery_flow
from tests.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
S = CallAttempt.Status
MESSAGE_SECONDS = 2.0  # long enough that a key pressed early always cuts it short
CLIP_SECONDS = 0.4
FIRST_KEY_MS = 500  # after sipp receives our ACK
KEY_GAP_MS = 1200
ENDED = {S.COMPLETED, S.BUSY, S.NO_ANSWER, S.FAILED}


@pytest.fixture
def account(db) -> TelephonyAccount:
    """Overrides the telephony conftest's Twilio account: the campaign's trunk is the test's sipp (port set then)."""
    account = TelephonyAccount.objects.create(
        name="Trunk", kind=TelephonyAccount.Kind.SIP, account_sid="", sip_host="127.0.0.1", sip_port=5060,
        sip_transport="udp", caller_ids=[CALLER_ID], calls_per_second=100, max_concurrent_calls=100,
    )
    return account


def tone_clip(name: str, media_root: Path, seconds: float) -> RenderedAudio:
    """A ready telephony clip of its own: a tone whose pitch comes from its name."""
    pitch = 300 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 900
    samples = 0.3 * np.sin(2 * np.pi * pitch * np.arange(int(8000 * seconds)) / 8000)
    key = hashlib.sha256(f"sip-flow {name}".encode()).hexdigest()
    relative = f"sip-flow-tests/{key}.wav"
    (media_root / relative).parent.mkdir(parents=True, exist_ok=True)
    write_mulaw_wav(media_root / relative, Waveform(samples, 8000))
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text=name, state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=seconds,
    )


@pytest.fixture
def flow(db) -> CallFlow:
    return delivery_flow(input_timeout=2)  # a 2 s wait for each key


@pytest.fixture
def flow_call(make_call, campaign, flow, settings, tmp_path) -> Iterator[Call]:
    """A claimed call of a campaign with the flow, every clip ready, each its own file."""
    settings.MEDIA_ROOT = tmp_path
    campaign.flow = flow
    campaign.save(update_fields=["flow"])
    message = tone_clip("message", tmp_path, MESSAGE_SECONDS)
    call = make_call(state=Call.State.DIALING, attempts_made=0, audio=message, claimed_at=timezone.now())
    for name in callflow.clip_names(flow.build()):
        if name in ("message", "2.1", "2.2"):
            continue
        VariantClip.objects.create(variant=call.variant, name=name, audio=tone_clip(name, tmp_path, CLIP_SECONDS))
    for name, said in (("2.1", "12月8日上午"), ("2.2", "12月8日下午")):
        CallClip.objects.create(call=call, name=name, audio=tone_clip(f"{name} {said}", tmp_path, CLIP_SECONDS),
                                said=said)
    yield call
    RUNTIME.drain(timeout=5)  # nothing may write to the database once the test's data is gone


@pytest.fixture
def results(monkeypatch) -> list:
    """The user agent's CallResult of each call placed (what it played, the keys it heard, the transfer)."""
    seen: list = []
    place = sip_provider.ua.place_call

    async def recording(spec, **kwargs):
        result = await place(spec, **kwargs)
        seen.append(result)
        return result

    monkeypatch.setattr("telephony.sip.ua.place_call", recording)
    return seen


def scenario(tmp_path: Path, name: str, keys: str, *, replace: tuple[str, str] | None = None) -> str:
    """`name` from scenarios/ with the callee pressing `keys`: the first FIRST_KEY_MS after the answer, then
    one every KEY_GAP_MS. No key twice: a capture replayed carries the same RTP timestamp, which RFC 4733 makes
    the same event (a retransmission), not a second press."""
    assert len(set(keys)) == len(keys), keys
    source = (SCENARIOS / name).read_text()
    marker = re.search(r"^ *<!-- KEYS:.*?-->\n", source, flags=re.M)
    assert marker, f"{name} has no KEYS comment"
    pcap = {"*": "star", "#": "pound"}
    presses = []
    for index, key in enumerate(keys):
        presses.append(f'  <pause milliseconds="{FIRST_KEY_MS if index == 0 else KEY_GAP_MS}"/>\n')
        presses.append(
            f'  <nop><action><exec play_pcap_audio="{PCAP_DIR}/dtmf_2833_{pcap.get(key, key)}.pcap"/></action></nop>\n'
        )
    source = source[: marker.start()] + "".join(presses) + source[marker.end():]
    if replace is not None:
        assert replace[0] in source
        source = source.replace(*replace)
    path = tmp_path / f"{Path(name).stem}-{keys or 'silent'}.xml"
    path.write_text(source)
    return str(path)  # absolute: Sipp joins it onto its scenario folder, which keeps an absolute path as is


def run(flow_call: Call, account: TelephonyAccount, results: list, scenario_path: str):
    """Place the call to a sipp callee running `scenario_path`; the attempt once ended, the call, the UA's
    result and sipp (stopped, its logs kept)."""
    with Sipp(scenario_path) as uas:
        account.sip_port = uas.port
        account.save(update_fields=["sip_port"])
        assert place_call(flow_call.pk) == "placed"
        wait_until(lambda: CallAttempt.objects.get(call=flow_call).status in ENDED, "the attempt to end")
        assert uas.wait(15) == 0, uas.report()
    wait_until(lambda: RUNTIME.in_flight() == 0, "the call's end to be written")
    flow_call.refresh_from_db()
    (result,) = results
    return CallAttempt.objects.get(call=flow_call), flow_call, result, uas


def heard(result) -> list[str]:
    """The clips the callee heard, by name, in order (whether or not a key cut them short)."""
    return [name.rstrip("!") for name in result.clips_played]


def received(uas: Sipp, method: str) -> list[str]:
    """The requests of `method` sipp received, in order, from its message trace."""
    requests = []
    for block in re.split(r"^-{20,} .*$", uas.messages, flags=re.M):
        head, _, message = block.strip("\n").partition("\n")
        message = message.lstrip("\n")
        if "message received" in head and message.startswith(method + " "):
            requests.append(message)
    return requests


def test_confirm(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "1"))
    assert result.clips_played == ["message!", "1"]  # the key cut the message short (barge-in)
    assert (attempt.path, attempt.action, attempt.digits) == (["message", "1"], "confirmed", "1")
    assert attempt.listened_to_end and attempt.status == S.COMPLETED and result.hangup_by == "local"
    assert (call.final_action, call.outcome, call.state) == ("confirmed", Call.Outcome.ANSWERED, Call.State.DONE)
    # The keys were recorded once, as the flow ran: no second "gather" at the call's end.
    assert [entry[0] for entry in attempt.timeline if entry[0].startswith(("gather", "flow"))] == ["flow:-:1:1"]


def test_reschedule_then_a_slot_records_the_slot_as_said(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "21"))
    assert heard(result) == ["message", "2", "2.1"]
    assert (attempt.path, attempt.action, attempt.action_detail) == (["message", "2", "2.1"], "rescheduled",
                                                                     "12月8日上午")
    assert attempt.digits == "21" and call.final_action == "rescheduled"


def test_opt_out_puts_the_number_on_the_list(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "9"))
    assert heard(result) == ["message", "9"]
    assert (attempt.action, attempt.digits) == ("opted_out", "9")
    assert DoNotCall.objects.filter(phone=call.phone, source="keypress").exists()
    assert (call.outcome, call.state) == (Call.Outcome.OPTED_OUT, Call.State.DONE)


def test_an_invalid_key_is_said_then_the_menu_again(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "71"))
    assert heard(result) == ["message", "invalid", "menu", "1"]
    assert (attempt.path, attempt.action, attempt.digits) == (["message", "message", "1"], "confirmed", "71")


def test_no_input_reprompts_then_goodbye(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", ""))
    assert result.clips_played == ["message", "no_input", "menu", "no_input", "goodbye"]
    assert result.played_to_end and result.digits == ""
    assert (attempt.path, attempt.action, attempt.action_detail) == (["message", "message", "message"], "no_input",
                                                                     "message")
    assert attempt.listened_to_end and attempt.digits == ""
    assert (call.outcome, call.final_action) == (Call.Outcome.ANSWERED, "no_input")


def test_repeat_replays_the_menu(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "*1"))
    assert heard(result) == ["message", "menu", "1"]
    assert (attempt.path, attempt.action, attempt.digits) == (["message", "*", "1"], "confirmed", "*1")


def test_hanging_up_in_a_menu_is_recorded_with_the_node(flow_call, account, results, tmp_path):
    """The callee pressed 2 and hung up while the slot menu waited: hung up in node 2."""
    source = (SCENARIOS / "remote_bye.xml").read_text()
    # remote_bye.xml hangs up 1 s after the answer; this callee presses 2 first, then hangs up in the submenu.
    assert source.count('<pause milliseconds="1000"/>') == 1
    path = tmp_path / "press_2_then_hang_up.xml"
    path.write_text(source.replace(
        '<pause milliseconds="1000"/>',
        f'<pause milliseconds="{FIRST_KEY_MS}"/>\n'
        f'  <nop><action><exec play_pcap_audio="{PCAP_DIR}/dtmf_2833_2.pcap"/></action></nop>\n'
        f'  <pause milliseconds="{KEY_GAP_MS}"/>',
    ))
    attempt, call, result, uas = run(flow_call, account, results, str(path))
    assert result.hangup_by == "remote" and heard(result) == ["message", "2"]
    assert (attempt.action, attempt.action_detail, attempt.path) == ("hung_up", "2", ["message", "2"])


def test_transfer_accepted_refers_the_callee_to_the_desk(flow_call, account, results, tmp_path):
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow_refer_accepted.xml", "0"))
    assert heard(result) == ["message", "0"] and result.transfer == "connected"
    (refer,) = received(uas, "REFER")
    assert re.search(rf"^Refer-To: <sip:\+864008001234@127\.0\.0\.1:{uas.port}>\r?$", refer, flags=re.M), refer
    assert re.search(r"^Referred-By: <sip:\+862161234567@127\.0\.0\.1>\r?$", refer, flags=re.M), refer
    assert re.search(r"^Contact: <sip:herald@127\.0\.0\.1:\d+>\r?$", refer, flags=re.M), refer
    assert (attempt.action, attempt.path) == ("transferred", ["message", "0"])
    assert call.final_action == "transferred"


@pytest.mark.parametrize("refusal", ["405 Method Not Allowed", "603 Decline"])
def test_transfer_refused_plays_the_number_to_call(flow_call, account, results, tmp_path, refusal):
    path = scenario(tmp_path, "flow_refer_refused.xml", "0", replace=("405 Method Not Allowed", refusal))
    attempt, call, result, uas = run(flow_call, account, results, path)
    assert result.clips_played[-2:] == ["0", "0:fallback"]  # both played to the end, then our BYE
    assert result.transfer == f"refused: the trunk answered the REFER with {refusal}"
    assert len(received(uas, "REFER")) == 1
    assert (attempt.action, call.final_action) == ("transfer_refused", "transfer_refused")


def test_the_flow_goes_on_when_the_database_cannot_record_a_key(flow_call, account, results, tmp_path, monkeypatch,
                                                               caplog):
    """A key the database refuses still gets its answer from the bare walk: the callee hears the slot menu."""
    real = outcomes.apply_flow_key

    def refuse_root(attempt_id, flow, menu, prompts, key, **kwargs):
        if menu == callflow.ROOT:
            raise RuntimeError("database is down")
        return real(attempt_id, flow, menu, prompts, key, **kwargs)

    monkeypatch.setattr(outcomes, "apply_flow_key", refuse_root)
    attempt, call, result, uas = run(flow_call, account, results, scenario(tmp_path, "flow.xml", "21"))
    assert heard(result) == ["message", "2", "2.1"]
    assert "cannot record key '2' in menu ''" in caplog.text
    # Only the slot key reached the attempt; its path starts from the node the walk was in.
    assert (attempt.action, attempt.action_detail, attempt.digits) == ("rescheduled", "12月8日上午", "1")


def test_a_flow_call_missing_a_clip_is_not_dialled(flow_call, account):
    """A call whose flow could leave the callee in silence is never placed: the attempt fails before dialling, and says which clip."""
    VariantClip.objects.filter(variant=flow_call.variant, name="9").delete()
    assert place_call(flow_call.pk) == "failed"
    attempt = CallAttempt.objects.get(call=flow_call)
    assert attempt.status == S.FAILED and attempt.error_code == "audio"
    assert attempt.error_message == "cannot run the call flow: its clip '9' has no telephony audio file"
    assert RUNTIME.in_flight() == 0
