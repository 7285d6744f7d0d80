"""Contact lists and contacts through the API: what an order system sends each evening.

POST /contact-lists creates a list; POST /contact-lists/<id>/contacts upserts up to 10,000 contacts
(campaigns.upsert holds the rules). Both writes honour an Idempotency-Key header (campaigns.api.idempotent).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import upsert
from campaigns.api import ERRORS, ApiError, ApiView, ErrorSerializer, idempotent
from campaigns.models import ContactList

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    description="Send the same request again with the same key and the first answer comes back, nothing is "
    "written twice; the same key with another body is refused (422).",
)
WRITE_ERRORS = {**ERRORS, 413: ErrorSerializer, 422: ErrorSerializer}


class ContactListSerializer(serializers.ModelSerializer):
    contacts = serializers.IntegerField(read_only=True, source="contact_count", default=0)

    class Meta:
        model = ContactList
        fields = ["id", "name", "default_region", "default_timezone", "created_at", "contacts"]
        read_only_fields = ["id", "created_at", "contacts"]


class ContactListsSerializer(serializers.Serializer):
    contact_lists = ContactListSerializer(many=True)


def _with_counts() -> Any:
    return ContactList.objects.annotate(contact_count=Count("contacts")).order_by("pk")


def _contact_list(list_id: int) -> ContactList:
    contact_list = _with_counts().filter(pk=list_id).first()
    if contact_list is None:
        raise ApiError(404, f"No contact list with id {list_id}.")
    return contact_list


class ContactListsView(ApiView):
    http_method_names = ["get", "head", "post"]
    permissions = {
        "GET": (["campaigns.view_contactlist"], "to read contact lists"),
        "POST": (["campaigns.add_contactlist"], "to create contact lists"),
    }

    @extend_schema(operation_id="contact_lists_list", responses={200: ContactListsSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        """Every contact list with its number of contacts, oldest first."""
        return Response({"contact_lists": ContactListSerializer(_with_counts(), many=True).data})

    @extend_schema(
        request=ContactListSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ContactListSerializer, **WRITE_ERRORS},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        """Create a contact list (its name is unique)."""
        serializer = ContactListSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact_list = serializer.save()
        contact_list.contact_count = 0
        self.audit_ids, self.audit_summary = (
            [contact_list.pk],
            f"created contact list {contact_list.name}"[:300],
        )
        return Response(ContactListSerializer(contact_list).data, status=201)


class ContactListView(ApiView):
    http_method_names = ["get", "head"]
    permissions = {"GET": (["campaigns.view_contactlist"], "to read contact lists")}

    @extend_schema(responses={200: ContactListSerializer, **ERRORS})
    def get(self, request: Request, list_id: int) -> Response:
        """One contact list."""
        return Response(ContactListSerializer(_contact_list(list_id)).data)


class ContactRowSerializer(serializers.Serializer):
    """One contact as the order system sends it (checked by campaigns.upsert, row by row)."""

    phone = serializers.CharField(
        help_text="As people write it; without +country, read in the list's region."
    )
    external_id = serializers.CharField(
        required=False,
        max_length=100,
        help_text="The order system's key (e.g. the order number); matches first.",
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    timezone = serializers.CharField(required=False, allow_blank=True, help_text="IANA, e.g. Asia/Shanghai.")
    variables = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    consent_basis = serializers.ChoiceField(choices=upsert.CONSENT_BASES, required=False)
    consent_at = serializers.DateTimeField(required=False)
    consent_source = serializers.CharField(required=False, allow_blank=True, max_length=200)


class UpsertRequestSerializer(serializers.Serializer):
    contacts = ContactRowSerializer(many=True, max_length=upsert.MAX_ROWS)


class RejectedRowSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class UpsertedRowSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_blank=True)
    result = serializers.ChoiceField(choices=["created", "updated", "unchanged", "merged"])


class UpsertResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    merged = serializers.IntegerField()
    rejected = RejectedRowSerializer(many=True)
    contacts = UpsertedRowSerializer(many=True)


class ContactsView(ApiView):
    http_method_names = ["post"]
    permissions = {"POST": (["campaigns.add_contact", "campaigns.change_contact"], "to upsert contacts")}

    @extend_schema(
        request=UpsertRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: UpsertResultSerializer, **WRITE_ERRORS},
    )
    @idempotent
    def post(self, request: Request, list_id: int) -> Response:
        """Create or update up to 10,000 contacts: by external_id when a row has one, else by phone. Every
        rejected row comes back with its index and reason; the good rows are written."""
        contact_list = _contact_list(list_id)
        result = upsert_body(contact_list, request.data)
        self.audit_ids, self.audit_summary = audit_of(contact_list, result)
        return Response(upsert_answer(result))


def upsert_body(contact_list: ContactList, data: Any) -> upsert.UpsertResult:
    """The request body's contacts upserted into the list; 400 or 413 when the body is not one to take."""
    rows = data.get("contacts") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ApiError(400, 'The body must be {"contacts": [...]}, a list of contacts.')
    try:
        return upsert.upsert_contacts(contact_list, rows)
    except upsert.TooManyRows as error:
        raise ApiError(413, str(error)) from None


def audit_of(contact_list: ContactList, result: upsert.UpsertResult) -> tuple[list[int], str]:
    return [c["id"] for c in result.contacts if c["result"] in ("created", "updated")], (
        f"contact list {contact_list.pk}: {result.created} created, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.merged} merged, {len(result.rejected)} rejected"
    )


def upsert_answer(result: upsert.UpsertResult) -> dict[str, Any]:
    return {
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "merged": result.merged,
        "rejected": result.rejected,
        "contacts": result.contacts,
    }
