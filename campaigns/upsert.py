"""Bulk upsert of contacts from an order system (the API's POST /contact-lists/<id>/contacts).

The same rules as the CSV import (campaigns.contacts_csv: phone parsing, time zones, value cleaning and
lengths); one bad row fails only itself and comes back with its index and the reason; rows for the same
contact later in one request merge into the first (later non-empty values win), as in the CSV import.

A row matches an existing contact by `external_id` when it has one (the order system's own key survives a
customer changing their number), else by phone. A phone belongs to one contact per list: a row whose phone
is another contact's is rejected rather than silently merging two customers.

Fast on PostgreSQL: one query per 5,000 rows to find the existing contacts, then bulk INSERTs for new rows and
INSERT … ON CONFLICT (id) DO UPDATE for the changed ones; no per-row query. The list's row is locked for the
write so two requests for one list cannot race on the same new phone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.contacts_csv import MAX_FIELD_LENGTH, canonical_timezone, check_phone_and_timezone, clean_value
from campaigns.models import Contact, ContactList

log = logging.getLogger(__name__)

MAX_ROWS = 10_000  # contacts per request
MAX_VARIABLES = 100  # variables per contact
LOOKUP_CHUNK = 5000
ROW_FIELDS = (
    "phone", "external_id", "name", "timezone", "variables", "consent_basis", "consent_at", "consent_source",
)  # fmt: skip
WRITTEN_FIELDS = [
    "phone",
    "external_id",
    "name",
    "timezone",
    "fields",
    "consent_basis",
    "consent_at",
    "consent_source",
]
CONSENT_BASES = [value for value, _ in Contact._meta.get_field("consent_basis").choices]
LENGTHS = {"external_id": 100, "name": 200, "consent_source": 200, "timezone": 64, "phone": MAX_FIELD_LENGTH}


class TooManyRows(ValueError):
    """More rows than one request may carry; nothing was written."""


@dataclass
class Row:
    """One valid input row: what it sets (absent keys leave the contact's values as they are)."""

    index: int
    phone: str
    timezone: str
    tz_explicit: bool
    values: dict[str, Any]  # of external_id, name, fields, consent_*: only those the row sent


@dataclass(slots=True)
class Record:
    """A contact's written fields (WRITTEN_FIELDS, in order) and its id: lighter than a model instance, which
    matters at 10,000 a request."""

    pk: int | None
    phone: str
    external_id: str = ""
    name: str = ""
    timezone: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    consent_basis: str = ""
    consent_at: datetime | None = None
    consent_source: str = ""


@dataclass
class Target:
    """A contact this request writes: an existing one (pk) or a new one."""

    contact: Record
    before: tuple[Any, ...] | None  # the written fields as loaded; None for a new contact
    indexes: list[int] = field(default_factory=list)


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # [{index, reason}]
    contacts: list[dict[str, Any]] = field(default_factory=list)  # [{index, id, external_id, result}]


def _text(row: dict[str, Any], name: str) -> str | None:
    """A string field cleaned like a CSV cell; None when absent. ValueError says what is wrong."""
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    value = clean_value(value)
    if len(value) > LENGTHS[name]:
        raise ValueError(f"{name} is {len(value):,} characters long; the limit is {LENGTHS[name]:,}")
    return value


def _variables(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError('variables must be an object of names to values, e.g. {"order_id": "JD1000000001"}')
    if len(value) > MAX_VARIABLES:
        raise ValueError(f"variables has {len(value)} entries; the limit is {MAX_VARIABLES}")
    cleaned: dict[str, str] = {}
    for key, item in value.items():
        name = clean_value(key)
        if not name or len(name) > 100:
            raise ValueError(f"the variable name {key!r} must be 1 to 100 characters")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValueError(f'the variable "{name}" must be a string or a number')
        text = clean_value(str(item))
        if len(text) > MAX_FIELD_LENGTH:
            raise ValueError(
                f'the variable "{name}" is {len(text):,} characters long; the limit is {MAX_FIELD_LENGTH:,}'
            )
        cleaned[name] = text
    return cleaned


def _consent_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("consent_at must be a string, a time like 2026-11-02T10:15:00+08:00")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"consent_at {value!r} is not a time like 2026-11-02T10:15:00+08:00") from None
    if moment.tzinfo is None:
        raise ValueError(f"consent_at {value!r} has no UTC offset: add one, e.g. +08:00 or Z")
    if moment > timezone.now():
        raise ValueError(f"consent_at {value!r} is in the future")
    return moment


def check_row(index: int, row: Any, region: str, default_tz: str | None) -> Row | str:
    """One input row: a Row, or the reason it is rejected."""
    if not isinstance(row, dict):
        return "a contact must be a JSON object"
    unknown = [name for name in row if name not in ROW_FIELDS]
    if unknown:
        return f"unknown field {unknown[0]!r}: a contact has {', '.join(ROW_FIELDS)}"
    values: dict[str, Any] = {}
    try:
        phone = _text(row, "phone")
        tz_value = _text(row, "timezone") or ""
        for name in ("external_id", "name", "consent_source"):
            text = _text(row, name)
            if text is not None:
                values[name] = text
        if "variables" in row and row["variables"] is not None:
            values["fields"] = _variables(row["variables"])
        if row.get("consent_basis") is not None:
            basis = row["consent_basis"]
            if basis not in CONSENT_BASES:
                raise ValueError(f"consent_basis {basis!r} is not one of {', '.join(CONSENT_BASES)}")
            values["consent_basis"] = basis
        if "consent_at" in row:
            values["consent_at"] = _consent_at(row["consent_at"])
    except ValueError as error:
        return str(error)
    if phone is None:
        return "the phone number is missing"
    checked = check_phone_and_timezone(phone, tz_value, region, default_tz)
    if isinstance(checked, str):
        return checked
    e164, tz, tz_explicit = checked
    return Row(index=index, phone=e164, timezone=tz, tz_explicit=tz_explicit, values=values)


def _written(contact: Record) -> tuple[Any, ...]:
    return tuple(getattr(contact, name) for name in WRITTEN_FIELDS)


def _existing(contact_list: ContactList, rows: list[Row]) -> list[Record]:
    phones = sorted({r.phone for r in rows})
    external_ids = sorted({r.values["external_id"] for r in rows if r.values.get("external_id")})
    found: dict[int, Record] = {}
    for keys, lookup in ((phones, "phone__in"), (external_ids, "external_id__in")):
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            query = Contact.objects.filter(Q(**{lookup: chunk}), contact_list=contact_list)
            for values in query.values_list("pk", *WRITTEN_FIELDS):
                found[values[0]] = Record(*values)
    return list(found.values())


def upsert_contacts(contact_list: ContactList, rows: list[Any]) -> UpsertResult:
    """Create or update the contacts `rows` describe; every row ends up created, updated, unchanged, merged or
    rejected (with its index and reason)."""
    if len(rows) > MAX_ROWS:
        raise TooManyRows(f"At most {MAX_ROWS:,} contacts a request: this one has {len(rows):,}; split it.")
    result = UpsertResult()
    region = (contact_list.default_region or settings.DEFAULT_REGION).upper()
    default_tz = canonical_timezone(contact_list.default_timezone) if contact_list.default_timezone else None
    valid: list[Row] = []
    for index, row in enumerate(rows):
        checked = check_row(index, row, region, default_tz)
        if isinstance(checked, str):
            result.rejected.append({"index": index, "reason": checked})
        else:
            valid.append(checked)

    with transaction.atomic():
        # One writer per list at a time: two requests creating the same new phone cannot both insert it.
        ContactList.objects.select_for_update().filter(pk=contact_list.pk).first()
        by_phone: dict[str, Target] = {}
        by_external_id: dict[str, Target] = {}
        for contact in _existing(contact_list, valid):
            target = Target(contact=contact, before=_written(contact))
            by_phone[contact.phone] = target
            if contact.external_id:
                by_external_id[contact.external_id] = target
        released: set[str] = set()  # phones moved off a contact in this request
        targets: list[Target] = []
        for row in valid:
            target = _resolve(row, by_phone, by_external_id, released, result)
            if target is None:
                continue
            if target.indexes:
                result.merged += 1
            else:
                targets.append(target)
            target.indexes.append(row.index)
            _apply(target.contact, row, merge=len(target.indexes) > 1)

        new = [t for t in targets if t.before is None]
        changed = [t for t in targets if t.before is not None and _written(t.contact) != t.before]
        _write(contact_list, [t.contact for t in new], [t.contact for t in changed])
    changed_ids = {t.contact.pk for t in changed}
    for target in targets:
        if target.before is None:
            outcome = "created"
        elif target.contact.pk in changed_ids:
            outcome = "updated"
        else:
            outcome = "unchanged"
        setattr(result, outcome, getattr(result, outcome) + 1)
        for position, index in enumerate(target.indexes):
            result.contacts.append(
                {
                    "index": index,
                    "id": target.contact.pk,
                    "external_id": target.contact.external_id,
                    "result": outcome if position == 0 else "merged",
                }
            )
    result.contacts.sort(key=lambda c: c["index"])
    log.info(
        "API upsert into %s: %d created, %d updated, %d unchanged, %d merged, %d rejected",
        contact_list,
        result.created,
        result.updated,
        result.unchanged,
        result.merged,
        len(result.rejected),
    )
    return result


def _write(contact_list: ContactList, new: list[Record], changed: list[Record]) -> None:
    """INSERT the new contacts (their ids set on them) and UPDATE the changed ones: on PostgreSQL through a COPY
    into a staging table, elsewhere with bulk_create (ON CONFLICT (id) DO UPDATE for the changed)."""
    if connection.vendor != "postgresql":

        def model(record: Record) -> Contact:
            return Contact(
                contact_list=contact_list, id=record.pk, **{f: getattr(record, f) for f in WRITTEN_FIELDS}
            )

        created = [model(record) for record in new]
        Contact.objects.bulk_create(created, batch_size=2000)
        for record, contact in zip(new, created, strict=True):
            record.pk = contact.pk
        if changed:
            Contact.objects.bulk_create(
                [model(record) for record in changed],
                batch_size=2000,
                update_conflicts=True,
                unique_fields=["id"],
                update_fields=WRITTEN_FIELDS,
            )
        return
    if not new and not changed:
        return
    table = connection.ops.quote_name(Contact._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(Contact._meta.get_field(f).column) for f in WRITTEN_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE contact_upsert (id bigint, phone varchar(20), external_id varchar(100), "
            "name varchar(200), timezone varchar(64), fields jsonb, consent_basis varchar(20), "
            "consent_at timestamptz, consent_source varchar(200)) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY contact_upsert (id, {columns}) FROM STDIN") as copy:
            for contact in (*new, *changed):
                copy.write_row(
                    (
                        contact.pk, contact.phone, contact.external_id, contact.name, contact.timezone,
                        json.dumps(contact.fields, ensure_ascii=False), contact.consent_basis, contact.consent_at,
                        contact.consent_source,
                    )
                )  # fmt: skip
        if changed:
            assignments = ", ".join(f"{c} = s.{c}" for c in columns.split(", "))
            cursor.execute(
                f"UPDATE {table} AS c SET {assignments} FROM contact_upsert s WHERE s.id IS NOT NULL AND c.id = s.id"
            )
        if new:
            cursor.execute(
                f"INSERT INTO {table} (contact_list_id, {columns}) SELECT %s, {columns} FROM contact_upsert "
                "WHERE id IS NULL ORDER BY phone RETURNING id, phone",
                [contact_list.pk],
            )
            ids = dict((phone, pk) for pk, phone in cursor.fetchall())
            for contact in new:
                contact.pk = ids[contact.phone]
        cursor.execute("DROP TABLE contact_upsert")


def _resolve(
    row: Row,
    by_phone: dict[str, Target],
    by_external_id: dict[str, Target],
    released: set[str],
    result: UpsertResult,
) -> Target | None:
    """The contact this row writes, or None when it is rejected (the reason added to `result`)."""

    def reject(reason: str) -> None:
        result.rejected.append({"index": row.index, "reason": reason})

    external_id = row.values.get("external_id", "")
    owner = by_phone.get(row.phone)
    if row.phone in released:
        reject(
            f"the phone number {row.phone} was moved off another contact earlier in this request; "
            "send this row again in a later request"
        )
        return None
    if not external_id:
        if owner is None:
            owner = Target(contact=Record(pk=None, phone=row.phone), before=None)
            by_phone[row.phone] = owner
        return owner
    target = by_external_id.get(external_id)
    if target is None:
        if owner is None:
            target = Target(
                contact=Record(pk=None, phone=row.phone, external_id=external_id),
                before=None,
            )
            by_phone[row.phone] = target
        elif owner.contact.external_id:
            reject(
                f"the phone number {row.phone} already belongs to the contact with external_id "
                f"{owner.contact.external_id!r} in this list"
            )
            return None
        else:
            target = owner  # a contact known by phone gets the order system's key
        by_external_id[external_id] = target
        return target
    if owner is not None and owner is not target:
        reject(
            f"the phone number {row.phone} already belongs to the contact with external_id "
            f"{owner.contact.external_id!r} in this list"
        )
        return None
    if target.contact.phone != row.phone:
        released.add(target.contact.phone)
        del by_phone[target.contact.phone]
        by_phone[row.phone] = target
    return target


def _apply(contact: Record, row: Row, *, merge: bool) -> None:
    """Set what the row sent; in a merge (a later row for the same contact) only non-empty values win."""
    contact.phone = row.phone
    if row.tz_explicit or not merge:
        contact.timezone = row.timezone
    for name, value in row.values.items():
        if name == "fields":
            contact.fields = {**contact.fields, **{k: v for k, v in value.items() if v}} if merge else value
        elif value or not merge:
            setattr(contact, name, value)
