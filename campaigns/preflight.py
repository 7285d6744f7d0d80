"""Launch preflight: what a campaign would do before it does it.

Variables the scripts use checked against the contact list (on save and at launch), the message each sample
contact would hear, and a summary of the plan (calls, invalid with reasons, do-not-call, consent, windows, time
to render and dial). Planning's own rules decide every row (campaigns.planning.dry_run): nothing here re-parses
a template or re-implements a check, so the preview cannot disagree with the launch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Q
from django.utils.translation import gettext

from campaigns.models import Call, Campaign, Contact, ScriptTemplate
from campaigns.planning import PlannedRow, dry_run
from campaigns.templating import MissingVariables, TemplateSyntaxError, render_template, template_variables
from campaigns.windows import calling_window
from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url

SAMPLE_CONTACTS = 3
AUDIO_LINK_TTL = 3600  # seconds a preview's audio link stays valid


@dataclass(frozen=True)
class VariableGap:
    """A variable a script uses that some (or all) of the list's contacts lack."""

    variable: str
    scripts: tuple[str, ...]
    lacking: int  # contacts without a value for it (absent, empty or blank: templating's rule)
    contacts: int  # contacts in the list

    @property
    def everyone(self) -> bool:
        return self.lacking == self.contacts

    def describe(self) -> str:
        values = {
            "variable": f"{{{self.variable}}}", "where": ", ".join(f"'{s}'" for s in self.scripts),
            "contacts": self.contacts, "lacking": self.lacking,
        }  # fmt: skip
        if self.everyone:
            return gettext(
                "%(variable)s (used by %(where)s) is not a column of the list: all %(contacts)d contacts lack it"
            ) % values
        return gettext("%(variable)s (used by %(where)s) has no value for %(lacking)d of %(contacts)d contacts") % values


def _variables_of(scripts: list[ScriptTemplate]) -> dict[str, list[str]]:
    """Variable name -> names of the scripts using it, in order of first use; scripts that do not parse are
    left to the launch check (which names the position)."""
    used: dict[str, list[str]] = {}
    for script in scripts:
        try:
            names = template_variables(script.text)
        except TemplateSyntaxError:
            continue
        for name in names:
            if str(script) not in used.setdefault(name, []):
                used[name].append(str(script))
    return used


def variable_gaps(
    contact_list_id: int | None, scripts: list[ScriptTemplate], *, stop_early: bool = False
) -> list[VariableGap]:
    """Every variable of `scripts` that contacts of the list lack, with how many lack it. A contact lacks a
    variable when rendering would say so (templating.render_template's rule); `name` and `phone` come from the
    contact itself, as in planning.

    stop_early: only the variables no contact has matter; stop reading as soon as every variable was seen once
    (a good list costs one row, not a pass over a million)."""
    used = _variables_of(scripts)
    if not used or contact_list_id is None:
        return []
    lacking: Counter[str] = Counter()
    unseen = set(used)
    total = 0
    rows = Contact.objects.filter(contact_list_id=contact_list_id).order_by("pk").values_list("name", "phone", "fields")
    for name, phone, fields in rows.iterator(chunk_size=2000):
        total += 1
        variables = {**(fields or {}), "name": name, "phone": phone}
        for variable in used:
            try:
                render_template(f"{{{variable}}}", variables)
            except MissingVariables:
                lacking[variable] += 1
            else:
                unseen.discard(variable)
        if stop_early and not unseen:
            return []
    return [VariableGap(v, tuple(used[v]), lacking[v], total) for v in used if lacking[v]]


def campaign_scripts(campaign: Campaign) -> list[ScriptTemplate]:
    """The scripts a campaign's calls say: each variant's, and the voicemail's when machines get one."""
    scripts = [v.script for v in campaign.variants.select_related("script")]
    if campaign.machine_action == Campaign.MachineAction.VOICEMAIL and campaign.voicemail_script_id:
        scripts.append(campaign.voicemail_script)
    return scripts


def variables_problem(
    contact_list_id: int | None, scripts: list[ScriptTemplate], *, stop_early: bool = False
) -> str | None:
    """Why no contact of the list can hear the scripts (a variable no contact has), or None."""
    gaps = variable_gaps(contact_list_id, scripts, stop_early=stop_early)
    missing = [gap for gap in gaps if gap.everyone and gap.contacts]
    if not missing:
        return None
    return gettext(
        "the scripts use variables the contact list does not have: %(gaps)s. Rename them to the list's columns, "
        "or import a list that has them."
    ) % {"gaps": "; ".join(gap.describe() for gap in missing)}


# --- the plan, before launching ----------------------------------------------------------------------


@dataclass
class Summary:
    contacts: int = 0
    planned: int = 0
    per_variant: Counter = field(default_factory=Counter)
    invalid: Counter = field(default_factory=Counter)  # reason -> contacts
    do_not_call: int = 0
    no_consent: int = 0
    renders_needed: int = 0
    renders_per_second: float = 0.0
    render_seconds: float = 0.0
    dial_rate: float = 0.0  # calls started per second at most
    dial_seconds: float = 0.0
    window: str = ""

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())


def summarise(campaign: Campaign) -> Summary:
    """What launching now would plan (planning's rules, nothing written), and how long it would take."""
    summary = Summary(window=calling_window(campaign).describe())
    keys: set[str] = set()
    for row in dry_run(campaign):
        summary.contacts += 1
        if row.outcome == Call.Outcome.DO_NOT_CALL:
            summary.do_not_call += 1
        elif row.outcome == Call.Outcome.NO_CONSENT:
            summary.no_consent += 1
        elif row.state == Call.State.INVALID:
            summary.invalid[row.error] += 1
        else:
            summary.planned += 1
            summary.per_variant[row.variant.name] += 1
            if row.render_key:
                keys.add(row.render_key)
    ready = set()
    key_list = sorted(keys)
    for i in range(0, len(key_list), 5000):
        ready.update(
            RenderedAudio.objects.filter(
                render_key__in=key_list[i : i + 5000], state=RenderedAudio.State.READY
            ).values_list("render_key", flat=True)
        )
    summary.renders_needed = len(keys - ready)
    summary.renders_per_second = settings.PREFLIGHT_RENDERS_PER_SECOND
    summary.render_seconds = summary.renders_needed / summary.renders_per_second
    summary.dial_rate = dial_rate(campaign)
    summary.dial_seconds = summary.planned / summary.dial_rate if summary.dial_rate else math.inf
    return summary


def dial_rate(campaign: Campaign) -> float:
    """Calls started per second at most: the campaign's and its account's rate, and the channels (concurrent
    calls) turned over once per average call (settings.PREFLIGHT_CALL_SECONDS)."""
    account = campaign.telephony_account
    channels = min(campaign.max_concurrent_calls, account.max_concurrent_calls)
    return min(campaign.calls_per_second, account.calls_per_second, channels / settings.PREFLIGHT_CALL_SECONDS)


def duration(seconds: float) -> str:
    """A duration in words staff read at a glance: 45 s, 12 min, 3 h 20 min."""
    if math.isinf(seconds):
        return gettext("never (no dialling rate)")
    seconds = math.ceil(seconds)
    if seconds < 60:
        return gettext("%(s)d s") % {"s": seconds}
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return gettext("%(min)d min") % {"min": minutes}
    return gettext("%(h)d h %(min)d min") % {"h": minutes // 60, "min": minutes % 60}


# --- sample contacts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    contact: Contact
    variant: str
    text: str  # what the callee hears, disclosure first for a cloned voice
    problem: str  # why the contact would not be called ("" when it would)
    audio_url: str  # the rendered audio when it already exists, else ""


def samples(campaign: Campaign, contact_id: int | None = None) -> list[Sample]:
    """The first contacts of the list (or the one chosen), as planning would call them."""
    contacts = campaign.contact_list.contacts.order_by("pk")
    chosen = contacts.filter(pk=contact_id) if contact_id is not None else contacts[:SAMPLE_CONTACTS]
    by_pk = {c.pk: c for c in chosen}
    rows: list[PlannedRow] = list(dry_run(campaign, list(by_pk)))
    ready = set(
        RenderedAudio.objects.filter(
            render_key__in=[r.render_key for r in rows if r.render_key], state=RenderedAudio.State.READY
        ).values_list("render_key", flat=True)
    )
    return [
        Sample(
            contact=by_pk[row.contact_id],
            variant=row.variant.name,
            text=row.text,
            problem=row.error,
            audio_url=signed_audio_url(row.render_key, ttl=AUDIO_LINK_TTL) if row.render_key in ready else "",
        )
        for row in rows
    ]


# --- after launch --------------------------------------------------------------------------------------


def dropped(campaign: Campaign) -> list[tuple[str, int]]:
    """The campaign's contacts planning did not make a call for, grouped by reason, most first."""
    rows = (
        Call.objects.filter(campaign=campaign)
        .filter(
            Q(state=Call.State.INVALID) | Q(outcome__in=[Call.Outcome.DO_NOT_CALL, Call.Outcome.NO_CONSENT])
        )
        .values("error")
        .annotate(n=Count("pk"))
        .order_by("-n", "error")
    )
    return [(row["error"] or "not callable", row["n"]) for row in rows]


def describe_dropped(reasons: list[tuple[str, int]]) -> str:
    """"3 contacts dropped (2: missing variables: 单号; 1: number is on the do-not-call list)", or ""."""
    total = sum(n for _, n in reasons)
    if not total:
        return ""
    return f"{total} contact{'s' if total != 1 else ''} dropped (" + "; ".join(f"{n}: {r}" for r, n in reasons) + ")"
