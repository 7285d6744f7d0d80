"""The audio cache, read-only: rows are written by the render pipeline alone."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy

from synthesis.models import RenderedAudio
from synthesis.signing import signed_audio_url


@admin.register(RenderedAudio)
class RenderedAudioAdmin(admin.ModelAdmin):
    list_display = ["short_key", "engine", "voice", "state", "duration", "error", "rendered_at"]
    list_filter = ["state", "engine", "voice"]
    list_select_related = ["voice"]
    search_fields = ["render_key", "text"]
    show_full_result_count = False
    fields = [
        "render_key",
        "engine",
        "engine_version",
        "voice",
        "state",
        "text",
        "parameters",
        "duration",
        "sample_rate",
        "original_sample_rate",
        "size_bytes",
        "sha256",
        "telephony_file",
        "original_file",
        "download",
        "error",
        "attempts",
        "created_at",
        "rendered_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # calls point at their audio; the cache is pruned by housekeeping, not by hand

    @admin.display(description=gettext_lazy("render key"), ordering="render_key")
    def short_key(self, obj: RenderedAudio) -> str:
        return obj.render_key[:12]

    @admin.display(description=gettext_lazy("audio"))
    def download(self, obj: RenderedAudio) -> str:
        if obj.state != RenderedAudio.State.READY:
            return "-"
        url = signed_audio_url(obj.render_key, ttl=3600)
        return format_html(
            '<a href="{}">{}</a> <small>{}</small>',
            url,
            gettext("download WAV"),
            gettext("(link valid for one hour)"),
        )
