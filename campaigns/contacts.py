"""Contact lists: add or update contacts from a CSV, one bad row failing only itself."""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext

from campaigns.cells import guard_cell
from campaigns.contacts_csv import COMBINE, REASON_COLUMN, CsvImportError, parse_contacts_csv
from campaigns.models import Contact, ContactImport, ContactList

log = logging.getLogger(__name__)


def import_contacts(
    contact_list: ContactList, data: bytes, *, filename: str, by: Any = None, duplicates: str = COMBINE
) -> ContactImport:
    """Add or update contacts from a CSV; every line ends up created, updated, merged or rejected. Rows repeating
    a number earlier in the file are folded into it as `duplicates` says (campaigns.contacts_csv)."""
    record = ContactImport(contact_list=contact_list, filename=filename[:255], imported_by=by, duplicates=duplicates)
    try:
        region = (contact_list.default_region or settings.DEFAULT_REGION).upper()
        parsed = parse_contacts_csv(
            data, default_region=region, default_timezone=contact_list.default_timezone or None, duplicates=duplicates
        )
    except (CsvImportError, ValueError) as exc:  # ValueError: a region phonenumbers does not know
        record.error = str(exc)
        record.save()
        return record
    record.encoding = parsed.encoding
    record.total_rows = parsed.total_rows
    record.merged = parsed.merged
    record.rejected = len(parsed.rejected)
    record.rejected_rows = [{"line": r.line, "reason": r.reason, "raw": r.raw} for r in parsed.rejected]
    record.merged_rows = [{"line": m.line, "into_line": m.into_line, "changes": m.changes} for m in parsed.merged_rows]
    record.header, record.delimiter = parsed.header, parsed.delimiter
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


def rejected_rows_csv(record: ContactImport) -> str:
    """The import's rejected rows as a CSV to fix and upload again: the file's own header and cells, with the
    reason in a first column (REASON_COLUMN) that the importer ignores. Formula-like cells are guarded, and the
    importer reads them back as they were."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=record.delimiter or ",", lineterminator="\r\n")
    # A file that was itself such a download has the old reasons in a column: they are not carried on.
    old = {i for i, name in enumerate(record.header) if name.strip().lower() == REASON_COLUMN}
    writer.writerow([REASON_COLUMN, *(name for i, name in enumerate(record.header) if i not in old)])
    for row in record.rejected_rows:
        cells = next(csv.reader(io.StringIO(row["raw"]), delimiter=record.delimiter or ","), [])
        kept = (guard_cell(c) for i, c in enumerate(cells) if i not in old)
        reason = gettext("line %(line)s: %(reason)s") % {"line": row["line"], "reason": row["reason"]}
        writer.writerow([guard_cell(reason), *kept])
    return out.getvalue()
