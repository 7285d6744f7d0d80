"""Contact lists: add or update contacts from a CSV, one bad row failing only itself."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from campaigns.contacts_csv import CsvImportError, parse_contacts_csv
from campaigns.models import Contact, ContactImport, ContactList

log = logging.getLogger(__name__)


def import_contacts(contact_list: ContactList, data: bytes, *, filename: str, by: Any = None) -> ContactImport:
    """Add or update contacts from a CSV; every line ends up created, updated, merged or rejected."""
    record = ContactImport(contact_list=contact_list, filename=filename[:255], imported_by=by)
    try:
        region = (contact_list.default_region or settings.DEFAULT_REGION).upper()
        parsed = parse_contacts_csv(data, default_region=region, default_timezone=contact_list.default_timezone or None)
    except (CsvImportError, ValueError) as exc:  # ValueError: a region phonenumbers does not know
        record.error = str(exc)
        record.save()
        return record
    record.encoding = parsed.encoding
    record.total_rows = parsed.total_rows
    record.merged = parsed.merged
    record.rejected = len(parsed.rejected)
    record.rejected_rows = [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in parsed.rejected]
    with transaction.atomic():
        existing = dict(contact_list.contacts.values_list("phone", "pk"))
        new, changed = [], []
        for item in parsed.contacts:
            contact = Contact(
                contact_list=contact_list,
                phone=item.phone,
                name=item.name,
                timezone=item.timezone,
                fields=item.fields,
                source_line=item.line,
            )
            if item.phone in existing:
                contact.pk = existing[item.phone]
                changed.append(contact)
            else:
                new.append(contact)
        Contact.objects.bulk_create(new, batch_size=2000)
        Contact.objects.bulk_update(changed, ["name", "timezone", "fields", "source_line"], batch_size=2000)
        record.created, record.updated = len(new), len(changed)
        record.save()
    log.info(
        "import %s into %s: %d created, %d updated, %d merged, %d rejected",
        filename, contact_list, record.created, record.updated, record.merged, record.rejected,
    )
    return record
