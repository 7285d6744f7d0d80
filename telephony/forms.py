"""Telephony account form: the auth token (or SIP password) is write-only, stored through set_auth_token."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.utils.translation import gettext, gettext_lazy

from telephony.models import TelephonyAccount


def https_urls(field: models.Field, **kwargs: Any) -> forms.Field | None:
    """Form fields for model fields; a URL typed without a scheme means https (Django 6's default)."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class TelephonyAccountForm(forms.ModelForm):
    auth_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label=gettext_lazy("Auth token / SIP password"),
        help_text=gettext_lazy(
            "Write-only: stored encrypted and never shown again. Leave blank to keep the current one. "
            "In production prefer naming an environment variable below."
        ),
    )

    class Meta:
        model = TelephonyAccount
        formfield_callback = https_urls
        fields = [
            "name",
            "kind",
            "account_sid",
            "auth_token",
            "auth_token_env",
            "api_base_url",
            "caller_ids",
            "calls_per_second",
            "max_concurrent_calls",
            "sip_host",
            "sip_port",
            "sip_transport",
            "sip_domain",
            "sip_srv",
            "sip_backup_hosts",
            "sip_health_checks",
            "sip_display_name",
            "sip_asserted_identity",
            "sip_privacy",
        ]
        labels = {
            "account_sid": gettext_lazy("Account SID / SIP username"),
            "sip_display_name": gettext_lazy("Display name"),
            "sip_asserted_identity": gettext_lazy("P-Asserted-Identity"),
            "sip_privacy": gettext_lazy("Privacy"),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only SIP accounts use these: a Twilio account saved without them keeps the defaults.
        for name in ("sip_port", "sip_transport"):
            self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The stored token goes wherever api_base_url points: whoever moves it must know the token.
        if (
            self.instance.pk is not None
            and "api_base_url" in self.changed_data
            and cleaned.get("api_base_url")
            and not cleaned.get("auth_token")
        ):
            self.add_error("auth_token", gettext("Re-enter the auth token to change the API base URL."))
        return cleaned

    def clean_sip_port(self) -> int:
        port = self.cleaned_data.get("sip_port")
        return TelephonyAccount._meta.get_field("sip_port").default if port is None else port

    def clean_sip_transport(self) -> str:
        return self.cleaned_data.get("sip_transport") or TelephonyAccount.Transport.UDP
