"""Carrier accounts (secrets write-only) and the raw webhook events, read-only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext, gettext_lazy

from campaigns.getting_started import tell_imported
from telephony import trunks
from telephony.accounts import check_credentials
from telephony.actions import set_auth_token, set_tls_client_key
from telephony.announcements import MAX_UPLOAD_BYTES, check_clip, library_seconds
from telephony.forms import TelephonyAccountForm
from telephony.models import AnnouncementKeyword, CarrierAnnouncement, ProviderEvent, TelephonyAccount
from telephony.sip import tls
from telephony.sip.announce import MAX_LIBRARY_S, LibraryError


@admin.register(TelephonyAccount)
class TelephonyAccountAdmin(admin.ModelAdmin):
    form = TelephonyAccountForm
    list_display = [
        "name",
        "kind",
        "account_sid",
        "endpoint",
        "token_source",
        "calls_per_second",
        "max_concurrent_calls",
    ]
    list_filter = ["kind"]
    search_fields = ["name", "account_sid", "sip_host"]
    readonly_fields = ["token_source", "server_health", "tls_certificates", "registration_state"]
    fieldsets = [
        (None, {"fields": ["name", "kind"]}),
        (
            gettext_lazy("Credentials"),
            {"fields": ["account_sid", "token_source", "auth_token", "auth_token_env"]},
        ),
        ("Twilio", {"fields": ["api_base_url"], "description": gettext_lazy("Twilio accounts only.")}),
        (
            gettext_lazy("SIP trunk"),
            {
                "fields": [
                    "sip_host", "sip_port", "sip_transport", "sip_domain", "sip_outbound_proxy", "sip_request_domain",
                    "sip_amd",
                ],
                "description": gettext_lazy(
                    "SIP trunk accounts only: the username and password above are the trunk's digest credentials."
                ),
            },
        ),
        (
            gettext_lazy("SIP trunk servers"),
            {
                "fields": ["sip_srv", "sip_backup_hosts", "sip_health_checks", "server_health"],
                "description": gettext_lazy(
                    "SIP trunk accounts only: more servers for the same trunk. A call that one server cannot "
                    "take goes to the next, never after the callee's phone rang."
                ),
            },
        ),
        (
            gettext_lazy("SIP registration"),
            {
                "fields": ["sip_local_port", "sip_register", "sip_registrar", "sip_register_expires",
                           "registration_state"],
                "description": gettext_lazy(
                    "SIP trunk accounts over UDP only, for carriers that know us by one port or accept calls "
                    "only from a registered contact. A telephony worker registers with its first call and keeps "
                    "the registration fresh until it stops."
                ),
            },
        ),
        (
            gettext_lazy("SIP encryption (SRTP and TLS)"),
            {
                "fields": ["sip_srtp", "sip_tls_ca", "sip_tls_client_cert", "tls_client_key", "tls_certificates"],
                "description": gettext_lazy(
                    "SIP trunk accounts, all optional: encrypted audio (SRTP), and for transport TLS the carrier's "
                    "CA and our client certificate."
                ),
            },
        ),
        (
            gettext_lazy("SIP caller presentation"),
            {
                "fields": ["sip_display_name", "sip_asserted_identity", "sip_privacy"],
                "description": gettext_lazy(
                    "SIP trunk accounts only, all optional: what the carrier is told about the caller. "
                    "The caller ID itself is the campaign's."
                ),
            },
        ),
        (
            gettext_lazy("Numbers and limits"),
            {"fields": ["caller_ids", "calls_per_second", "max_concurrent_calls"]},
        ),
    ]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["test_credentials", "import_numbers", "check_servers"]

    @admin.action(description=gettext_lazy("Test credentials (no call is placed)"), permissions=["view"])
    def test_credentials(self, request: HttpRequest, queryset: QuerySet[TelephonyAccount]) -> None:
        for account in queryset.order_by("name"):
            result = check_credentials(account)
            self.message_user(request, result.message, messages.SUCCESS if result.ok else messages.ERROR)

    @admin.action(
        description=gettext_lazy("Import my numbers as caller ids (Twilio)"), permissions=["change"]
    )
    def import_numbers(self, request: HttpRequest, queryset: QuerySet[TelephonyAccount]) -> None:
        for account in queryset.order_by("name"):
            tell_imported(request, account)

    @admin.action(description=gettext_lazy("Check the SIP trunk's servers now"), permissions=["view"])
    def check_servers(self, request: HttpRequest, queryset: QuerySet[TelephonyAccount]) -> None:
        for account in queryset.filter(kind=TelephonyAccount.Kind.SIP).exclude(sip_host="").order_by("name"):
            checked = trunks.check_trunk(account)["servers"]
            down = [server for server in checked if not server["up"]]
            summary = "; ".join(f"{server['server']} {server['said']}" for server in checked)
            self.message_user(
                request,
                gettext("%(account)s: %(up)d of %(total)d servers answer (%(summary)s).")
                % {"account": account.name, "up": len(checked) - len(down), "total": len(checked), "summary": summary},
                messages.WARNING if down else messages.SUCCESS,
            )

    @admin.display(description=gettext_lazy("server health"))
    def server_health(self, obj: TelephonyAccount) -> str:
        if obj.pk is None or obj.kind != TelephonyAccount.Kind.SIP:
            return "-"
        found = trunks.health(obj)
        if found is None:
            return gettext("No recent check (checks run every %(seconds)g s on beat; or use the action on the list).") % {
                "seconds": settings.SIP_HEALTH_SECONDS,
            }
        lines = [
            format_html(
                "{} — {} ({})", server["server"], gettext("up") if server["up"] else gettext("down"), server["said"]
            )
            for server in found["servers"]
        ]
        when = localtime(datetime.fromtimestamp(found["checked_at"], tz=UTC)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(gettext("checked %(when)s") % {"when": when})
        if found.get("note"):
            lines.append(gettext("SRV records not used: %(why)s") % {"why": found["note"]})
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    @admin.display(description=gettext_lazy("registration state"))
    def registration_state(self, obj: TelephonyAccount) -> str:
        if obj.pk is None or not obj.sip_register:
            return "-"
        found = trunks.registration(obj)
        if found is None:
            return gettext("Not registered yet: a telephony worker registers with its first call.")
        words = {
            "registered": gettext("registered"), "registering": gettext("registering"),
            "failed": gettext("failed"), "unregistered": gettext("unregistered"),
        }  # fmt: skip
        lines = [f"{words.get(found['state'], found['state'])}: {found['detail']}"]
        if found.get("contact"):
            lines.append(gettext("contact %(contact)s") % {"contact": found["contact"]})
        if found.get("expires_at"):
            until = localtime(datetime.fromtimestamp(found["expires_at"], tz=UTC)).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(gettext("until %(when)s") % {"when": until})
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    @admin.display(description=gettext_lazy("TLS certificates"))
    def tls_certificates(self, obj: TelephonyAccount) -> str:
        lines = []
        for label, pem in ((gettext("CA"), obj.sip_tls_ca), (gettext("client"), obj.sip_tls_client_cert)):
            lines += [f"{label}: {line}" for line in tls.describe(pem).splitlines()]
        if obj.sip_tls_client_cert.strip():
            lines.append(
                gettext("client key: stored (encrypted)") if obj.sip_tls_client_key_encrypted
                else gettext("client key: not set")
            )
        if not lines:
            return gettext("none: the system's CAs, no client certificate")
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    @admin.display(description=gettext_lazy("endpoint"))
    def endpoint(self, obj: TelephonyAccount) -> str:
        if obj.kind == TelephonyAccount.Kind.SIP:
            return f"sip:{obj.sip_host}:{obj.sip_port} ({obj.sip_transport})"
        return obj.api_base_url or "Twilio"

    @admin.display(description=gettext_lazy("current token"))
    def token_source(self, obj: TelephonyAccount) -> str:
        if obj.auth_token_env:
            return gettext("from environment variable %(name)s") % {"name": obj.auth_token_env}
        return gettext("stored (encrypted)") if obj.auth_token_encrypted else gettext("not set")

    def save_model(self, request: HttpRequest, obj: TelephonyAccount, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        token = form.cleaned_data.get("auth_token")
        if token:
            set_auth_token(obj, token)
        key = form.cleaned_data.get("tls_client_key")
        if key:
            set_tls_client_key(obj, key)
        elif not obj.sip_tls_client_cert.strip() and obj.sip_tls_client_key_encrypted:
            set_tls_client_key(obj, "")  # no certificate, no key


@admin.register(ProviderEvent)
class ProviderEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "kind",
        "account",
        "provider_call_id",
        "signature_valid",
        "applied",
        "note",
    ]
    list_filter = ["kind", "signature_valid", "applied", "account"]
    list_select_related = ["account"]
    search_fields = ["provider_call_id"]
    show_full_result_count = False
    date_hierarchy = "received_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CarrierAnnouncementForm(forms.ModelForm):
    """The upload is checked as calls will use it, and the library must stay within what a packet is compared
    with (telephony.sip.announce.MAX_LIBRARY_S)."""

    class Meta:
        model = CarrierAnnouncement
        fields = ["name", "carrier", "outcome", "audio", "enabled"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload = cleaned.get("audio")
        if upload is None or not cleaned.get("outcome") or "audio" not in self.changed_data:
            if "enabled" in self.changed_data and cleaned.get("enabled"):
                self._check_room(self.instance.seconds)
            return cleaned
        upload.seek(0)
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        upload.seek(0)
        try:
            _, seconds = check_clip(cleaned.get("name") or upload.name, cleaned["outcome"], data)
        except LibraryError as exc:
            self.add_error("audio", str(exc).replace("the recording: ", ""))
            return cleaned
        self.instance.seconds = seconds
        if cleaned.get("enabled"):
            self._check_room(seconds)
        return cleaned

    def _check_room(self, seconds: float) -> None:
        total = library_seconds(exclude_pk=self.instance.pk) + seconds
        if total > MAX_LIBRARY_S:
            self.add_error(
                None,
                gettext(
                    "The announcements listened for would last %(total)d s; at most %(limit)d s (every packet of "
                    "every call is compared with all of them). Switch some off first."
                )
                % {"total": total, "limit": MAX_LIBRARY_S},
            )


@admin.register(CarrierAnnouncement)
class CarrierAnnouncementAdmin(admin.ModelAdmin):
    form = CarrierAnnouncementForm
    list_display = ["name", "carrier", "outcome", "seconds_shown", "enabled", "updated_at"]
    list_filter = ["outcome", "enabled", "carrier"]
    search_fields = ["name", "carrier"]
    readonly_fields = ["seconds_shown", "created_at", "updated_at"]

    @admin.display(description=gettext_lazy("length"))
    def seconds_shown(self, obj: CarrierAnnouncement) -> str:
        return f"{obj.seconds:.1f} s" if obj.seconds else "-"


@admin.register(AnnouncementKeyword)
class AnnouncementKeywordAdmin(admin.ModelAdmin):
    list_display = ["phrase", "outcome", "enabled"]
    list_editable = ["outcome", "enabled"]
    list_filter = ["outcome", "enabled"]
    search_fields = ["phrase"]
