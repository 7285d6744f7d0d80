"""Staff pages for contacts, scripts, campaigns and calls. Every write goes through a campaign verb (contacts,
launch, lifecycle, dnc)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header, urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns import admin_tokens, admin_webhooks, dashboard, lifecycle, phones, reports, rule_fields, views  # noqa: F401  (they register their admins)
from campaigns.contacts import (
    PROGRESS_TOKEN,
    import_contacts,
    progress_to_cache,
    read_progress,
    rejected_rows_csv,
)
from campaigns.dnc import CsvImportError, export_csv, import_do_not_call
from campaigns.flow_admin import CallFlowAdmin
from campaigns.forms import (
    MAX_UPLOAD_BYTES,
    ContactForm,
    ContactImportForm,
    DoNotCallForm,
    ScriptTemplateForm,
)
from campaigns.launch import LaunchError, caller_id_problem, key_clash, launch_campaign
from campaigns.models import (
    Call,
    CallAttempt,
    CallFlow,
    Campaign,
    Contact,
    ContactImport,
    ContactList,
    DoNotCall,
    ScriptTemplate,
    Variant,
)
from campaigns.policy import validate_retry_policy
from campaigns.preflight import describe_dropped, dropped
from campaigns.preflight_admin import PreflightAdminMixin, VariantFormSet
from campaigns.windows import WindowError, check_rules
from herald.logmask import mask_phone, mask_text
from synthesis.signing import signed_audio_url
from telephony.models import TelephonyAccount

REJECTED_ROWS_SHOWN = 1000  # the import page stays usable when a whole file is rejected


class ReadOnlyAdminMixin:
    """Records of what happened: viewable, never edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MaskedPhoneMixin:
    """Lists show +86138****8000, not the number: the row checkbox's label would otherwise carry str(obj)."""

    @admin.display(description=gettext_lazy("phone"), ordering="phone")
    def masked_phone(self, obj: Contact | DoNotCall | Call) -> str:
        return mask_phone(obj.phone)

    def action_checkbox(self, obj: Any) -> str:
        attrs = {
            "class": "action-select",
            "aria-label": _("Select this object for an action - %(obj)s") % {"obj": mask_text(str(obj))},
        }
        return forms.CheckboxInput(attrs, lambda value: False).render(
            helpers.ACTION_CHECKBOX_NAME, str(obj.pk)
        )


# --- contacts --------------------------------------------------------------------------------------


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "default_region", "contact_count", "contacts_link", "import_link", "created_at"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactList]:
        return super().get_queryset(request).annotate(contact_count=Count("contacts"))

    @admin.display(description=gettext_lazy("contacts"), ordering="contact_count")
    def contact_count(self, obj: ContactList) -> int:
        return obj.contact_count

    @admin.display(description="")
    def contacts_link(self, obj: ContactList) -> str:
        url = (
            reverse("admin:campaigns_contact_changelist")
            + "?"
            + urlencode({"contact_list__id__exact": obj.pk})
        )
        return format_html('<a href="{}">{}</a>', url, _("View contacts"))

    @admin.display(description="")
    def import_link(self, obj: ContactList) -> str:
        url = reverse("admin:campaigns_contactlist_import") + "?" + urlencode({"contact_list": obj.pk})
        return format_html('<a href="{}">{}</a>', url, _("Import CSV"))

    def get_urls(self) -> list:
        return [
            path(
                "import/", self.admin_site.admin_view(self.import_view), name="campaigns_contactlist_import"
            ),
            path(
                "import/progress/<str:token>/", self.admin_site.admin_view(self.import_progress_view),
                name="campaigns_contactlist_import_progress",
            ),
            *super().get_urls(),
        ]

    def import_progress_view(self, request: HttpRequest, token: str) -> JsonResponse:
        """How far the user's own import with this token has got, for the import page's progress bar."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        if not PROGRESS_TOKEN.fullmatch(token):
            raise Http404("not an import progress token")
        state = read_progress(request.user.pk, token) or {"stage": "uploading", "done": 0, "total": 0}
        numbers = {"done": f"{state['done']:,}", "total": f"{state['total']:,}"}
        text = {
            "uploading": _("Uploading the file…"),
            "reading": _("Reading the file: line %(done)s of %(total)s") % numbers,
            "saving": _("Saving contacts: %(done)s of %(total)s") % numbers,
            "done": _("Imported; opening what became of each line…"),
        }[state["stage"]]
        return JsonResponse({**state, "text": text})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a CSV into a list, then show what happened to every line on the ContactImport page."""
        if not self.has_change_permission(request) or not request.user.has_perm("campaigns.add_contact"):
            raise PermissionDenied
        if request.method == "POST":
            form = ContactImportForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                token = form.cleaned_data["progress"]
                record = import_contacts(
                    form.cleaned_data["contact_list"], upload.read(), filename=upload.name, by=request.user,
                    duplicates=form.cleaned_data["duplicates"],
                    progress=progress_to_cache(request.user.pk, token) if token else None,
                )  # fmt: skip
                if record.error:
                    self.message_user(request, _("Nothing was imported: %(why)s") % {"why": record.error}, messages.ERROR)
                else:
                    level = messages.WARNING if record.rejected else messages.SUCCESS
                    said = _(
                        "Imported %(file)s: %(created)d created, %(updated)d updated, %(merged)d merged, "
                        "%(rejected)d rejected."
                    ) % {"file": record.filename, "created": record.created, "updated": record.updated,
                         "merged": record.merged, "rejected": record.rejected}  # fmt: skip
                    self.message_user(request, said, level)
                return HttpResponseRedirect(reverse("admin:campaigns_contactimport_change", args=[record.pk]))
        else:
            form = ContactImportForm(initial={"contact_list": request.GET.get("contact_list")})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import contacts from CSV"),
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/campaigns/contactlist/import.html", context)


@admin.register(ContactImport)
class ContactImportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "filename",
        "contact_list",
        "imported_at",
        "total_rows",
        "created",
        "updated",
        "merged",
        "rejected",
        "result",
    ]
    list_filter = ["contact_list"]
    list_select_related = ["contact_list"]
    fields = [
        "contact_list",
        "filename",
        "imported_by",
        "imported_at",
        "encoding",
        "total_rows",
        "created",
        "updated",
        "merged",
        "duplicates",
        "rejected",
    ]
    change_form_template = "admin/campaigns/contactimport/change_form.html"

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.rejected_csv_view)
        return [
            path("<path:object_id>/rejected.csv", view, name="campaigns_contactimport_rejected_csv"),
            *super().get_urls(),
        ]

    def rejected_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The rejected rows as a CSV to fix in a spreadsheet and upload again (the reason column is ignored)."""
        record = self.get_object(request, unquote(object_id))
        if record is None or not self.has_view_permission(request, record):
            raise Http404
        response = HttpResponse("\ufeff" + rejected_rows_csv(record), content_type="text/csv; charset=utf-8")
        stem = record.filename.rsplit(".", 1)[0] or "contacts"
        response["Content-Disposition"] = content_disposition_header(True, f"{stem}-rejected.csv")
        return response

    @admin.display(description=gettext_lazy("result"))
    def result(self, obj: ContactImport) -> str:
        if obj.error:
            return _("file rejected")
        return _("with rejected rows") if obj.rejected else _("ok")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ):
        record = self.get_object(request, unquote(object_id))
        rows = record.rejected_rows if record else []
        merged = record.merged_rows if record else []
        extra = {
            "rejected_rows": rows[:REJECTED_ROWS_SHOWN],
            "rejected_rows_hidden": max(0, len(rows) - REJECTED_ROWS_SHOWN),
            "merged_rows": merged[:REJECTED_ROWS_SHOWN],
            "merged_rows_hidden": max(0, len(merged) - REJECTED_ROWS_SHOWN),
            "rejected_csv_url": reverse("admin:campaigns_contactimport_rejected_csv", args=[record.pk])
            if rows
            else "",
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)


@admin.register(Contact)
class ContactAdmin(MaskedPhoneMixin, admin.ModelAdmin):
    form = ContactForm
    list_display = ["masked_phone", "name", "timezone", "contact_list", "consent_basis"]
    list_filter = ["contact_list", "consent_basis"]
    list_select_related = ["contact_list"]
    search_fields = ["phone", "name"]
    show_full_result_count = False


def _region_choices() -> list[tuple[str, str]]:
    return [(region, region) for region in phones.regions()]


class DoNotCallImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "One number per line, or a header row with a phone column (phone / number / 手机号 …) and "
            "optionally a reason column. UTF-8 or GBK, as Excel saves it; an exported list reads back as it is."
        ),
    )
    region = forms.ChoiceField(
        choices=_region_choices,
        label=gettext_lazy("Region"),
        help_text=gettext_lazy("Country of numbers written without +country code (two letters, e.g. CN)."),
    )
    reason = forms.CharField(
        max_length=200,
        required=False,
        label=gettext_lazy("Reason"),
        help_text=gettext_lazy("For lines without their own reason; default: the file name."),
    )

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                _("The file is %(size)s MB; the limit is %(limit)s MB. Split it into several files.")
                % {"size": f"{upload.size / 1024 / 1024:.0f}", "limit": MAX_UPLOAD_BYTES // 1024 // 1024}
            )
        return upload


@admin.register(DoNotCall)
class DoNotCallAdmin(MaskedPhoneMixin, admin.ModelAdmin):
    form = DoNotCallForm
    list_display = ["masked_phone", "reason", "source", "created_at"]
    list_filter = ["source"]
    search_fields = ["phone", "reason"]
    change_list_template = "admin/campaigns/donotcall/change_list.html"

    def save_model(self, request: HttpRequest, obj: DoNotCall, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        lifecycle.add_to_do_not_call(obj.phone, reason=obj.reason, source=obj.source or "admin")
        obj.pk = DoNotCall.objects.values_list("pk", flat=True).get(phone=obj.phone)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="campaigns_donotcall_import"),
            path("export.csv", wrap(self.export_view), name="campaigns_donotcall_export"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload numbers; the page then says what became of every line (nothing is stored about the upload)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        result = None
        if request.method == "POST":
            form = DoNotCallImportForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    result = import_do_not_call(
                        upload.read(),
                        region=form.cleaned_data["region"],
                        filename=upload.name,
                        reason=form.cleaned_data["reason"],
                        by=request.user,
                    )
                except CsvImportError as exc:
                    form.add_error("file", _("Nothing was imported: %(why)s") % {"why": exc})
                else:
                    said = _(
                        "Imported %(file)s: %(added)s added, %(already)s already on the list, %(rejected)s rejected; "
                        "%(cancelled)s queued calls cancelled."
                    ) % {"file": upload.name, "added": result.added, "already": result.already_there,
                         "rejected": len(result.rejected), "cancelled": result.cancelled_calls}  # fmt: skip
                    self.message_user(request, said, messages.WARNING if result.rejected else messages.SUCCESS)
        else:
            form = DoNotCallImportForm(initial={"region": settings.DEFAULT_REGION})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import do-not-call numbers from CSV"),
            "form": form,
            "media": self.media + form.media,
            "result": result,
            "rejected_rows": result.rejected[:REJECTED_ROWS_SHOWN] if result else [],
            "rejected_rows_hidden": max(0, len(result.rejected) - REJECTED_ROWS_SHOWN) if result else 0,
        }
        return TemplateResponse(request, "admin/campaigns/donotcall/import.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The whole list as CSV, numbers in E.164 (streamed: the list can be long)."""
        import logging

        if not self.has_view_permission(request):
            raise PermissionDenied
        logging.getLogger(__name__).info(
            "do-not-call list exported by %s (%d numbers)", request.user, DoNotCall.objects.count()
        )
        response = StreamingHttpResponse(export_csv(), content_type="text/csv; charset=utf-8")
        filename = f"do-not-call-{timezone.localdate():%Y%m%d}.csv"
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return response


# --- scripts, call flows and campaigns -------------------------------------------------------------

admin.site.register(CallFlow, CallFlowAdmin)  # the editor and "walk the call": campaigns/flow_admin.py


@admin.register(ScriptTemplate)
class ScriptTemplateAdmin(admin.ModelAdmin):
    form = ScriptTemplateForm
    list_display = ["name", "language", "created_at"]
    search_fields = ["name", "text"]


class VariantInline(admin.TabularInline):
    model = Variant
    formset = VariantFormSet  # scripts' variables checked against the contact list (campaigns.preflight)
    fields = ["name", "voice", "script", "weight"]
    extra = 1

    def _locked(self, obj: Campaign | None) -> bool:
        # Calls carry their variant's voice and text from planning on: changing it later would make
        # the report describe calls that were never made that way.
        return obj is not None and obj.status != Campaign.Status.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._locked(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._locked(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._locked(obj) and super().has_delete_permission(request, obj)


@admin.register(Campaign)
class CampaignAdmin(PreflightAdminMixin, admin.ModelAdmin):  # + the Preflight page (campaigns.preflight_admin)
    class CampaignForm(forms.ModelForm):
        """Calling rules are checked as they are saved, with the message launch would give."""

        RULE_FIELDS = ("window_start", "window_end", "weekdays", "weekday_hours", "holidays")

        PEOPLE_FIELDS = {  # fields for people, in place of the model's JSON boxes and digit strings
            "weekdays": lambda: rule_fields.WeekdaysField(label=gettext_lazy("Days to call")),
            "weekday_hours": lambda: rule_fields.WeekdayHoursField(
                label=gettext_lazy("Other hours on some days"),
                help_text=gettext_lazy("Leave a day blank to use the hours above; the 08:00-21:00 cap still applies."),
            ),
            "holidays": lambda: rule_fields.HolidaysField(
                label=gettext_lazy("No calls on"), help_text=gettext_lazy("Callee-local dates, one per line, like 2026-10-01.")
            ),
            "caller_id_pool": lambda: rule_fields.CallerIdPoolField(
                label=gettext_lazy("More caller ids"), required=False,
                help_text=Campaign._meta.get_field("caller_id_pool").help_text,
            ),
            "retry_policy": lambda: rule_fields.RetryPolicyField(
                label=gettext_lazy("Retry by outcome"),
                help_text=gettext_lazy("Minutes before another attempt. Blank: the retry delay above (answering machines: never)."),
            ),
        }

        class Meta:
            widgets = {"window_start": rule_fields.TimePicker(), "window_end": rule_fields.TimePicker()}

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for name, make in self.PEOPLE_FIELDS.items():
                if name in self.fields:
                    field = make()
                    field.initial = self.fields[name].initial  # the model's default, for a new campaign
                    self.fields[name] = field
            if "caller_id" in self.fields:
                numbers = [
                    (number, account.name)
                    for account in TelephonyAccount.objects.order_by("name")
                    for number in (account.caller_ids or [])
                ]
                self.fields["caller_id"].widget = rule_fields.CallerIdInput(numbers)

        def clean_caller_id(self) -> str:
            value = (self.cleaned_data.get("caller_id") or "").strip()
            number, why = phones.parse_phone(value, None)
            if number is None:
                raise forms.ValidationError(
                    _("%(value)r is not a caller id in E.164 form, e.g. +862161234567: %(why)s") % {"value": value, "why": why}
                )
            return phones.e164(number)

        def clean(self) -> dict[str, Any]:
            cleaned = super().clean()
            account, caller_id = cleaned.get("telephony_account"), cleaned.get("caller_id")
            problem = caller_id_problem(caller_id, account) if account is not None and caller_id else None
            if problem:
                self.add_error("caller_id", problem)
            pool = cleaned.get("caller_id_pool") or []
            pool_problems = [p for n in pool if account is not None and (p := caller_id_problem(n, account))]
            if pool_problems:
                self.add_error("caller_id_pool", pool_problems)
            if any(name in self.errors for name in self.RULE_FIELDS):
                return cleaned
            rules = {name: cleaned.get(name, getattr(self.instance, name)) for name in self.RULE_FIELDS}
            try:
                check_rules(Campaign(**rules))
            except WindowError as exc:
                message = str(exc)
                field = next((n for n in ("weekday_hours", "holidays", "weekdays") if message.startswith(n)), None)
                self.add_error(field if field in self.fields else None, message)
            keys = {
                name: cleaned.get(name, getattr(self.instance, name))
                for name in ("opt_out_digit", "confirm_digit", "reschedule_digit")
            }
            clash = key_clash(Campaign(**keys))
            if clash:
                self.add_error("confirm_digit" if "confirm_digit" in self.fields else None, clash)
            return cleaned

        def clean_retry_policy(self) -> Any:
            value = self.cleaned_data.get("retry_policy")
            try:
                validate_retry_policy(value)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
            return value

    form = CampaignForm
    inlines = [VariantInline]
    list_display = [
        "name", "status", "progress", "answer_rate", "contact_list", "launched_at", "report_link", "waiting_link"
    ]
    list_filter = ["status"]
    list_select_related = ["contact_list"]
    search_fields = ["name"]
    readonly_fields = ["status", "paused_reason", "created_by", "launched_at", "finished_at"]
    actions = ["launch", "pause", "resume", "cancel"]
    fieldsets = [
        (None, {"fields": ["name", "status", "paused_reason", "contact_list", "telephony_account", "caller_id",
                           "caller_id_pool"]}),
        (
            gettext_lazy("Schedule"),
            {
                "fields": ["starts_at", "ends_at", "window_start", "window_end", "weekdays", "weekday_hours", "holidays"],
                "description": gettext_lazy("Hours are the callee's local time; no call is ever placed before 08:00 or after "
                                     "21:00 local, whatever is set here."),
            },
        ),
        (
            gettext_lazy("Call flow"),
            {
                "fields": ["flow"],
                "description": gettext_lazy("What the callee can do after the message (confirm, reschedule, opt out, reach "
                                     "a person). A flow is checked when it is saved; launch refuses one with problems."),
            },
        ),
        (
            gettext_lazy("Dialling"),
            {
                "fields": [
                    "max_attempts", "retry_delay", "retry_policy", "retry_jitter", "opt_out_digit",
                    "confirm_digit", "reschedule_digit",
                    "calls_per_second", "max_concurrent_calls", "breaker_window",
                ]
            },
        ),
        (
            gettext_lazy("Automated-call rules"),
            {
                "fields": ["disclosure_text", "require_consent", "fallback_text", "machine_action", "voicemail_script"],
                "description": gettext_lazy("A cloned voice always says the disclosure first; launch refuses an empty one."),
            },
        ),
        (
            gettext_lazy("A/B test"),
            {
                "fields": ["min_effect", "assignment_key"],
                "description": gettext_lazy("Variants are compared with the first one (by name). The report calls a winner "
                                     "only when the difference holds however often it is looked at."),
            },
        ),
        (gettext_lazy("History"), {"fields": ["created_by", "launched_at", "finished_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> list[str]:
        # Calls are planned with the flow's clips: another flow after launch would leave them without theirs.
        # The list, account and caller id are what the planned calls were made for: fixed once launched too.
        locked = obj is not None and obj.status != Campaign.Status.DRAFT
        if locked:
            return [*self.readonly_fields, "flow", "contact_list", "telephony_account", "caller_id", "caller_id_pool"]
        return list(self.readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        queryset = super().get_queryset(request)
        # Only the list shows the summary columns: a report or change page fetching its one campaign through
        # here would otherwise count every call of the campaign first (0.8 s at a million calls).
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "campaigns_campaign_changelist":
            return reports.with_summary(queryset)
        return queryset

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, obj: Campaign) -> str:
        return _("%(done)s/%(calls)s done") % {"done": obj.summary_done, "calls": obj.summary_calls}

    @admin.display(description=gettext_lazy("answer rate"))
    def answer_rate(self, obj: Campaign) -> str:
        return reports.format_rate(
            obj.summary_answered / obj.summary_dialled if obj.summary_dialled else None
        )

    @admin.display(description="")
    def report_link(self, obj: Campaign) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:campaigns_campaign_report", args=[obj.pk]), _("Report")
        )

    @admin.display(description="")
    def waiting_link(self, obj: Campaign) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:campaigns_campaign_waiting", args=[obj.pk]), _("Why waiting")
        )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # -- admin actions: each calls one campaign verb per selected campaign --

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Campaign], verb: Callable[[Campaign], str | None]
    ) -> None:
        for campaign in queryset:
            problem = verb(campaign)
            if problem:
                self.message_user(
                    request, _("%(campaign)s: %(problem)s") % {"campaign": campaign, "problem": problem}, messages.ERROR
                )

    @admin.action(description=gettext_lazy("Launch selected campaigns"), permissions=["change"])
    def launch(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        def verb(campaign: Campaign) -> str | None:
            try:
                planned = launch_campaign(campaign, by=request.user)
            except LaunchError as exc:
                return _("not launched: %(why)s") % {"why": exc}
            gone = describe_dropped(dropped(campaign))
            if gone:
                said = _("%(campaign)s: launched, %(planned)s calls planned; %(dropped)s.")
                self.message_user(
                    request, said % {"campaign": campaign, "planned": planned, "dropped": gone}, messages.WARNING
                )
            else:
                said = _("%(campaign)s: launched, %(planned)s calls planned.")
                self.message_user(request, said % {"campaign": campaign, "planned": planned}, messages.SUCCESS)
            return None

        self._each(request, queryset, verb)

    @admin.action(description=gettext_lazy("Pause selected campaigns"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        def verb(campaign: Campaign) -> str | None:
            lifecycle.pause(campaign)
            if campaign.status != Campaign.Status.PAUSED:
                return _("not paused: it is %(status)s; only running or scheduled campaigns pause") % {
                    "status": campaign.get_status_display().lower()
                }
            self.message_user(
                request,
                _("%(campaign)s: paused; calls in progress finish normally.") % {"campaign": campaign},
                messages.SUCCESS,
            )
            return None

        self._each(request, queryset, verb)

    @admin.action(description=gettext_lazy("Resume selected campaigns"), permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        def verb(campaign: Campaign) -> str | None:
            was = campaign.status
            lifecycle.resume(campaign)
            if was != Campaign.Status.PAUSED:
                return _("not resumed: it is %(status)s, not paused") % {
                    "status": campaign.get_status_display().lower()
                }
            self.message_user(request, _("%(campaign)s: running again.") % {"campaign": campaign}, messages.SUCCESS)
            return None

        self._each(request, queryset, verb)

    @admin.action(description=gettext_lazy("Cancel selected campaigns"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        def verb(campaign: Campaign) -> str | None:
            was = campaign.status
            cancelled = lifecycle.cancel(campaign)
            if was in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
                return _("not cancelled: it is already %(status)s") % {
                    "status": campaign.get_status_display().lower()
                }
            self.message_user(
                request,
                _("%(campaign)s: cancelled; %(n)s calls not yet dialled were dropped.")
                % {"campaign": campaign, "n": cancelled},
                messages.SUCCESS,
            )
            return None

        self._each(request, queryset, verb)

    # -- report pages --

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/report/", wrap(self.report_view), name="campaigns_campaign_report"),
            path(
                "<path:object_id>/report.csv",
                wrap(self.report_csv_view),
                name="campaigns_campaign_report_csv",
            ),
            path(
                "<path:object_id>/report.xlsx",
                wrap(self.report_xlsx_view),
                name="campaigns_campaign_report_xlsx",
            ),
            path("<path:object_id>/hours/", wrap(self.heatmap_view), name="campaigns_campaign_heatmap"),
            path("<path:object_id>/waiting/", wrap(self.waiting_view), name="campaigns_campaign_waiting"),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> Campaign:
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            raise Http404("No such campaign")
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._viewable(request, object_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": _("Report: %(campaign)s") % {"campaign": campaign}}
        return views.report_page(request, campaign, context)

    def report_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.report_download(self._viewable(request, object_id), "csv")

    def report_xlsx_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.report_download(self._viewable(request, object_id), "xlsx")

    def heatmap_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._viewable(request, object_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": _("When callees answer: %(campaign)s") % {"campaign": campaign}}
        return views.heatmap_page(request, campaign, context)

    def waiting_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._viewable(request, object_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": _("Why waiting: %(campaign)s") % {"campaign": campaign}}
        return views.waiting_page(request, campaign, context)


# --- calls -----------------------------------------------------------------------------------------


class CallAttemptInline(admin.TabularInline):
    model = CallAttempt
    ordering = ["number"]
    can_delete = False
    extra = 0
    fields = [
        "number",
        "status",
        "answered_by",
        "duration",
        "digits",
        "listened_to_end",
        "flow_path",
        "placed_at",
        "answered_at",
        "ended_at",
        "error",
        "events",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("error"))
    def error(self, obj: CallAttempt) -> str:
        return " ".join(part for part in (obj.error_code, obj.error_message) if part) or "-"

    @admin.display(description=gettext_lazy("call flow"))
    def flow_path(self, obj: CallAttempt) -> str:
        """The nodes visited and how the flow ended, e.g. message › 2 › 2.1 → rescheduled (12月8日上午)."""
        if not obj.path:
            return "-"
        ended = f" → {obj.action}" + (f" ({obj.action_detail})" if obj.action_detail else "") if obj.action else ""
        return " › ".join(str(node) for node in obj.path) + ended

    @admin.display(description=gettext_lazy("timeline"))
    def events(self, obj: CallAttempt) -> str:
        entries = [entry for entry in obj.timeline if isinstance(entry, list | tuple) and len(entry) >= 2]
        if not entries:
            return "-"
        return format_html_join(format_html("<br>"), "{} <small>{}</small>", ((e[0], e[1]) for e in entries))


@admin.register(Call)
class CallAdmin(MaskedPhoneMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    inlines = [CallAttemptInline]
    list_display = ["pk", "masked_phone", "campaign", "variant_name", "state", "outcome", "attempts_made", "error"]
    list_filter = ["campaign", "state", "outcome"]
    list_select_related = ["campaign", "variant"]
    search_fields = ["phone"]
    show_full_result_count = False
    fields = [
        "campaign",
        "variant",
        "contact",
        "phone",
        "timezone",
        "state",
        "outcome",
        "final_action",
        "error",
        "attempts_made",
        "next_attempt_at",
        "updated_at",
        "text",
        "audio_link",
        "log_link",
    ]
    readonly_fields = [*fields, "masked_phone"]

    # -- the call log, and numbers shown in full only to those allowed (campaigns/dashboard.py) --

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if dashboard.shows_full_numbers(request.user):
            return list(self.fields)
        return ["masked_phone" if name == "phone" else name for name in self.fields]

    def get_urls(self) -> list:
        log = path("<path:object_id>/log/", self.admin_site.admin_view(self.log_view), name="campaigns_call_log")
        return [log, *super().get_urls()]

    def log_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        call = self.get_object(request, unquote(object_id))
        if call is None:
            raise Http404("No such call")
        if not self.has_view_permission(request, call):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts}
        return dashboard.call_log_page(request, call, context)

    @admin.display(description=gettext_lazy("log"))
    def log_link(self, obj: Call) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_call_log", args=[obj.pk]),
                           _("Timeline, audio and flow path of every attempt"))

    @admin.display(description=gettext_lazy("variant"), ordering="variant__name")
    def variant_name(self, obj: Call) -> str:
        return obj.variant.name

    @admin.display(description=gettext_lazy("audio"))
    def audio_link(self, obj: Call) -> str:
        if not obj.audio_id:
            return "-"
        page = reverse("admin:synthesis_renderedaudio_change", args=[obj.audio.pk])
        if obj.audio.state != obj.audio.State.READY:
            return format_html('<a href="{}">{}</a> ({})', page, obj.audio_id[:12], obj.audio.get_state_display())
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a> <small>{}</small>',
            page,
            obj.audio_id[:12],
            signed_audio_url(obj.audio_id, ttl=3600),
            _("download WAV"),
            _("(link valid for one hour)"),
        )
