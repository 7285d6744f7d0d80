"""Telephony fixtures: one running campaign with a call in progress, and signed Twilio webhooks."""

from __future__ import annotations

import hashlib
import io
import secrets
import socket
import wave
from collections.abc import Callable, Iterator
from datetime import time, timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from twilio.request_validator import RequestValidator

from campaigns.demo import daytime_zone
from campaigns.models import (
    Call,
    CallAttempt,
    CallFlow,
    Campaign,
    Contact,
    ContactList,
    FlowNode,
    ScriptTemplate,
    Variant,
)
from sandbox.twilio import TwilioSandbox
from synthesis.models import RenderedAudio
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from voices.models import Voice

PUBLIC_URL = "https://herald.example.test"
CALLER_ID = "+862161234567"
DESK = "+864008001234"  # where the test flows' transfer key (0) sends the callee
PHONE = "+8613800138000"
FORM = "application/x-www-form-urlencoded"  # how Twilio posts webhooks


@pytest.fixture
def public_url(settings) -> str:
    settings.PUBLIC_URL = PUBLIC_URL
    return PUBLIC_URL


@pytest.fixture
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def account(db, token) -> TelephonyAccount:
    account = TelephonyAccount.objects.create(
        name="Twilio", kind=TelephonyAccount.Kind.TWILIO, account_sid="AC" + secrets.token_hex(16), caller_ids=[CALLER_ID],
        calls_per_second=100, max_concurrent_calls=100,  # these tests are not about pacing (test_pacing.py is)
    )
    set_auth_token(account, token)
    return account


@pytest.fixture
def campaign(account) -> Campaign:
    """Running, open all day, three attempts half an hour apart."""
    contact_list = ContactList.objects.create(name="Telephony contacts")
    campaign = Campaign.objects.create(
        name="Telephony campaign",
        contact_list=contact_list,
        telephony_account=account,
        caller_id=CALLER_ID,
        status=Campaign.Status.RUNNING,
        window_start=time(0, 0),
        window_end=time(23, 59),
        max_attempts=3,
        retry_delay=timedelta(minutes=30),
        retry_jitter=0,  # exact delays in these tests; tests/telephony/test_retry_policy.py covers jitter
    )
    voice = Voice.objects.create(name="eSpeak", engine=Voice.Engine.EMBEDDED, parameters={"voice": "cmn"})
    script = ScriptTemplate.objects.create(name="Reminder", text="您好{name}，您的快递今天送达。")
    Variant.objects.create(campaign=campaign, name="A", voice=voice, script=script)
    return campaign


@pytest.fixture
def make_call(campaign) -> Callable[..., Call]:
    def make(phone: str = PHONE, **fields) -> Call:
        contact = Contact.objects.create(
            contact_list=campaign.contact_list, phone=phone, name="张先生", timezone=daytime_zone(timezone.now())
        )
        fields = {"state": Call.State.IN_PROGRESS, "attempts_made": 1, **fields}
        return Call.objects.create(
            campaign=campaign,
            contact=contact,
            variant=campaign.variants.get(),
            phone=phone,
            timezone=contact.timezone,
            text="您好张先生，您的快递今天送达。",
            next_attempt_at=timezone.now(),
            **fields,
        )

    return make


@pytest.fixture
def call(make_call) -> Call:
    return make_call()


@pytest.fixture
def attempt(call) -> CallAttempt:
    return CallAttempt.objects.create(
        call=call, number=1, provider="twilio", status=CallAttempt.Status.QUEUED, provider_call_id="CA" + secrets.token_hex(16)
    )


def status_path(attempt_id: int) -> str:
    return reverse("telephony:twilio-status", args=[attempt_id])


def gather_path(attempt_id: int) -> str:
    return reverse("telephony:twilio-gather", args=[attempt_id])


def twilio_params(attempt: CallAttempt, **params: str) -> dict[str, str]:
    """What Twilio posts about a call, with the caller's overrides."""
    account = attempt.call.campaign.telephony_account
    return {
        "CallSid": attempt.provider_call_id or "",
        "AccountSid": account.account_sid,
        "From": attempt.call.campaign.caller_id,
        "To": attempt.call.phone,
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        **params,
    }


def sign(token: str, url: str, params: dict[str, str]) -> str:
    return RequestValidator(token).compute_signature(url, params)


@pytest.fixture
def post_signed(client: Client, public_url: str, token: str) -> Callable[..., object]:
    """POST to a webhook path signed the way Twilio signs it (over PUBLIC_URL + path and the form)."""

    def post(path: str, params: dict[str, str], *, signed_with: str | None = None):
        signature = sign(signed_with or token, public_url + path, params)
        return client.post(
            path, urlencode(params), content_type=FORM, headers={"X-Twilio-Signature": signature}
        )

    return post


@pytest.fixture
def send_status(post_signed) -> Callable[..., object]:
    """A signed status callback for an attempt: send_status(attempt, "ringing", AnsweredBy="human")."""

    def send(attempt: CallAttempt, status: str, **params: str):
        response = post_signed(status_path(attempt.pk), twilio_params(attempt, CallStatus=status, **params))
        assert response.status_code == 204, response.content
        return response

    return send


@pytest.fixture
def send_gather(post_signed) -> Callable[..., object]:
    def send(attempt: CallAttempt, digits: str):
        response = post_signed(
            gather_path(attempt.pk), twilio_params(attempt, CallStatus="in-progress", Digits=digits, msg="Gather End")
        )
        assert response.status_code == 200, response.content
        return response

    return send


@pytest.fixture
def make_sandbox(account, token) -> Iterator[Callable[..., TwilioSandbox]]:
    """A started local Twilio sandbox that knows the account; the account's API base URL points at it."""
    started: list[TwilioSandbox] = []

    def make(**kwargs) -> TwilioSandbox:
        kwargs = {"seed": 7, "time_scale": 0.001, "hangup_early": 0.0, **kwargs}
        sandbox = TwilioSandbox({account.account_sid: token}, **kwargs).start()
        started.append(sandbox)
        account.api_base_url = sandbox.url
        account.save(update_fields=["api_base_url"])
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


def closed_port_url(scheme: str = "http") -> str:
    """A local URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}"


def pcm_wav(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buf.getvalue()


@pytest.fixture
def audio(db, settings, tmp_path) -> RenderedAudio:
    """A ready clip on disk, as the synthesis pipeline leaves it."""
    settings.MEDIA_ROOT = tmp_path
    data = pcm_wav()
    key = hashlib.sha256(data + b"telephony-tests").hexdigest()
    relative = f"telephony-tests/{key}.wav"
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return RenderedAudio.objects.create(
        render_key=key, engine="embedded", text="您好", state=RenderedAudio.State.READY, telephony_file=relative,
        sample_rate=8000, duration=0.5,
    )


@pytest.fixture
def unreachable_public_url(settings) -> str:
    """Callbacks and audio fetches from the sandbox go nowhere: these tests look at the request itself."""
    settings.PUBLIC_URL = closed_port_url()
    return settings.PUBLIC_URL


@pytest.fixture
def claimed(make_call, audio) -> Call:
    """A call the sweep has claimed: ready audio, state dialing, no attempts yet."""
    return make_call(state=Call.State.DIALING, attempts_made=0, audio=audio, claimed_at=timezone.now())


def delivery_flow(**fields) -> CallFlow:
    """The flow the carriers' flow tests walk: 1 confirm, 2 reschedule (1, 2: slots a day later, morning and
    afternoon), 9 opt out, 0 transfer to DESK (with a fallback clip), * repeat; offered twice at most."""
    flow = CallFlow.objects.create(name="Delivery", menu_text="确认请按1，改期请按2，重听请按星号。", max_prompts=2,
                                   **fields)  # fmt: skip
    A = FlowNode.Action
    FlowNode.objects.create(flow=flow, key="1", action=A.CONFIRM, text="感谢您的确认。")
    reschedule = FlowNode.objects.create(flow=flow, key="2", action=A.RESCHEDULE, text="明天上午请按1，明天下午请按2。")
    for key, label in (("1", "上午"), ("2", "下午")):
        FlowNode.objects.create(flow=flow, parent=reschedule, key=key, action=A.SLOT, text="已改到{slot}。",
                                slot_days=1, slot_label=label)  # fmt: skip
    FlowNode.objects.create(flow=flow, key="9", action=A.OPT_OUT, text="您将不会再接到我们的电话。")
    FlowNode.objects.create(flow=flow, key="0", action=A.TRANSFER, text="正在为您转接人工客服。", transfer_to=DESK,
                            transfer_fallback_text="请拨打4008001234联系人工客服。")  # fmt: skip
    FlowNode.objects.create(flow=flow, key="*", action=A.REPEAT)
    return flow
