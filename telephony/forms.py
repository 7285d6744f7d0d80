"""Telephony account form: the auth token (or SIP password) is write-only, stored through set_auth_token."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.utils.translation import gettext, gettext_lazy

from telephony.credentials import CredentialsError, decrypt
from telephony.models import TelephonyAccount
from telephony.sip import tls


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

    tls_client_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        label=gettext_lazy("TLS client key"),
        help_text=gettext_lazy(
            "Write-only: the client certificate's private key (unencrypted PEM), stored encrypted and never "
            "shown again. Leave blank to keep the current one; clearing the certificate removes it."
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
            "sip_outbound_proxy",
            "sip_request_domain",
            "sip_amd",
            "sip_srtp",
            "sip_srv",
            "sip_backup_hosts",
            "sip_health_checks",
            "sip_local_port",
            "sip_register",
            "sip_registrar",
            "sip_register_expires",
            "sip_tls_ca",
            "sip_tls_client_cert",
            "tls_client_key",
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
        for name in ("sip_port", "sip_transport", "sip_local_port", "sip_register_expires"):
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
        self._check_tls(cleaned)
        return cleaned

    def _check_tls(self, cleaned: dict[str, Any]) -> None:
        """The CA bundle, client certificate and key must load together (telephony.sip.tls); each problem is
        put on the field it is about."""
        ca, cert = cleaned.get("sip_tls_ca") or "", cleaned.get("sip_tls_client_cert") or ""
        key = cleaned.get("tls_client_key") or ""
        if not key and cert and self.instance.sip_tls_client_key_encrypted:
            try:
                key = decrypt(self.instance.sip_tls_client_key_encrypted, what=gettext("the stored TLS client key"))
            except CredentialsError as exc:
                self.add_error("tls_client_key", str(exc))
                return
        fields = {tls.CA: "sip_tls_ca", tls.CERT: "sip_tls_client_cert", tls.KEY: "tls_client_key"}
        for part, problem in tls.problems(tls.TlsSettings(ca_pem=ca, cert_pem=cert, key_pem=key)):
            field = fields[part]
            self.add_error(field, problem)

    def clean_sip_port(self) -> int:
        port = self.cleaned_data.get("sip_port")
        return TelephonyAccount._meta.get_field("sip_port").default if port is None else port

    def clean_sip_local_port(self) -> int:
        return self.cleaned_data.get("sip_local_port") or 0

    def clean_sip_register_expires(self) -> int:
        expires = self.cleaned_data.get("sip_register_expires")
        return TelephonyAccount._meta.get_field("sip_register_expires").default if expires is None else expires

    def clean_sip_transport(self) -> str:
        return self.cleaned_data.get("sip_transport") or TelephonyAccount.Transport.UDP
