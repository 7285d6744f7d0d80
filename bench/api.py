"""Benchmark: contacts upserted per second through the API (POST /api/v1/contact-lists/<id>/contacts).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/api.py

The database must exist and be migrated (`manage.py migrate`). Each request goes through Django's test client
with a write token (the whole view: authentication, rate limit, JSON parsing, row checks, the upsert, the
audit entry, rendering the answer), in requests of `--batch` contacts (10,000 at most). Three passes over the
same contacts: all new, all changed (new names and variables), and the same again (unchanged). The JSON body
is encoded before the clock starts, as an order system's would be. Target: 5,000 contacts/s on PostgreSQL.
The list is deleted at the end. The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_PER_SECOND = 5000


def _setup_django() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        sys.exit(
            "bench/api.py measures the upsert on PostgreSQL; set DATABASE_URL, e.g.\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/api.py\n"
            f"(DATABASE_URL is {url or 'unset, which means SQLite'})"
        )
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("HERALD_API_RATE_PER_MINUTE", "1000000")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _rows(start: int, count: int, generation: int) -> list[dict[str, object]]:
    return [
        {
            "phone": f"+86139{n:08d}",
            "external_id": f"JD{n:010d}",
            "name": f"客户{n}-{generation}",
            "variables": {
                "order_id": f"JD{n:010d}",
                "slot": ["上午", "下午"][(n + generation) % 2],
                "items": str(n % 7),
            },
        }
        for n in range(start, start + count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    _setup_django()

    from django.contrib.auth.models import Permission, User
    from django.db import connection
    from django.test import Client

    from campaigns import tokens
    from campaigns.models import ContactList

    user, _ = User.objects.get_or_create(username="bench-api")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_contactlist", "add_contact", "change_contact"])
    )
    token, plain = tokens.create_token(name="bench", user=user, scopes=["read", "write"])
    client = Client(headers={"Authorization": f"Bearer {plain}"})
    name = f"bench-api-{int(time.time())}"
    created = client.post("/api/v1/contact-lists", {"name": name}, content_type="application/json")
    assert created.status_code == 201, created.content
    list_id = created.json()["id"]
    url = f"/api/v1/contact-lists/{list_id}/contacts"

    figures: dict[str, object] = {
        "contacts": args.contacts,
        "batch": args.batch,
        "database": connection.vendor,
    }
    try:
        for generation, label in ((0, "created"), (1, "updated"), (1, "unchanged")):
            seconds = 0.0
            for start in range(0, args.contacts, args.batch):
                body = json.dumps(
                    {"contacts": _rows(start, min(args.batch, args.contacts - start), generation)}
                )
                began = time.perf_counter()
                response = client.post(url, body, content_type="application/json")
                seconds += time.perf_counter() - began
                assert response.status_code == 200, response.content[:500]
                answer = response.json()
                assert answer[label] == min(args.batch, args.contacts - start), {k: answer[k] for k in (
                    "created", "updated", "unchanged", "merged")}  # fmt: skip
            rate = args.contacts / seconds
            figures[f"{label}_per_second"] = round(rate)
            print(
                f"{label:>9}: {args.contacts:,} contacts in {seconds:.2f} s = {rate:,.0f} contacts/s",
                flush=True,
            )
        slowest = min(figures[f"{k}_per_second"] for k in ("created", "updated", "unchanged"))  # type: ignore[type-var]
        figures["meets_target"] = slowest >= TARGET_PER_SECOND
    finally:
        ContactList.objects.filter(pk=list_id).delete()
        token.delete()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
