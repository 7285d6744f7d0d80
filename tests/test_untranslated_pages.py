"""No page of the flow operations staff follow shows English to a staff member who chose Chinese (issue 21): every
text node of the rendered pages is scanned for English words, names like Twilio and CSV aside."""

from __future__ import annotations

import re

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import ContactImport, ContactList
from tests.test_translations import text_nodes

# Words a Chinese admin shows as they are: product and protocol names, units, formats.
NAMES = {
    "Herald", "Twilio", "SIP", "CSV", "Excel", "xlsx", "GPT", "SoVITS", "DTMF", "TLS", "UDP", "TCP", "URL", "API", "JSON",
    "HTTP", "HTTPS", "https", "http", "OPTIONS", "REGISTER", "WAV", "PCM", "SRTP", "RTP", "STUN", "NAT", "IVR", "UTC",
    "AMD", "Hz", "kHz", "RTF", "ASR", "AB", "Webhook", "Webhooks", "PID", "SID", "Auth", "Token", "GBK", "UTF", "eSpeak", "NG",
    "IANA", "ISO", "ckpt", "pth", "PDF", "GPT-SoVITS", "FLAC", "OGG", "SRV", "DNS", "PEM", "CA", "URI", "INVITE",
    "SDP",
}
# Words a page shows because staff type them as they are: the CSV header names the importer recognises, and the
# reading hints of the script syntax ({order_id:digits}).
TYPED = {
    "import": {"phone", "mobile"},
    "new script": {"date", "digits", "money", "name", "number", "phone", "text", "time"},
}
ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]")


def english_words(node: str) -> list[str]:
    """The English words of a text node, less names, codes (SF0000000001, CA1f…), time zones and the like."""
    words = []
    for token in node.split():
        if any(c.isdigit() or c in '/@_{}"' for c in token) or "." in token.strip(".,:;)"):
            continue  # an order number, a call id, Asia/Shanghai, an address, HERALD_PUBLIC_URL, JSON, a file name
        words += [w for w in ENGLISH_WORD.findall(token) if len(w) > 2 and w not in NAMES]
    return words


def untranslated(page: str, *, allowed: frozenset[str] = frozenset()) -> list[str]:
    return [node for node in dict.fromkeys(text_nodes(page)) if set(english_words(node)) - allowed]


def test_no_page_of_the_flow_shows_english(client, chinese_staff, make_campaign, voices):
    """Every page operations staff pass through to launch and follow a campaign, rendered for a staff member who
    chose Chinese: no text node holds an English word but names like Twilio and CSV (the data is Chinese too)."""
    from campaigns.launch import launch_campaign
    from campaigns.models import Campaign, ScriptTemplate
    from telephony.models import TelephonyAccount
    from voices.models import Voice, VoiceDraft, VoiceRecording

    draft, running = make_campaign(3), make_campaign(2)
    launch_campaign(running)
    for model, word in ((Campaign, "任务"), (ContactList, "名单"), (ScriptTemplate, "话术")):
        for n, pk in enumerate(model.objects.values_list("pk", flat=True)):
            model.objects.filter(pk=pk).update(name=f"{word}{n}")
    for n, voice in enumerate(voices):
        type(voice).objects.filter(pk=voice.pk).update(name=f"客服{n}")
    TelephonyAccount.objects.update(name="主账户")
    contact_list = ContactList.objects.create(name="今晚的订单")
    upload = SimpleUploadedFile("订单.csv", "手机号,订单号\n13800138000,SF1\n13800138000,SF2\n123,SF3\n".encode(),
                                content_type="text/csv")  # fmt: skip
    client.post(reverse("admin:campaigns_contactlist_import"), {"contact_list": contact_list.pk, "file": upload})
    call = running.calls.first()
    draft_voice = VoiceDraft.objects.create(
        name="新音色", speaker_name="王客服", company="顺丰速运", purpose="发货和到货通知电话"
    )
    recorded = Voice.objects.create(name="店长录音", engine=Voice.Engine.RECORDED, fill_voice=voices[0])
    VoiceRecording.objects.create(voice=recorded, text="您好", audio="voices/recordings/您好.wav", duration=0.5)
    pages = {
        "home": reverse("admin:index"),
        "getting started": reverse("getting_started"),
        "dashboard": reverse("dashboard"),
        "language": reverse("language"),
        "contact lists": reverse("admin:campaigns_contactlist_changelist"),
        "contact list": reverse("admin:campaigns_contactlist_change", args=[contact_list.pk]),
        "import": reverse("admin:campaigns_contactlist_import"),
        "import record": reverse("admin:campaigns_contactimport_change", args=[ContactImport.objects.get().pk]),
        "scripts": reverse("admin:campaigns_scripttemplate_changelist"),
        "new script": reverse("admin:campaigns_scripttemplate_add"),
        "new call flow": reverse("admin:campaigns_callflow_add"),
        "voices": reverse("admin:voices_voice_changelist"),
        "voice": reverse("admin:voices_voice_change", args=[voices[0].pk]),
        "recorded voice": reverse("admin:voices_voice_change", args=[recorded.pk]),
        "voice drafts": reverse("admin:voices_voicedraft_changelist"),
        "new voice draft": reverse("admin:voices_voicedraft_add"),
        "voice studio": reverse("admin:voices_voicedraft_change", args=[draft_voice.pk]),
        "accounts": reverse("admin:telephony_telephonyaccount_changelist"),
        "account": reverse("admin:telephony_telephonyaccount_change", args=[running.telephony_account_id]),
        "campaigns": reverse("admin:campaigns_campaign_changelist"),
        "new campaign": reverse("admin:campaigns_campaign_add"),
        "draft campaign": reverse("admin:campaigns_campaign_change", args=[draft.pk]),
        "preflight": reverse("admin:campaigns_campaign_preflight", args=[draft.pk]),
        "running campaign": reverse("admin:campaigns_campaign_change", args=[running.pk]),
        "why waiting": reverse("admin:campaigns_campaign_waiting", args=[running.pk]),
        "report": reverse("admin:campaigns_campaign_report", args=[running.pk]),
        "hours": reverse("admin:campaigns_campaign_heatmap", args=[running.pk]),
        "calls": reverse("admin:campaigns_call_changelist"),
        "call": reverse("admin:campaigns_call_change", args=[call.pk]),
        "call log": reverse("admin:campaigns_call_log", args=[call.pk]),
        "do-not-call list": reverse("admin:campaigns_donotcall_changelist"),
    }
    left = {}
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, name
        # The language menu names each language in itself.
        allowed = frozenset({"English"} if name == "language" else TYPED.get(name, ()))
        if found := untranslated(response.content.decode(), allowed=allowed):
            left[name] = found
    assert left == {}, "\n".join(f"{name}: {found}" for name, found in left.items())
