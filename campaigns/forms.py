"""Admin forms: input checks that give people a readable error; the writes happen in the campaign verbs."""

from __future__ import annotations

import zoneinfo

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.functional import lazy
from django.utils.translation import gettext, gettext_lazy

from campaigns import phones
from campaigns.contacts import PROGRESS_TOKEN
from campaigns.launch import validate_script
from campaigns.models import Campaign, Contact, ContactList, DoNotCall, ScriptTemplate
from campaigns.preflight import variables_problem
from campaigns.templating import KNOWN_HINTS

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # far above any real contact list; stops a wrong file filling memory

def _script_help() -> str:
    return gettext(
        "Variables: {name}, {phone} and every other column of the contact list CSV, by its header, "
        "e.g. {order_id} or {订单号}. Add a reading hint after a colon, e.g. {order_id:digits}; hints: "
        "%(hints)s. Write {{ and }} for literal braces."
    ) % {"hints": ", ".join(sorted(KNOWN_HINTS))}


def _dnc_phone_help() -> str:
    return gettext(
        "Any common format; stored in E.164. Numbers without a country code are read as %(region)s numbers."
    ) % {"region": settings.DEFAULT_REGION}


SCRIPT_HELP = lazy(_script_help, str)()


class ContactImportForm(forms.Form):
    contact_list = forms.ModelChoiceField(label=gettext_lazy("Contact list"), queryset=ContactList.objects.order_by("name"))
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "One contact per row with a header row; a phone column is required (phone / mobile / 手机号 …), name "
            "and timezone are optional, other columns become script variables. UTF-8 or GBK, as Excel saves it."
        ),
    )

    duplicates = forms.ChoiceField(
        label=gettext_lazy("Rows repeating a number"),
        choices=[
            ("combine", gettext_lazy("One call per number, saying every row's values (two orders: SF1、SF2)")),
            ("latest", gettext_lazy("One call per number, later rows' values replacing earlier ones (a file of corrections)")),
        ],
        initial="combine",
        required=False,  # not sent (a script posting the form): combine
        widget=forms.RadioSelect,
        help_text=gettext_lazy("A list has one contact per number; every merged line is listed after the import."),
    )

    # Set by the page's script: the token its progress bar asks about (campaigns.contacts.progress_to_cache).
    progress = forms.RegexField(regex=PROGRESS_TOKEN, required=False, widget=forms.HiddenInput)

    def clean_duplicates(self) -> str:
        return self.cleaned_data.get("duplicates") or "combine"

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError(
                gettext("The file is %(size)s MB; the limit is %(limit)s MB. Split it into several lists.")
                % {"size": f"{upload.size / 1024 / 1024:.0f}", "limit": MAX_UPLOAD_BYTES // 1024 // 1024}
            )
        return upload


class ScriptTemplateForm(forms.ModelForm):
    class Meta:
        model = ScriptTemplate
        fields = ["name", "language", "text"]
        help_texts = {"text": SCRIPT_HELP}

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        validate_script(text)  # a ValidationError here becomes the field's error message
        if self.instance.pk:
            # Campaigns not yet launched that say this script: each list must have the variables it uses.
            edited = ScriptTemplate(pk=self.instance.pk, name=self.cleaned_data.get("name") or self.instance.name, text=text)
            for campaign in Campaign.objects.filter(
                Q(variants__script=self.instance) | Q(voicemail_script=self.instance),
                status__in=[Campaign.Status.DRAFT, Campaign.Status.SCHEDULED],
            ).distinct():
                problem = variables_problem(campaign.contact_list_id, [edited], stop_early=True)
                if problem:
                    raise ValidationError(
                        gettext("campaign '%(campaign)s': %(problem)s") % {"campaign": campaign, "problem": problem}
                    )
        return text


def normalise_phone(value: str, region: str) -> str:
    """E.164 form of a number typed by a person, or a ValidationError saying what is wrong."""
    try:
        return phones.to_e164(value, region)
    except ValueError as exc:
        raise ValidationError(
            gettext(
                "“%(value)s” is not a valid phone number: %(problem)s. Write it with the country code "
                "(e.g. +8613800138000); numbers without one are read as %(region)s numbers."
            )
            % {"value": value, "problem": exc, "region": region}
        ) from exc


class DoNotCallForm(forms.ModelForm):
    class Meta:
        model = DoNotCall
        fields = ["phone", "reason", "source"]
        help_texts = {"phone": lazy(_dnc_phone_help, str)()}

    def clean_phone(self) -> str:
        return normalise_phone(self.cleaned_data["phone"].strip(), settings.DEFAULT_REGION)


class ContactForm(forms.ModelForm):
    class Meta:
        model = Contact
        fields = ["contact_list", "phone", "name", "timezone", "fields", "consent_basis", "consent_at", "consent_source"]
        help_texts = {
            "phone": gettext_lazy(
                "Any common format; stored in E.164. Numbers without a country code are read in the "
                "list's default region."
            ),
            "timezone": gettext_lazy(
                "IANA name, e.g. Asia/Shanghai: calls are only placed inside the callee's local window."
            ),
        }

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"].strip()
        if name not in zoneinfo.available_timezones():
            raise ValidationError(
                gettext("“%(name)s” is not a time zone name; use one like Asia/Shanghai or Europe/London.")
                % {"name": name}
            )
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        contact_list, phone = cleaned.get("contact_list"), cleaned.get("phone")
        if contact_list and phone:
            try:
                cleaned["phone"] = normalise_phone(
                    phone.strip(), contact_list.default_region or settings.DEFAULT_REGION
                )
            except ValidationError as exc:
                self.add_error("phone", exc)
        if cleaned.get("consent_basis") and not cleaned.get("consent_at"):
            self.add_error("consent_at", gettext("Say when consent was given: a consent record needs its time."))
        if cleaned.get("consent_at") and not cleaned.get("consent_basis"):
            self.add_error("consent_basis", gettext("Choose the basis of the consent recorded at this time."))
        return cleaned
