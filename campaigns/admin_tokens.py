"""API tokens in the admin: superusers create them (the token is shown once, with the scopes they choose), anyone
who may change them revokes. The API's audit log of writes is shown here too, read-only.

A token is never edited: what it grants follows its user's permissions and its scopes, and a token that must
change is revoked and replaced. Revoked tokens stay listed (not deleted) so last use and revocation remain on
record.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest
from django.utils.html import format_html

from campaigns import tokens
from campaigns.models import ApiAuditEntry, ApiToken

ADD_FIELDS = ["name", "user", "scopes"]
SHOWN_FIELDS = ["name", "user", "scopes", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiTokenAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiToken.Scope.READ],
        required=False,
        help_text="Read: reports and contact lists. Write: create contact lists and upsert contacts. "
        "None ticked: read.",
    )

    class Meta:
        model = ApiToken
        fields = ADD_FIELDS

    def clean_scopes(self) -> str:
        return " ".join(self.cleaned_data["scopes"] or [ApiToken.Scope.READ])


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = SHOWN_FIELDS
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]  # a prefix seen in a leaked log finds its token
    ordering = ["-created_at"]
    actions = ["revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return ADD_FIELDS if obj is None else SHOWN_FIELDS

    def get_form(
        self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any
    ):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return [] if obj is None else SHOWN_FIELDS

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.name == "user":
            kwargs["queryset"] = get_user_model().objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.change_apitoken")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        # Only the add form saves (tokens are never changed): the row is created by the action, and `obj`
        # takes its values so the admin's log entry and redirect point at it.
        token, plain = tokens.create_token(name=obj.name, user=obj.user, scopes=obj.scopes.split())
        for name in ("pk", "prefix", "digest", "created_at"):
            setattr(obj, name, getattr(token, name))
        self.message_user(
            request,
            format_html(
                "API token for {}: <code>{}</code> — copy it now, it cannot be shown again.",
                token.name,
                plain,
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        selected = list(queryset)
        revoked = sum(tokens.revoke(token) for token in selected)
        already = len(selected) - revoked
        note = f" ({already} already revoked)" if already else ""
        self.message_user(request, f"Revoked {revoked} token{'s' * (revoked != 1)}{note}.", messages.SUCCESS)


@admin.register(ApiAuditEntry)
class ApiAuditEntryAdmin(admin.ModelAdmin):
    """Every write through the API, as it happened: nobody adds, edits or deletes an entry here."""

    list_display = ["at", "method", "path", "status", "token", "user", "summary", "replayed"]
    list_filter = ["method", "status", "replayed"]
    list_select_related = ["token", "user"]
    search_fields = ["path", "summary", "token__prefix", "user__username"]
    date_hierarchy = "at"
    ordering = ["-at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiAuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiAuditEntry | None = None) -> bool:
        return False
