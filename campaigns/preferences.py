"""Admin → Language: each staff member picks the language the admin speaks to them (herald.middleware)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from campaigns.models import StaffPreference


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=gettext_lazy("Language"), choices=settings.LANGUAGES)


def language_page(request: HttpRequest) -> HttpResponse:
    current = translation.get_language() or settings.LANGUAGE_CODE
    back = request.POST.get("next") or request.GET.get("next") or reverse("admin:index")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("admin:index")
    if request.method == "POST":
        form = LanguageForm(request.POST)
        if form.is_valid():
            language = form.cleaned_data["language"]
            StaffPreference.objects.update_or_create(user=request.user, defaults={"language": language})
            with translation.override(language):
                messages.success(request, _("The admin now speaks to you in %(language)s.")
                                 % {"language": translation.get_language_info(language)["name_local"]})
            return HttpResponseRedirect(back)
    else:
        form = LanguageForm(initial={"language": translation.get_supported_language_variant(current)})
    context = {**admin.site.each_context(request), "title": _("Language"), "form": form, "next": back}
    return TemplateResponse(request, "admin/campaigns/language.html", context)
