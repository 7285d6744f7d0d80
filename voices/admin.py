"""Voice profiles and the speaker consent a cloned voice needs before any campaign may use it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext, gettext_lazy

from campaigns import views
from synthesis.keys import normalise_text
from synthesis.speech import speech_response, start_speech
from synthesis.streaming import SpeechFailed, StreamUnavailable, speech_problem
from voices import studio_admin  # noqa: F401 - registers the voice studio (VoiceDraftAdmin)
from voices.actions import PREVIEW_TEXT, preview_voice, revoke_consent, save_voice, store_recordings
from voices.models import SpeakerConsent, Voice, VoiceRecording
from voices.validation import check_recording, check_voice


class VoiceForm(forms.ModelForm):
    """Runs every voice check on save: each problem becomes a form error on the field it is about."""

    class Meta:
        model = Voice
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("source", "base_version"):  # only GPT-SoVITS voices choose; others keep the defaults
            self.fields[name].required = False
        if "fill_voice" in self.fields:  # a synthesis voice speaks a recorded voice's variables
            fills = Voice.objects.exclude(engine=Voice.Engine.RECORDED)
            self.fields["fill_voice"].queryset = fills.exclude(pk=self.instance.pk) if self.instance.pk else fills

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        cleaned["source"] = cleaned.get("source") or Voice.Source.TRAINED
        cleaned["base_version"] = cleaned.get("base_version") or Voice.BaseVersion.V2_PRO_PLUS
        if "engine" not in cleaned:
            return cleaned  # the engine itself is invalid: the field error already says so
        self.warnings: list[str] = []
        for problem in check_voice(
            engine=cleaned["engine"],
            language=cleaned.get("language") or "",
            parameters=cleaned.get("parameters", {}),
            reference_audio=cleaned.get("reference_audio"),
            reference_text=cleaned.get("reference_text", ""),
            gpt_weights=cleaned.get("gpt_weights"),
            sovits_weights=cleaned.get("sovits_weights"),
            source=cleaned["source"],
            base_version=cleaned["base_version"],
            fill_voice=cleaned.get("fill_voice"),
        ):
            if not problem.blocking:
                self.warnings.append(problem.message)
            elif problem.field in self.fields and problem.field in cleaned:
                self.add_error(problem.field, problem.message)
            elif problem.field in self.fields:  # the field has an error already: add ours next to it
                self.errors.setdefault(problem.field, self.error_class()).append(problem.message)
            else:
                self.add_error(None, problem.message)
        return cleaned


class PreviewForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Text"), widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=500
    )


PREVIEW_STREAM_RATE = 8000  # what a phone line carries, like the rendered preview


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def consent_line(voice: Voice) -> tuple[bool, str]:
    """(usable, what staff should read) about the voice's consent."""
    if voice.is_recorded and not voice.needs_consent:
        return True, gettext("Recorded voice: its recordings play as uploaded, and no cloned voice speaks in it.")
    if not voice.needs_consent:
        return True, gettext("Synthetic voice: no speaker consent needed.")
    consent = voice.active_consent()
    if consent is None and voice.is_recorded:
        return False, gettext(
            "Its fill voice “%(fill)s” is a cloned voice without a valid consent: this voice cannot be used in a "
            "campaign."
        ) % {"fill": voice.fill_voice}
    if consent is None:
        return False, gettext("No valid consent: this voice cannot be used in a campaign.")
    return True, gettext("Consent signed by %(speaker)s on %(date)s.") % {
        "speaker": consent.speaker_name,
        "date": consent.signed_on,
    }


class RecordingForm(forms.ModelForm):
    """A recording is checked on save: readable, 8-48 kHz, up to 2 minutes, not silent, not clipped."""

    class Meta:
        model = VoiceRecording
        fields = ["text", "audio"]

    def clean_text(self) -> str:
        text = normalise_text(self.cleaned_data["text"])
        if not text:
            raise forms.ValidationError(gettext("Type exactly what the recording says."))
        return text

    def clean_audio(self) -> Any:
        audio = self.cleaned_data.get("audio")
        if "audio" in self.changed_data or not self.instance.pk:
            problems = check_recording(audio)
            if problems:
                raise forms.ValidationError([problem.message for problem in problems])
        return audio


class RecordingInline(admin.TabularInline):
    """A recorded voice's recordings: whole messages, or the fixed parts of a script."""

    model = VoiceRecording
    form = RecordingForm
    extra = 1
    fields = ["text", "audio", "duration"]
    readonly_fields = ["duration"]


class SpeakerConsentInline(admin.StackedInline):
    model = SpeakerConsent
    extra = 0
    can_delete = False  # consent is revoked (a dated record), never deleted
    fields = ["speaker_name", "signed_on", "document", "scope", "recorded_by", "recorded_at", "revoked_at"]
    readonly_fields = ["recorded_by", "recorded_at", "revoked_at"]


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    form = VoiceForm
    change_form_template = "admin/voices/voice/change_form.html"
    list_display = ["name", "engine", "source", "language", "consent_status"]
    fieldsets = [
        (None, {"fields": ["name", "language", "engine", "parameters"]}),
        (gettext_lazy("GPT-SoVITS"), {"fields": [
            "source", "base_version", "reference_audio", "reference_text", "gpt_weights", "sovits_weights",
        ]}),
        (gettext_lazy("Recorded"), {
            "fields": ["fill_voice"],
            "description": gettext_lazy(
                "A recorded voice plays the speaker's own recordings: whole messages, or the fixed parts of a "
                "script, with the variables spoken by the fill voice. Save the voice, then add its recordings."
            ),
        }),
        (None, {"fields": ["weights_digest", "created_at"]}),
    ]
    list_filter = ["engine", "source", "language"]
    radio_fields = {"source": admin.HORIZONTAL}
    search_fields = ["name"]
    readonly_fields = ["weights_digest", "created_at"]

    @admin.display(description=gettext_lazy("consent"))
    def consent_status(self, obj: Voice) -> str:
        if not obj.needs_consent:
            return gettext("not needed (recorded)") if obj.is_recorded else gettext("not needed (synthetic)")
        consent = obj.active_consent()
        return (
            gettext("signed by %(speaker)s on %(date)s") % {"speaker": consent.speaker_name, "date": consent.signed_on}
            if consent
            else gettext("MISSING: cannot be used")
        )

    def get_fieldsets(self, request: HttpRequest, obj: Voice | None = None) -> list:
        """A saved voice shows its own engine's section open and the other engine's folded (still there, for a
        voice whose engine is being changed); a new voice shows both open."""
        sections = {1: Voice.Engine.GPT_SOVITS, 2: Voice.Engine.RECORDED}
        if obj is None:
            return self.fieldsets
        return [
            (name, {**options, "classes": ["collapse"]}) if sections.get(i, obj.engine) != obj.engine else (name, options)
            for i, (name, options) in enumerate(self.fieldsets)
        ]

    def get_inlines(self, request: HttpRequest, obj: Voice | None) -> list:
        """A recorded voice has recordings (added once it exists) and no consent of its own (its fill voice's
        counts); every other voice has the speaker's consent."""
        if obj is not None and obj.is_recorded:
            return [RecordingInline]
        return [SpeakerConsentInline]

    def save_model(self, request: HttpRequest, obj: Voice, form: Any, change: bool) -> None:
        save_voice(obj)
        for warning in getattr(form, "warnings", []):
            self.message_user(request, warning, messages.WARNING)
        if obj.is_recorded and not change:
            self.message_user(request, gettext("Now add the recordings: each one with exactly the words it says."))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if form.instance.is_recorded:
            store_recordings(form.instance)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        voice = self.get_object(request, object_id)
        if voice is not None:
            usable, line = consent_line(voice)
            extra_context = {**(extra_context or {}), "consent_ok": usable, "consent_line": line}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        preview_stream = path(
            "<path:object_id>/preview/stream/",
            self.admin_site.admin_view(self.preview_stream_view),
            name="voices_voice_preview_stream",
        )
        preview = path(
            "<path:object_id>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="voices_voice_preview",
        )
        wrap = self.admin_site.admin_view
        return [
            preview_stream,
            preview,
            path("report/", wrap(self.report_view), name="voices_voice_report"),
            path("<path:object_id>/hours/", wrap(self.heatmap_view), name="voices_voice_heatmap"),
            *super().get_urls(),
        ]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Answer, listen-through and confirmation rates of every voice across all campaigns."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": gettext("Voices across campaigns")}
        return views.voices_page(request, context)

    def heatmap_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        voice = self.get_object(request, object_id)
        if voice is None:
            raise Http404("no such voice")
        if not self.has_view_permission(request, voice):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": voice,
            "title": gettext("When callees answer: %(voice)s") % {"voice": voice},
        }
        return views.voice_heatmap_page(request, voice, context)

    def _voice_to_preview(self, request: HttpRequest, object_id: str) -> Voice:
        """The voice both preview views act on: 404 if there is none, 403 without the change permission."""
        voice = self.get_object(request, object_id)
        if voice is None:
            raise Http404("no such voice")
        if not self.has_change_permission(request, voice):
            raise PermissionDenied
        return voice

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Type a sentence, hear it in this voice (rendered now through the real engine)."""
        voice = self._voice_to_preview(request, object_id)
        preview = None
        if request.method == "POST":
            form = PreviewForm(request.POST)
            if form.is_valid():
                preview = preview_voice(voice, form.cleaned_data["text"])
        else:
            form = PreviewForm(initial={"text": PREVIEW_TEXT.get(voice.language, PREVIEW_TEXT[Voice.Language.ENGLISH])})
        usable, line = consent_line(voice)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": voice,
            "title": gettext("Preview %(voice)s") % {"voice": voice},
            "form": form,
            "preview": preview,
            "consent_ok": usable,
            "consent_line": line,
        }
        return TemplateResponse(request, "admin/voices/voice/preview.html", context)

    def preview_stream_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET ?text=…: the sentence said in this voice at 8 kHz, streamed as it is made (the preview page's
        *Listen as it is made*: an <audio> element plays it while the rest is still being rendered)."""
        voice = self._voice_to_preview(request, object_id)
        text = normalise_text(request.GET.get("text", ""))
        limit = PreviewForm.base_fields["text"].max_length
        if not text or len(text) > limit:
            return _plain(400, gettext("Type a sentence of 1 to %(limit)d characters to hear.") % {"limit": limit})
        problem = speech_problem(voice)
        if problem:
            return _plain(409, gettext("This voice cannot be previewed: %(problem)s.") % {"problem": problem})
        try:
            stream, first = start_speech(voice.pk, text, PREVIEW_STREAM_RATE)
        except StreamUnavailable as exc:
            return _plain(503, gettext("Streaming is not available: %(error)s") % {"error": exc})
        except SpeechFailed as exc:
            return _plain(exc.status, exc.message)
        return speech_response(stream, first, PREVIEW_STREAM_RATE)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not SpeakerConsent:
            return super().save_formset(request, form, formset, change)
        for consent in formset.save(commit=False):
            if consent.pk is None:
                consent.recorded_by = request.user
            consent.save()
        formset.save_m2m()


@admin.register(SpeakerConsent)
class SpeakerConsentAdmin(admin.ModelAdmin):
    list_display = ["speaker_name", "voice", "signed_on", "recorded_by", "revoked_at"]
    list_filter = ["voice", "revoked_at"]
    search_fields = ["speaker_name", "voice__name"]
    readonly_fields = ["recorded_by", "recorded_at", "revoked_at"]
    actions = ["revoke"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: SpeakerConsent, form: Any, change: bool) -> None:
        if not change:
            obj.recorded_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description=gettext_lazy("Revoke consent"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[SpeakerConsent]) -> None:
        revoked, paused = 0, []
        for consent in queryset.filter(revoked_at__isnull=True):
            paused += revoke_consent(consent)
            revoked += 1
        message = gettext("Revoked %(n)s consent record(s). Voices left without consent cannot be used.") % {"n": revoked}
        if paused:
            message += " " + gettext("Paused %(n)s campaign(s) that spoke with them: ids %(ids)s.") % {
                "n": len(paused),
                "ids": ", ".join(map(str, paused)),
            }
        self.message_user(request, message, messages.WARNING if paused else messages.SUCCESS)
