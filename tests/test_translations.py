"""The admin in Simplified Chinese for staff who choose it (issue 21): the catalogue is complete and compiled, the
choice is each staff member's own, and the translated pages show none of the English they translate."""

from __future__ import annotations

import ast
import gettext
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import ContactImport, ContactList

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"


def po_blocks(name: str = "django.po") -> list[dict[str, str]]:
    """Each entry of the .po as {"msgid": …, "msgstr": …} (plus "msgctxt" for a word in a context, and
    "msgid_plural" and "msgstr[0]" for plurals: one form in Chinese), obsolete entries left out, read without any
    gettext tool."""
    blocks = []
    for block in (CATALOGUE / name).read_text(encoding="utf-8").split("\n\n"):
        parts: dict[str, list[str]] = {}
        current = None
        for line in block.splitlines():
            if line.startswith(("msgctxt ", "msgid ", "msgstr ", "msgid_plural ", "msgstr[")):
                current, _, value = line.partition(" ")
                parts[current] = [value]
            elif line.startswith('"') and current:
                parts[current].append(line)
        if "msgid" in parts:
            blocks.append({key: "".join(ast.literal_eval(v) for v in values) for key, values in parts.items()})
    return blocks


CONTEXT = "\x04"  # gettext's separator of a context and its msgid


def po_entries() -> dict[str, str]:
    """msgid -> msgstr of the .po (the header left out; a plural's msgstr[0], for both of its msgids; an entry with
    a context as "context\x04msgid")."""
    entries: dict[str, str] = {}
    for block in po_blocks():
        if block["msgid"] and "msgctxt" in block:
            entries[f"{block['msgctxt']}{CONTEXT}{block['msgid']}"] = block.get("msgstr", "")
        elif block["msgid"]:
            entries[block["msgid"]] = block.get("msgstr", block.get("msgstr[0]", ""))
            if "msgid_plural" in block:
                entries[block["msgid_plural"]] = entries[block["msgid"]]
    return entries


def test_every_entry_is_translated_and_the_compiled_catalogue_says_the_same():
    entries = po_entries()
    assert len(entries) > 200
    # msgmerge's guesses are marked fuzzy and left out of the .mo: each must be checked and unmarked
    assert "#, fuzzy" not in (CATALOGUE / "django.po").read_text(encoding="utf-8")
    assert [m for m, s in entries.items() if not s] == []  # nothing left for a later session to notice
    with (CATALOGUE / "django.mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    plurals = {b["msgid"]: b["msgid_plural"] for b in po_blocks() if "msgid_plural" in b}
    singulars = {plural: one for one, plural in plurals.items()}

    def compiled_text(msgid: str) -> str:
        if CONTEXT in msgid:
            return compiled.pgettext(*msgid.split(CONTEXT))
        one = singulars.get(msgid, msgid)
        return compiled.ngettext(one, plurals[one], 1) if one in plurals else compiled.gettext(msgid)

    stale = [m for m, s in entries.items() if compiled_text(m) != s]
    assert stale == [], f"django.mo is older than django.po: run msgfmt -o django.mo django.po ({stale[:3]})"
    for msgid, msgstr in entries.items():  # placeholders survive translation
        assert sorted(re.findall(r"%\(\w+\)\w|\{\w+\}", msgid)) == sorted(re.findall(r"%\(\w+\)\w|\{\w+\}", msgstr)), msgid


class _Text(HTMLParser):
    """The text a reader sees: no tags, scripts, styles or attribute values."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def text_nodes(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return [re.sub(r"\s+", " ", part).strip() for part in parser.parts if part.strip()]


def visible_text(html: str) -> str:
    return " ".join(text_nodes(html))


def english_left_on(page: str) -> list[str]:
    """The catalogue's English (no placeholder) still shown on a page as a whole text (a label, a heading, a
    sentence), its label colon aside: the model's own help texts may contain the same words."""
    shown = {node.rstrip(":").strip() for node in text_nodes(page)}
    return [m for m in po_entries() if "%" not in m and "{" not in m and len(m) > 3 and m in shown]


def test_a_staff_member_who_chose_chinese_gets_the_pages_in_chinese(client, chinese_staff, make_campaign):
    campaign = make_campaign(2)
    contact_list = ContactList.objects.create(name="今晚的订单")
    upload = SimpleUploadedFile("订单.csv", "手机号,订单号\n13800138000,SF1\n13800138000,SF2\n123,SF3\n".encode(),
                                content_type="text/csv")  # fmt: skip
    client.post(reverse("admin:campaigns_contactlist_import"), {"contact_list": contact_list.pk, "file": upload})
    record = ContactImport.objects.get()
    pages = {
        "home": reverse("admin:index"),
        "getting started": reverse("getting_started"),
        "campaign": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        "import": reverse("admin:campaigns_contactlist_import"),
        "import record": reverse("admin:campaigns_contactimport_change", args=[record.pk]),
        "language": reverse("language"),
        "dashboard": reverse("dashboard"),
        "preflight": reverse("admin:campaigns_campaign_preflight", args=[campaign.pk]),
    }
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Language"] == "zh-hans", name
        page = response.content.decode()
        # The language menu names each language in itself ("English"), as language menus do.
        assert [m for m in english_left_on(page) if not (name == "language" and m == "English")] == [], name
    home = visible_text(client.get(pages["home"]).content.decode())
    assert "外呼任务" in home and "联系人名单" in home and "快速上手：已完成" in home
    form = visible_text(client.get(pages["campaign"]).content.decode())
    assert all(word in form for word in ("外呼日", "星期六", "按结果重试", "答录机", "不重试", "时间安排"))
    dashboard = visible_text(client.get(pages["dashboard"]).content.decode())
    assert "通话中" in dashboard and "今日结果" in dashboard and "已接听" in dashboard
    preflight = visible_text(client.get(pages["preflight"]).content.decode())
    assert "如果现在启动" in preflight and "计划拨打" in preflight and "测试呼叫" in preflight
    record_page = visible_text(client.get(pages["import record"]).content.decode())
    assert "被合并的行" in record_page and "下载被拒绝的行（CSV）" in record_page
    assert "每个号码只打一次，播报每一行的内容" in record_page  # the import's duplicate policy, translated


def test_errors_come_in_the_staff_members_language(client, chinese_staff, make_campaign):
    from tests.campaigns.test_preflight import change_form_data

    campaign = make_campaign(2)
    data = {**change_form_data(client, campaign), "weekdays": [], "holidays": "2026-13-01"}
    page = client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), data).content.decode()
    shown = text_nodes(page)  # as rendered in the request, in the staff member's language
    assert "请至少勾选一个外呼日。" in shown
    assert "第 1 行：'2026-13-01' 不是形如 2026-10-01 的日期" in shown


def test_the_choice_is_each_staff_members_own(client, chinese_staff, django_user_model):
    assert "快速上手" in client.get(reverse("getting_started")).content.decode()
    colleague = django_user_model.objects.create_superuser("colleague", "c@example.test", "pw")
    client.force_login(colleague)
    page = client.get(reverse("getting_started"))
    assert "Getting started" in page.content.decode() and "快速上手" not in page.content.decode()
    assert "Content-Language" not in page  # the default language, nothing chosen
    back = client.post(reverse("language"), {"language": "en", "next": "https://elsewhere.example/"})
    assert back["Location"] == reverse("admin:index")  # never sent off-site
    assert client.post(reverse("language"), {"language": "klingon"}).status_code == 200  # refused, form again



def test_the_admins_own_javascript_speaks_chinese_too(client, chinese_staff):
    """Every string of the admin's JavaScript (the two-box selector, the changelist's action warnings) is in the
    catalogue /admin/jsi18n/ serves: Django's zh_Hans lacks ten of them, locale/…/djangojs.po supplies them."""
    import django

    english = Path(django.__file__).parent / "contrib/admin/locale/en/LC_MESSAGES/djangojs.po"
    msgids = []
    for block in english.read_text(encoding="utf-8").split("\n\n"):
        if "msgctxt" in block or "msgid_plural" in block:
            continue  # the date widgets' month and weekday names, and plurals: Django's own catalogue has them
        parts = block.split("\nmsgstr")[0].split("msgid ", 1)
        if len(parts) == 2 and (msgid := "".join(ast.literal_eval(line) for line in parts[1].splitlines())):
            msgids.append(msgid)
    assert len(msgids) > 20
    served = client.get("/admin/jsi18n/").content.decode()
    assert [m for m in msgids if f"{json.dumps(m)}:" not in served] == []
    with (CATALOGUE / "djangojs.mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    ours = {b["msgid"]: b["msgstr"] for b in po_blocks("djangojs.po") if b["msgid"]}
    assert ours and {m: compiled.gettext(m) for m in ours} == ours  # the .mo is the .po compiled
