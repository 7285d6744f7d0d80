"""Contact lists: add or update contacts from a CSV, one bad row failing only itself."""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import gettext

from campaigns.cells import guard_cell
from campaigns.contacts_csv import COMBINE, REASON_COLUMN, CsvImportError, parse_contacts_csv
from campaigns.models import Contact, ContactImport, ContactList

log = logging.getLogger(__name__)


SAVE_BATCH = 2000

Progress = Callable[[str, int, int], None]  # (stage: "reading" | "saving" | "done", done, total)


def import_contacts(
    contact_list: ContactList, data: bytes, *, filename: str, by: Any = None, duplicates: str = COMBINE,
    progress: Progress | None = None,
) -> ContactImport:
    """Add or update contacts from a CSV; every line ends up created, updated, merged or rejected. Rows repeating
    a number earlier in the file are folded into it as `duplicates` says (campaigns.contacts_csv).

    `progress` hears how far it got: lines read of the file's lines, then contacts saved of those to save, then
    "done" (with the contacts saved), for a big file's progress bar."""
    record = ContactImport(contact_list=contact_list, filename=filename[:255], imported_by=by, duplicates=duplicates)
    reading = (lambda done, total: progress("reading", done, total)) if progress else None
    try:
        region = (contact_list.default_region or settings.DEFAULT_REGION).upper()
        parsed = parse_contacts_csv(
            data, default_region=region, default_timezone=contact_list.default_timezone or None, duplicates=duplicates,
            on_progress=reading,
        )
    except (CsvImportError, ValueError) as exc:  # ValueError: a region phonenumbers does not know
        record.error = str(exc)
        record.save()
        if progress:
            progress("done", 0, 0)
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
        total, saved = len(new) + len(changed), 0
        writes = [(new, Contact.objects.bulk_create), (changed, lambda batch: Contact.objects.bulk_update(
            batch, ["name", "timezone", "fields", "source_line"]
        ))]
        for contacts, write in writes:
            for start in range(0, len(contacts), SAVE_BATCH):
                batch = contacts[start : start + SAVE_BATCH]
                write(batch)
                saved += len(batch)
                if progress:
                    progress("saving", saved, total)
        record.created, record.updated = len(new), len(changed)
        record.save()
    if progress:
        progress("done", total, total)
    log.info(
        "import %s into %s: %d created, %d updated, %d merged, %d rejected",
        filename, contact_list, record.created, record.updated, record.merged, record.rejected,
    )
    return record


# --- a big file's progress, for the import page to show while the upload is being imported --------------------

PROGRESS_TOKEN = re.compile(r"\A[A-Za-z0-9-]{8,64}\Z")
PROGRESS_SECONDS = 3600  # how long a progress record is kept
PROGRESS_INTERVAL = 0.25  # at most this often written within one stage


def _progress_key(user_pk: int, token: str) -> str:
    return f"contact-import-progress:{user_pk}:{token}"


def progress_to_cache(user_pk: int, token: str) -> Progress:
    """An import's progress callback that keeps the latest state in the cache (shared by every web process), under
    the importing user and the page's own token: each stage's first and last word, and a word every 0.25 s."""
    key, last = _progress_key(user_pk, token), {"stage": "", "at": 0.0}

    def tell(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == last["stage"] and done < total and now - last["at"] < PROGRESS_INTERVAL:
            return
        last.update(stage=stage, at=now)
        cache.set(key, {"stage": stage, "done": done, "total": total}, PROGRESS_SECONDS)

    return tell


def read_progress(user_pk: int, token: str) -> dict[str, Any] | None:
    """The latest state the user's import with this token told, or None (not started, or another user's)."""
    return cache.get(_progress_key(user_pk, token))


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
