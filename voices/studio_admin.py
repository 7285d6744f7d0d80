"""The voice studio in the admin: one page per draft that walks staff from recordings to a trained voice.

Each step posts to its own URL, calls one verb of `voices.studio` and comes back to the page with what
happened; nothing here decides anything the verbs do not.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext, gettext_lazy

from voices import studio
from voices.models import SpokenConsent, TrainingClip, TrainingJob, VoiceDraft
from voices.tasks import enqueue

MAX_FILES_PER_UPLOAD = 20


class TrainingForm(forms.Form):
    sovits_epochs = forms.IntegerField(min_value=1, max_value=100, initial=8, label=gettext_lazy("SoVITS epochs"))
    gpt_epochs = forms.IntegerField(
        min_value=0, max_value=100, initial=15, label=gettext_lazy("GPT epochs"),
        help_text=gettext_lazy(
            "0 keeps the base GPT. With one minute of audio the GPT stage makes only a few optimizer steps."
        ),
    )
    batch_size = forms.IntegerField(label=gettext_lazy("Batch size"), min_value=1, max_value=64, initial=4)
    time_limit_minutes = forms.IntegerField(
        label=gettext_lazy("Time limit minutes"), min_value=1, max_value=7 * 24 * 60, initial=180
    )


@admin.register(VoiceDraft)
class VoiceDraftAdmin(admin.ModelAdmin):
    list_display = ["name", "speaker_name", "language", "stage", "created_at"]
    list_filter = ["stage", "language"]
    search_fields = ["name", "speaker_name"]
    fields = ["name", "language", "speaker_name", "company", "purpose"]

    def save_model(self, request: HttpRequest, obj: VoiceDraft, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: VoiceDraft, post_url_continue: str | None = None) -> HttpResponse:
        return HttpResponseRedirect(self._studio_url(obj))

    def _studio_url(self, draft: VoiceDraft) -> str:
        return reverse("admin:voices_voicedraft_change", args=[draft.pk])

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/recordings/", wrap(self.upload_view), name="voices_voicedraft_upload"),
            path("<int:pk>/clips/", wrap(self.transcripts_view), name="voices_voicedraft_transcripts"),
            path("<int:pk>/clip/<int:clip>.wav", wrap(self.clip_audio), name="voices_voicedraft_clip"),
            path("<int:pk>/consent/", wrap(self.consent_view), name="voices_voicedraft_consent"),
            path("<int:pk>/consent/<int:consent>/record/", wrap(self.record_consent_view),
                 name="voices_voicedraft_record_consent"),
            path("<int:pk>/consent/<int:consent>/approve/", wrap(self.approve_view), name="voices_voicedraft_approve"),
            path("<int:pk>/consent/<int:consent>.wav", wrap(self.consent_audio), name="voices_voicedraft_consent_audio"),
            path("<int:pk>/train/", wrap(self.train_view), name="voices_voicedraft_train"),
            path("<int:pk>/jobs/<int:job>/cancel/", wrap(self.cancel_view), name="voices_voicedraft_cancel"),
            path("<int:pk>/progress.json", wrap(self.progress_view), name="voices_voicedraft_progress"),
            *super().get_urls(),
        ]

    # --- the page ---------------------------------------------------------------------------------------

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        if request.method == "POST":
            return super().change_view(request, object_id, form_url, extra_context)
        draft = self._draft(request, object_id, change=False)
        clips = list(draft.clips.select_related("recording"))
        consent = draft.spoken_consents.first()
        jobs = list(draft.jobs.all()[:5])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": draft,
            "title": gettext("Voice studio: %(draft)s") % {"draft": draft},
            "draft": draft,
            "recordings": draft.recordings.all(),
            "clips": clips,
            "usable_seconds": sum(c.duration_s for c in clips if not c.problem),
            "problems": studio.transcript_problems(draft) if clips else [],
            "consent": consent,
            "consent_current": consent is not None and consent.training_digest == studio.training_digest(draft),
            "approved": studio.approved_consent(draft),
            "can_approve": request.user.has_perm("voices.approve_consent"),
            "jobs": jobs,
            "active_job": next((j for j in jobs if j.is_active), None),
            "training_form": TrainingForm(),
            "max_files": MAX_FILES_PER_UPLOAD,
        }
        return TemplateResponse(request, "admin/voices/voicedraft/studio.html", context)

    def _draft(self, request: HttpRequest, pk: Any, *, change: bool = True) -> VoiceDraft:
        draft = self.get_object(request, str(pk))
        if draft is None:
            raise Http404("no such voice draft")
        allowed = self.has_change_permission(request, draft) if change else self.has_view_permission(request, draft)
        if not allowed:
            raise PermissionDenied
        return draft

    def _back(self, draft: VoiceDraft, anchor: str = "") -> HttpResponseRedirect:
        return HttpResponseRedirect(self._studio_url(draft) + (f"#{anchor}" if anchor else ""))

    # --- steps -----------------------------------------------------------------------------------------

    def upload_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        draft = self._draft(request, pk)
        if request.method != "POST":
            return self._back(draft)
        files = request.FILES.getlist("audio")
        if not files:
            self.message_user(request, gettext("Choose a file or record the speaker first."), messages.ERROR)
        if len(files) > MAX_FILES_PER_UPLOAD:
            self.message_user(
                request, gettext("At most %(n)s files at a time.") % {"n": MAX_FILES_PER_UPLOAD}, messages.ERROR
            )
            files = []
        for upload in files:
            if upload.size > studio.MAX_RECORDING_BYTES:
                too_big = gettext("%(name)s: %(size)s MB is over the %(limit)s MB limit.") % {
                    "name": upload.name,
                    "size": f"{upload.size / 2**20:.0f}",
                    "limit": studio.MAX_RECORDING_BYTES // 2**20,
                }
                self.message_user(request, too_big, messages.ERROR)
                continue
            try:
                recording = studio.add_recording(draft, upload.read(), name=upload.name, by=request.user)
            except studio.StudioError as exc:
                self.message_user(request, f"{upload.name}: {exc}", messages.ERROR)
                continue
            if recording.problem:
                self.message_user(request, f"{upload.name}: {recording.problem}", messages.WARNING)
            else:
                clips = recording.clips.all()
                usable = [c for c in clips if not c.problem]
                self.message_user(
                    request,
                    gettext("%(name)s: %(usable)s usable clip(s) of %(clips)s.")
                    % {"name": upload.name, "usable": len(usable), "clips": len(clips)},
                    messages.SUCCESS,
                )
        return self._back(draft, "clips")

    def transcripts_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        draft = self._draft(request, pk)
        if request.method != "POST":
            return self._back(draft, "clips")
        texts, excluded = {}, set()
        for clip in draft.clips.all():
            field = f"transcript-{clip.pk}"
            if field in request.POST:
                texts[clip.pk] = request.POST[field][:1000]
            if request.POST.get(f"exclude-{clip.pk}"):
                excluded.add(clip.pk)
        reference = request.POST.get("reference")
        try:
            changed = studio.set_transcripts(draft, texts, excluded=excluded,
                                             reference=int(reference) if reference else None)
        except (studio.StudioError, ValueError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, gettext("Saved %(n)s change(s).") % {"n": changed}, messages.SUCCESS)
        return self._back(draft, "clips")

    def clip_audio(self, request: HttpRequest, pk: int, clip: int) -> HttpResponse:
        draft = self._draft(request, pk, change=False)
        row = get_object_or_404(TrainingClip, pk=clip, draft=draft)
        return FileResponse(row.audio.open("rb"), content_type="audio/wav")

    def consent_audio(self, request: HttpRequest, pk: int, consent: int) -> HttpResponse:
        draft = self._draft(request, pk, change=False)
        row = get_object_or_404(SpokenConsent, pk=consent, draft=draft)
        if not row.audio:
            raise Http404("not recorded yet")
        return FileResponse(row.audio.open("rb"), content_type="audio/wav")

    def consent_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        draft = self._draft(request, pk)
        if request.method == "POST":
            try:
                studio.new_consent(draft)
            except studio.StudioError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        return self._back(draft, "consent")

    def record_consent_view(self, request: HttpRequest, pk: int, consent: int) -> HttpResponse:
        draft = self._draft(request, pk)
        row = get_object_or_404(SpokenConsent, pk=consent, draft=draft)
        upload = request.FILES.get("audio") if request.method == "POST" else None
        if upload is None:
            self.message_user(
                request, gettext("Record the speaker reading the statement and the challenge."), messages.ERROR
            )
            return self._back(draft, "consent")
        if upload.size > studio.MAX_RECORDING_BYTES:
            self.message_user(request, gettext("The consent recording is too large."), messages.ERROR)
            return self._back(draft, "consent")
        try:
            row = studio.record_consent(row, upload.read(), by=request.user)
        except studio.StudioError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back(draft, "consent")
        level = messages.SUCCESS if row.checks_pass else messages.ERROR
        checked = gettext("Speaker: %(speaker)s. Words: %(words)s.") % {
            "speaker": row.speaker_detail,
            "words": row.words_detail,
        }
        self.message_user(request, checked, level)
        return self._back(draft, "consent")

    def approve_view(self, request: HttpRequest, pk: int, consent: int) -> HttpResponse:
        draft = self._draft(request, pk)
        if not request.user.has_perm("voices.approve_consent"):
            raise PermissionDenied
        row = get_object_or_404(SpokenConsent, pk=consent, draft=draft)
        if request.method == "POST":
            try:
                studio.approve_consent(row, by=request.user, listened=bool(request.POST.get("listened")))
            except studio.StudioError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, gettext("Consent approved: the voice can be trained."), messages.SUCCESS)
        return self._back(draft, "consent")

    def train_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        draft = self._draft(request, pk)
        if request.method != "POST":
            return self._back(draft, "training")
        form = TrainingForm(request.POST)
        if not form.is_valid():
            self.message_user(
                request, gettext("Training settings: %(errors)s") % {"errors": form.errors.as_text()}, messages.ERROR
            )
            return self._back(draft, "training")
        data = form.cleaned_data
        try:
            job = studio.start_training(
                draft, by=request.user, sovits_epochs=data["sovits_epochs"], gpt_epochs=data["gpt_epochs"],
                batch_size=data["batch_size"], time_limit_s=data["time_limit_minutes"] * 60,
            )
        except studio.StudioError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return self._back(draft, "training")
        enqueue(job)
        self.message_user(request, gettext("Training queued: a training worker will pick it up."), messages.SUCCESS)
        return self._back(draft, "training")

    def cancel_view(self, request: HttpRequest, pk: int, job: int) -> HttpResponse:
        draft = self._draft(request, pk)
        row = get_object_or_404(TrainingJob, pk=job, draft=draft)
        if request.method == "POST":
            studio.cancel_training(row)
            self.message_user(
                request, gettext("Cancelling: the job stops before its next training step."), messages.WARNING
            )
        return self._back(draft, "training")

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        draft = self._draft(request, pk, change=False)
        job = draft.jobs.first()
        if job is None:
            return JsonResponse({"job": None})
        return JsonResponse({"job": {
            "id": job.pk, "state": job.state, "stage": job.get_stage_display(), "epoch": job.epoch,
            "progress": job.progress, "losses": job.losses, "message": job.message, "error": job.error,
        }})

