"""Staff pages for call flows: the node editor (checked on every save) and *walk the call*, which renders a
sample contact's clips in a chosen voice and walks the flow key by key with campaigns.callflow, the same walk
a real call takes.

The editor keeps ids out of sight: a slot is put *under* its reschedule key by the key's digit. A flow used
by a running or paused campaign is read-only here (editing it would change menus under calls in progress).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST

from campaigns import callflow
from campaigns.models import CallFlow, Campaign, Contact, ContactList, FlowNode, ScriptTemplate
from campaigns.planning import slot_said
from campaigns.templating import (
    MissingVariables,
    TemplateSyntaxError,
    has_reading_hints,
    parse_template,
    render_marked,
    render_template,
)
from herald.logmask import mask_phone
from synthesis.actions import voice_problem
from synthesis.keys import normalise_text
from voices.actions import preview_voice
from voices.models import Voice

LOCKING = (Campaign.Status.RUNNING, Campaign.Status.PAUSED)
MAX_CLIP_CHARS = 300  # one clip's text, as said; the preview renders in the web request
MAX_PREVIEW_CHARS = 3000  # all of a walk's clips together
CONTACTS_OFFERED = 200  # the sample contact is picked from a list's first contacts
MAX_PATH = 60  # nodes a walk's path may carry back and forth (a call records at most callflow.MAX_KEYS keys)
ENDINGS = {
    callflow.CONFIRMED: gettext_lazy("Confirmed"),
    callflow.RESCHEDULED: gettext_lazy("Rescheduled"),
    callflow.OPTED_OUT: gettext_lazy("Opted out (the number would go on the do-not-call list now)"),
    callflow.TRANSFERRED: gettext_lazy("Transferred to a person"),
    callflow.TRANSFER_REFUSED: gettext_lazy("Transfer refused by the carrier"),
    callflow.NO_INPUT: gettext_lazy("No answer to the menu: goodbye"),
    callflow.HUNG_UP: gettext_lazy("Hung up"),
}


def flow_problems(flow: CallFlow) -> list[str]:
    """Every problem of the flow at once (CallFlow.problems: the menus' and every node's own)."""
    return flow.problems()


def locking_campaigns(flow: CallFlow | None) -> list[Campaign]:
    """Running or paused campaigns using the flow: while there are any, it must not change."""
    if flow is None or flow.pk is None:
        return []
    return list(Campaign.objects.filter(flow=flow, status__in=LOCKING).order_by("pk"))


# --- the editor --------------------------------------------------------------------------------------------


def under_choices() -> list[tuple[str, str]]:
    """The menus a key can answer, in the staff member's language (a callable: read at each render)."""
    return [("", gettext("the message's menu"))] + [
        (k, gettext("reschedule key %(key)s") % {"key": k}) for k in callflow.KEYS
    ]


class FlowNodeForm(forms.ModelForm):
    under = forms.ChoiceField(
        choices=under_choices,
        required=False,
        widget=forms.Select(attrs={"style": "width: 11em"}),
        label=gettext_lazy("In the menu of"),
        help_text=gettext_lazy(
            "Most keys answer the message's menu. A slot goes under its reschedule key (e.g. 2 → slots 2.1, 2.2)."
        ),
    )

    class Meta:
        model = FlowNode
        fields = [
            "under", "key", "action", "text", "slot_label", "slot_days", "slot_field", "transfer_to",
            "transfer_fallback_text",
        ]
        widgets = {  # narrow enough that a row fits a laptop screen
            "action": forms.Select(attrs={"style": "width: 13em"}),
            "text": forms.Textarea(attrs={"rows": 2, "cols": 28}),
            "transfer_fallback_text": forms.Textarea(attrs={"rows": 2, "cols": 24}),
            "slot_label": forms.TextInput(attrs={"style": "width: 7em"}),
            "slot_field": forms.TextInput(attrs={"style": "width: 7em"}),
            "transfer_to": forms.TextInput(attrs={"style": "width: 10em"}),
            "slot_days": forms.NumberInput(attrs={"style": "width: 4em"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.parent_id:
            self.initial["under"] = self.instance.parent.key


class FlowNodeFormSet(BaseInlineFormSet):
    """Each key once per menu, and a slot only under a key of the message's menu that is in the form too."""

    def clean(self) -> None:
        super().clean()
        kept = [
            f for f in self.forms
            if getattr(f, "cleaned_data", None) and not self._should_delete_form(f) and f.cleaned_data.get("key")
        ]
        seen: dict[tuple[str, str], forms.Form] = {}
        roots = {f.cleaned_data["key"]: f.cleaned_data.get("action") for f in kept if not f.cleaned_data.get("under")}
        for form in kept:
            under, key = form.cleaned_data.get("under") or "", form.cleaned_data["key"]
            node = f"{under}.{key}" if under else key
            if (under, key) in seen:
                menu = (
                    gettext("the menu of key %(key)s") % {"key": under} if under else gettext("the message's menu")
                )
                form.add_error(
                    "key",
                    gettext("key %(node)s: key %(key)s is already used in %(menu)s; give each key one row")
                    % {"node": node, "key": key, "menu": menu},
                )
            seen[(under, key)] = form
            if under and under not in roots:
                form.add_error(
                    "under",
                    gettext(
                        "key %(node)s: there is no key %(under)s in the message's menu to put it under; add key "
                        "%(under)s as a Reschedule key first (or choose the message's menu)"
                    ) % {"node": node, "under": under},
                )


class FlowNodeInline(admin.TabularInline):
    model = FlowNode
    form = FlowNodeForm
    formset = FlowNodeFormSet
    fk_name = "flow"
    extra = 0
    verbose_name = gettext_lazy("key")
    verbose_name_plural = gettext_lazy("keys (what each key does)")

    @admin.display(description=gettext_lazy("in the menu of"))
    def under(self, node: FlowNode) -> str:
        """The read-only page's column (a locked flow): the form's `under` field says the same when editable."""
        if node.parent_id:
            return gettext("reschedule key %(key)s") % {"key": node.parent.key}
        return gettext("the message's menu")

    def get_extra(self, request: HttpRequest, obj: CallFlow | None = None, **kwargs: Any) -> int:
        return 3 if obj is None else 0

    def get_queryset(self, request: HttpRequest):
        # Each reschedule key's slots right after it: *, 1, 2, 2.1, 2.2, 9.
        return (
            super().get_queryset(request)
            .select_related("parent")
            .order_by(Coalesce("parent__key", "key"), F("parent_id").asc(nulls_first=True), "key")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not locking_campaigns(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not locking_campaigns(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not locking_campaigns(obj) and super().has_delete_permission(request, obj)


class CallFlowAdmin(admin.ModelAdmin):
    inlines = [FlowNodeInline]
    list_display = ["name", "readiness", "used_by", "created_at"]
    search_fields = ["name"]
    change_form_template = "admin/campaigns/callflow/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "menu_text"]}),
        (
            gettext_lazy("When the callee does not answer the menu"),
            {
                "fields": ["invalid_text", "no_input_text", "goodbye_text", "max_prompts", "input_timeout"],
                "description": gettext_lazy(
                    "After the message the callee has a few seconds to press a key. A key the flow does not use, "
                    "or no key at all, is answered with these texts and the menu is offered again."
                ),
            },
        ),
    ]

    @admin.display(description=gettext_lazy("check"))
    def readiness(self, obj: CallFlow) -> str:
        problems = flow_problems(obj)
        if not problems:
            return gettext("ready")
        if len(problems) == 1:  # no ngettext: the catalogue's readers (and Chinese) have one form
            return gettext("1 problem: cannot be used")
        return gettext("%(n)d problems: cannot be used") % {"n": len(problems)}

    @admin.display(description=gettext_lazy("used by"))
    def used_by(self, obj: CallFlow) -> str:
        return ", ".join(c.name for c in obj.campaigns.order_by("pk")) or "-"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not locking_campaigns(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not locking_campaigns(obj) and super().has_delete_permission(request, obj)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The message's keys first, then the slots under them: a slot's parent may be new in this same save."""
        if formset.model is not FlowNode:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)
        for gone in formset.deleted_objects:
            if gone.pk is not None and FlowNode.objects.filter(pk=gone.pk).exists():  # a slot may go with its key
                gone.delete()
        kept = [
            f for f in formset.forms
            if f.cleaned_data and f not in formset.deleted_forms and (f.instance.pk or f.has_changed())
        ]
        roots: dict[str, FlowNode] = {}
        for f in kept:
            if not f.cleaned_data.get("under"):
                node = f.instance
                node.flow, node.parent = form.instance, None
                node.save()
                roots[node.key] = node
        for f in kept:
            under = f.cleaned_data.get("under")
            if under:
                node = f.instance
                node.flow, node.parent = form.instance, roots[under]
                node.save()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        request._flow_problems = flow_problems(form.instance)  # read by response_add / response_change

    def _stay_with_problems(self, request: HttpRequest, obj: CallFlow) -> HttpResponse | None:
        problems = getattr(request, "_flow_problems", [])
        if not problems:
            return None
        self.message_user(
            request,
            gettext("The flow “%(flow)s” was saved, but no campaign can use it until these are fixed:") % {"flow": obj},
            messages.WARNING,
        )
        for problem in problems:
            self.message_user(request, problem, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:campaigns_callflow_change", args=[obj.pk]))

    def response_add(self, request: HttpRequest, obj: CallFlow, post_url_continue: str | None = None) -> HttpResponse:
        return self._stay_with_problems(request, obj) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: CallFlow) -> HttpResponse:
        return self._stay_with_problems(request, obj) or super().response_change(request, obj)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        flow = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if flow is not None:
            extra["flow_problems"] = flow_problems(flow) if request.method == "GET" else []
            extra["locked_by"] = locking_campaigns(flow)
        return super().change_view(request, object_id, form_url, extra)

    # -- walk the call --

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/walk/", wrap(self.walk_view), name="campaigns_callflow_walk"),
            path("<path:object_id>/walk/press/", wrap(require_POST(self.press_view)), name="campaigns_callflow_press"),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> CallFlow:
        flow = self.get_object(request, unquote(object_id))
        if flow is None:
            raise Http404("No such call flow")
        if not self.has_view_permission(request, flow):
            raise PermissionDenied
        return flow

    def walk_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Pick a voice, a script and a sample contact; hear the message and the flow's clips, key by key."""
        flow = self._viewable(request, object_id)
        problems = flow_problems(flow)
        walk = None
        form = WalkForm(request.POST or None, flow=flow)
        if request.method == "POST" and not problems and form.is_valid():
            walk = render_walk(flow, **form.sample())
        press_url = reverse("admin:campaigns_callflow_press", args=[flow.pk])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": flow,
            "title": gettext("Walk the call: %(flow)s") % {"flow": flow},
            "form": form,
            "problems": problems,
            "walk": walk,
            "keys": list("123456789*0"),  # as on a phone
            "config": walk.config(flow, press_url) if walk and not walk.problem else None,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/campaigns/callflow/walk.html", context)

    def press_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """One key in one menu: what the call does next, from campaigns.callflow.press (no call, no records)."""
        flow = self._viewable(request, object_id)
        try:
            built = flow.build()
        except callflow.FlowError as exc:
            return JsonResponse({"error": gettext("This flow cannot run: %(why)s") % {"why": exc}}, status=409)
        try:
            body = json.loads(request.body or b"{}")
            if isinstance(body, dict) and "refused" in body:  # the carrier would not transfer: the fallback
                walked = _walked(body)
                node = built.node(str(body["refused"])[:8])
                if node.action != callflow.TRANSFER:
                    raise ValueError(f"refused: key {node.path or 'of the message'} is not a transfer")
                step = callflow.transfer_refused(built, node.path)
            else:
                menu, prompts, key, walked = _press_request(body, built)
                step = callflow.press(built, menu, prompts, key)
        except (ValueError, callflow.FlowError) as exc:  # json.JSONDecodeError is a ValueError
            return JsonResponse({"error": str(exc)}, status=400)
        # A refused transfer stays in its node, as an attempt records it (path unchanged, action transfer_refused).
        walked = walked if step.action == callflow.TRANSFER_REFUSED else callflow.record(walked, step)
        return JsonResponse(step_json(step, walked))


def _press_request(body: Any, built: callflow.Flow) -> tuple[str, int, str, list[str]]:
    """The menu, prompts, key and path a walk page sent, checked; ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("send a JSON object with menu, prompts, key and path")
    menu, prompts, key = body.get("menu"), body.get("prompts"), body.get("key")
    if not isinstance(menu, str) or len(menu) > 3:
        raise ValueError("menu: the path of a menu of this flow, e.g. \"\" (the message's) or \"2\"")
    if not isinstance(prompts, int) or isinstance(prompts, bool) or not 1 <= prompts <= built.max_prompts:
        raise ValueError(f"prompts: the times the menu was offered so far, 1 to {built.max_prompts}")
    if not isinstance(key, str) or (key and (len(key) != 1 or key not in callflow.KEYS)):
        raise ValueError(f"key: one of 0-9 or *, or \"\" for no key; not {key!r}")
    return menu, prompts, key, _walked(body)


def _walked(body: dict) -> list[str]:
    walked = body.get("path", [])
    if (
        not isinstance(walked, list) or len(walked) > MAX_PATH
        or not all(isinstance(n, str) and len(n) <= 8 for n in walked)
    ):
        raise ValueError(f"path: the nodes walked so far, at most {MAX_PATH}")
    return walked


def step_json(step: callflow.Step, walked: list[str]) -> dict[str, Any]:
    return {
        "play": list(step.play),
        "gather": step.gather,
        "prompts": step.prompts,
        "node": step.node,
        "action": step.action,
        "ending": str(ENDINGS.get(step.action, "")),
        "detail": step.detail,
        "transfer_to": step.transfer_to,
        "opt_out": step.opt_out,
        "path": walked,
    }


# --- the walk's sample and its clips -----------------------------------------------------------------------


class WalkForm(forms.Form):
    voice = forms.ModelChoiceField(
        Voice.objects.order_by("name"), label=gettext_lazy("Voice"), help_text=gettext_lazy("The voice the callee hears.")
    )
    script = forms.ModelChoiceField(
        ScriptTemplate.objects.order_by("name"),
        label=gettext_lazy("Message"),
        help_text=gettext_lazy("The script said before the menu."),
    )
    contact_list = forms.ModelChoiceField(ContactList.objects.order_by("name"), label=gettext_lazy("Contact list"))
    contact = forms.TypedChoiceField(
        coerce=int,
        required=False,
        label=gettext_lazy("Sample contact"),
        help_text=gettext_lazy("Their name, fields and time zone fill the texts. Blank: the list's first contact."),
    )

    def __init__(self, data: Any = None, *, flow: CallFlow) -> None:
        self.campaign = Campaign.objects.filter(flow=flow).order_by("pk").select_related("contact_list").first()
        initial: dict[str, Any] = {}
        if self.campaign is not None:
            variant = self.campaign.variants.order_by("pk").first()
            if variant is not None:
                initial.update(voice=variant.voice_id, script=variant.script_id)
            initial["contact_list"] = self.campaign.contact_list_id
            first = self.campaign.contact_list.contacts.order_by("pk").first()
            initial["contact"] = first.pk if first else None
        super().__init__(data, initial=initial)
        list_id = (data or {}).get("contact_list") or initial.get("contact_list")
        contacts = Contact.objects.filter(contact_list_id=list_id if str(list_id or "").isdigit() else None)
        self.fields["contact"].choices = [("", gettext("the list's first contact"))] + [
            (c.pk, f"{c.name or '-'} ({mask_phone(c.phone)})")
            for c in contacts.order_by("pk")[:CONTACTS_OFFERED]
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        contact_list = cleaned.get("contact_list")
        if contact_list is None:
            return cleaned
        contacts = contact_list.contacts.order_by("pk")
        chosen = cleaned.get("contact")
        contact = contacts.filter(pk=chosen).first() if chosen else contacts.first()
        if contact is None:
            self.add_error(
                "contact_list" if not chosen else "contact", gettext("This list has no such contact; pick another.")
            )
        cleaned["sample_contact"] = contact
        return cleaned

    def sample(self) -> dict[str, Any]:
        return {
            "voice": self.cleaned_data["voice"],
            "script": self.cleaned_data["script"],
            "contact": self.cleaned_data["sample_contact"],
            "campaign": self.campaign,
        }


@dataclass(frozen=True)
class Clip:
    name: str
    text: str = ""  # as said
    url: str = ""  # signed and relative to this site: the preview plays from the admin's own host
    problem: str = ""
    said: str = ""  # a slot as said


@dataclass(frozen=True)
class Walk:
    contact: Contact
    voice: Voice
    clips: list[Clip]
    problem: str = ""  # nothing was rendered, and why

    def config(self, flow: CallFlow, press_url: str) -> dict[str, Any]:
        built = flow.build()
        message = gettext("message")
        labels = {"message": message, "": message}
        for node in flow.nodes.select_related("parent"):
            # The action's name without its explanation: "Confirm (thank-you clip, end)" -> "Confirm".
            labels[node.path] = f"{node.path} {re.split(r' ?[(（]', node.get_action_display())[0]}"
        return {
            "press_url": press_url,
            "clips": {c.name: {"text": c.text, "url": c.url, "problem": c.problem, "said": c.said} for c in self.clips},
            "labels": labels,
            "start": step_json(callflow.start(built), ["message"]),
        }


def _spoken(text: str, variables: dict) -> str:
    template = parse_template(text)
    render = render_marked if has_reading_hints(template) else render_template
    return normalise_text(render(template, variables))


def render_walk(flow: CallFlow, *, voice: Voice, script: ScriptTemplate, contact: Contact,
                campaign: Campaign | None) -> Walk:
    """The message and every clip of the flow for one contact, rendered now through the voice's engine, as a
    call of `campaign` would say them (its disclosure first for a cloned voice, slot dates from its start)."""
    variables = {**(contact.fields or {}), "name": contact.name, "phone": contact.phone}
    first_day = max(campaign.starts_at, timezone.now()) if campaign else timezone.now()
    slots = {n.path: n for n in flow.nodes.select_related("parent") if n.action == FlowNode.Action.SLOT}
    texts: dict[str, tuple[str, str, str]] = {}  # name: (text as said, slot as said, problem)
    disclosure = campaign.disclosure_text.strip() if campaign and voice.needs_consent else ""
    for name, template in {"message": script.text, **flow.clip_texts()}.items():
        said = ""
        try:
            if name in slots:
                said = slot_said(slots[name], contact.timezone, first_day, variables)
            text = _spoken(template, {**variables, "slot": said} if name in slots else variables)
        except MissingVariables as exc:
            texts[name] = ("", said, gettext("the sample contact has no %(names)s") % {"names": ", ".join(exc.names)})
            continue
        except TemplateSyntaxError as exc:
            texts[name] = ("", said, str(exc))
            continue
        if name == "message" and disclosure:
            text = normalise_text(disclosure) + text
        problem = ""
        if len(text) > MAX_CLIP_CHARS:
            problem = gettext("%(n)s characters: too long to preview (at most %(max)s)") % {
                "n": len(text), "max": MAX_CLIP_CHARS
            }
        texts[name] = (text, said, problem)
    unavailable = voice_problem(voice)
    if unavailable:  # said once for the page, not once per clip
        return Walk(contact, voice, [Clip(n, t, said=s) for n, (t, s, _) in texts.items()],
                    gettext("this voice cannot be previewed: %(why)s") % {"why": unavailable})
    total = sum(len(text) for text, _, problem in texts.values() if not problem)
    if total > MAX_PREVIEW_CHARS:
        problem = gettext("the clips add up to %(n)s characters; a preview renders at most %(max)s") % {
            "n": total, "max": MAX_PREVIEW_CHARS
        }
        return Walk(contact, voice, [Clip(n, t, said=s, problem=problem) for n, (t, s, _) in texts.items()], problem)
    clips = []
    for name, (text, said, problem) in texts.items():
        if problem:
            clips.append(Clip(name, text, problem=problem, said=said))
            continue
        preview = preview_voice(voice, text)
        url = preview.url.removeprefix(settings.PUBLIC_URL) if preview.url else ""
        clips.append(Clip(name, text, url=url, problem=preview.problem, said=said))
    return Walk(contact, voice, clips)
