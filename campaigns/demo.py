"""Demo data: 200 delivery-reminder contacts, one Chinese script, two voice variants, and a call flow after the
message: 1 confirms, 2 reschedules (明天上午 or 明天下午), 9 opts out, * repeats the menu.

Used by `manage.py demo` and by the end-to-end tests, so both exercise the same real path (a GBK CSV goes
through the importer, the campaign through launch_campaign).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.utils import timezone

from campaigns.contacts import import_contacts
from campaigns.models import CallFlow, Campaign, ContactList, FlowNode, ScriptTemplate, Variant
from telephony.actions import set_auth_token
from telephony.models import TelephonyAccount
from voices.models import Voice

DEMO_SCRIPT = (
    "您好{name}，这里是顺达快递。您的订单{订单号}将于{日期}{时间}送达，"
    "确认请按1，改期请按2，如不想再接到此类电话请按9。"
)
DEMO_MENU = "确认请按1，改期请按2，转人工客服请按0，不想再接到此类电话请按9，重听请按星号。"
DEMO_DESK = "+864008001234"  # the service desk a transfer reaches (the sandbox answers it, or not)
DEMO_FLOW_NAME = "送达提醒 按键菜单"
# The sandbox's simulated callees press these keys at every menu, with these probabilities (the rest press
# nothing): confirmations, reschedules (1 or 2 again in the slot menu), opt-outs, repeats, invalid keys, silence.
DEMO_KEYS = "1:0.45,2:0.2,0:0.04,9:0.05,*:0.05,7:0.03"
DEMO_MENU_HANGUP = "0.1"  # a callee hangs up at a later menu (the slot menu, a menu offered again) this often
DEMO_CALLER_ID = "+862161234567"
_SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林罗高"
_TITLES = ("先生", "女士")
_TIMES = ("上午10点", "中午12点", "下午3点", "下午4点半", "晚上7点")


def zone_where_hour_is(now: datetime, hour: int) -> str:
    """A fixed-offset IANA zone (Etc/GMT±N) in which the local hour at `now` is `hour`."""
    offset = (hour - now.astimezone(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    # POSIX sign convention: Etc/GMT-8 is UTC+8.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def daytime_zone(now: datetime) -> str:
    """A zone where it is early afternoon right now.

    The demo's callees are simulated, but the 08:00–21:00 local cap is real and cannot be overridden, so the
    demo gives its contacts a time zone in which they may be called whenever the demo runs.
    """
    return zone_where_hour_is(now, 13)


def demo_contacts_csv(count: int, *, seed: int = 2026, tz: str = "Asia/Shanghai") -> bytes:
    """A contacts CSV as Excel in China writes it: GBK, Chinese headers."""
    rng = random.Random(seed)
    lines = ["姓名,手机号,订单号,日期,时间,时区"]
    used: set[str] = set()
    while len(lines) <= count:
        phone = f"13{rng.randrange(10)}{rng.randrange(10**8):08d}"
        if phone in used:
            continue
        used.add(phone)
        name = rng.choice(_SURNAMES) + rng.choice(_TITLES)
        order = f"SF{rng.randrange(10**10):010d}"
        date = rng.choice(("今天", "明天", "后天"))
        lines.append(f"{name},{phone},{order},{date},{rng.choice(_TIMES)},{tz}")
    return ("\r\n".join(lines) + "\r\n").encode("gb18030")


def demo_flow(*, opt_out_key: str = "9") -> CallFlow:
    """The demo's call flow (made once, reused by later demos): every clip the same for every callee but the
    slot confirmations, whose date is the callee's own (so one render per voice and date)."""
    flow, created = CallFlow.objects.get_or_create(
        name=DEMO_FLOW_NAME, defaults={"menu_text": DEMO_MENU, "max_prompts": 3, "input_timeout": 5}
    )
    if created:
        A = FlowNode.Action
        FlowNode.objects.create(flow=flow, key="1", action=A.CONFIRM, text="感谢您的确认，我们将按时送达，再见。")
        later = FlowNode.objects.create(
            flow=flow, key="2", action=A.RESCHEDULE, text="改到明天上午请按1，改到明天下午请按2。"
        )
        for key, label in (("1", "上午"), ("2", "下午")):
            FlowNode.objects.create(
                flow=flow, parent=later, key=key, action=A.SLOT, slot_days=1, slot_label=label,
                text="好的，已为您改到{slot}送达，再见。",
            )  # fmt: skip
        FlowNode.objects.create(
            flow=flow, key=opt_out_key, action=A.OPT_OUT, text="好的，我们将不再给您打此类电话，再见。"
        )
        FlowNode.objects.create(
            flow=flow, key="0", action=A.TRANSFER, text="正在为您转接人工客服，请稍候。", transfer_to=DEMO_DESK,
            transfer_fallback_text="人工客服暂时无法接通，请稍后拨打4008001234，再见。",
        )
        FlowNode.objects.create(flow=flow, key="*", action=A.REPEAT)
    problems = flow.problems()
    if problems:
        raise ValueError(f"the demo's call flow {flow.name!r} cannot run: {'; '.join(problems)}")
    return flow


@dataclass
class Demo:
    campaign: Campaign
    account: TelephonyAccount


def seed_demo(
    *,
    contacts: int,
    api_base_url: str,
    account_sid: str,
    auth_token: str,
    name: str = "顺达快递 送达提醒",
    retry_delay: timedelta = timedelta(seconds=5),
    calls_per_second: float = 10.0,
    max_concurrent_calls: int = 20,
    call_flow: bool = False,
) -> Demo:
    """Create (or reuse) everything a demo campaign needs; returns a draft campaign ready to launch. call_flow:
    the campaign runs the demo's call flow after the message (`manage.py demo` does); without it the message
    ends with one key press, as campaigns without a flow do."""
    now = timezone.now()
    account, _ = TelephonyAccount.objects.update_or_create(
        name="Local Twilio sandbox",
        defaults={
            "kind": TelephonyAccount.Kind.TWILIO,
            "account_sid": account_sid,
            "api_base_url": api_base_url,
            "caller_ids": [DEMO_CALLER_ID],
            "calls_per_second": calls_per_second,
            "max_concurrent_calls": max_concurrent_calls,
        },
    )
    set_auth_token(account, auth_token)
    voice_a, _ = Voice.objects.get_or_create(
        name="小美 (eSpeak, higher)", defaults={"language": "zh", "parameters": {"voice": "cmn", "pitch": 62, "rate": 175}}
    )
    voice_b, _ = Voice.objects.get_or_create(
        name="小刚 (eSpeak, lower)", defaults={"language": "zh", "parameters": {"voice": "cmn", "pitch": 35, "rate": 160}}
    )
    script, _ = ScriptTemplate.objects.get_or_create(name="送达提醒 v1", defaults={"text": DEMO_SCRIPT})
    suffix = now.strftime("%Y%m%d-%H%M%S-%f")
    contact_list = ContactList.objects.create(name=f"Demo contacts {suffix}", default_region="CN")
    import_contacts(
        contact_list, demo_contacts_csv(contacts, tz=daytime_zone(now)), filename="demo-contacts-gbk.csv"
    )
    campaign = Campaign.objects.create(
        name=f"{name} {suffix}",
        contact_list=contact_list,
        telephony_account=account,
        caller_id=DEMO_CALLER_ID,
        window_start=time(9, 0),
        window_end=time(20, 0),
        max_attempts=3,
        retry_delay=retry_delay,
        calls_per_second=calls_per_second,
        max_concurrent_calls=max_concurrent_calls,
        flow=demo_flow() if call_flow else None,
    )
    Variant.objects.create(campaign=campaign, name="A", voice=voice_a, script=script, weight=1)
    Variant.objects.create(campaign=campaign, name="B", voice=voice_b, script=script, weight=1)
    return Demo(campaign=campaign, account=account)
