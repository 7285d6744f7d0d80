"""Benchmark: result webhook deliveries per second per worker thread, to a receiver on this machine.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench .venv/bin/python bench/webhooks.py
    .venv/bin/python bench/webhooks.py --deliveries 500 --threads 4        # SQLite under HERALD_VAR_DIR

The database must exist and be migrated (`manage.py migrate`). The bench creates a campaign under a unique
`bench-webhooks-<hex>` name with --deliveries call.finished events for one endpoint (as the outbox writes them),
then posts them with `campaigns.webhooks` exactly as a worker's tasks do: claim a batch (one conditional UPDATE
per delivery), sign, POST, record the try. --threads threads do this at once, as one `celery worker --pool
threads -c N` process would. The receiver is the README's (signature checked, event id deduplicated) in a
process of its own, threaded, answering 204. It deletes everything it created at the end.

The last line of output is one JSON object: deliveries, seconds, deliveries per second (all threads together
and per thread), and the 1-minute load average (the figures move with whatever else the machine runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def receiver(secret: str) -> None:
    """The README's receiver on a free port (printed), threaded, until stdin closes."""
    from http.server import ThreadingHTTPServer

    block = re.search(r"```python\n(import hashlib, hmac.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README's receiver is missing"
    code = "".join(line for line in block.group(1).splitlines(True) if not line.startswith("HTTPServer("))
    os.environ["HERALD_WEBHOOK_SECRET"] = secret
    namespace: dict = {"__name__": "receiver", "print": lambda *args: None}
    exec(compile(code, "README.md receiver", "exec"), namespace)  # noqa: S102  (our own README)

    class Quiet(namespace["Receiver"]):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    print(json.dumps({"handled": len(namespace["seen"])}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--receiver", metavar="SECRET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        receiver(args.receiver)
        return

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "herald.settings")
    os.environ["HERALD_WEBHOOK_LOCAL_HTTP"] = "1"  # the receiver is http on 127.0.0.1
    os.environ.setdefault("HERALD_LOG_LEVEL", "WARNING")  # one INFO line per delivery otherwise
    import django

    django.setup()
    from django.db import connection, connections
    from django.utils import timezone

    from campaigns import webhooks
    from campaigns.models import (
        CALL_FINISHED,
        Campaign,
        ContactList,
        WebhookDelivery,
        WebhookEndpoint,
        WebhookEvent,
    )
    from telephony.models import TelephonyAccount

    tag = f"bench-webhooks-{secrets.token_hex(4)}"
    account = TelephonyAccount.objects.create(name=tag)
    contact_list = ContactList.objects.create(name=tag)
    campaign = Campaign.objects.create(name=tag, contact_list=contact_list, telephony_account=account,
                                       caller_id="+862161234567")  # fmt: skip
    proc = None
    try:
        endpoint, secret = webhooks.create_endpoint(name=tag, url="http://127.0.0.1:1/", events=[CALL_FINISHED])
        proc = subprocess.Popen([sys.executable, __file__, "--receiver", secret], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=f"http://127.0.0.1:{port}/herald/webhooks")
        now = timezone.now()
        payload = {"call_id": 0, "campaign": {"id": campaign.pk, "name": tag}, "variant": "A",
                   "contact": {"external_id": "JD1000000001", "phone": "+8613800138000", "name": "张伟",
                               "variables": {"order_id": "JD1000000001", "slot": "明天上午"}},
                   "state": "done", "outcome": "answered", "attempts": 1, "keys": "1", "flow_path": ["message", "1"],
                   "final_action": "confirmed", "final_action_detail": ""}  # fmt: skip
        events = WebhookEvent.objects.bulk_create(
            WebhookEvent(type=CALL_FINISHED, campaign=campaign, payload={**payload, "call_id": i}, created_at=now)
            for i in range(args.deliveries)
        )
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(event=event, endpoint_id=endpoint.pk, next_attempt_at=now, created_at=now)
            for event in events
        )
        batch = max(1, min(100, args.deliveries // (args.threads * 4) or 1))

        def work(counts: list[dict]) -> None:
            got: dict[str, int] = {}
            try:
                while True:
                    verdicts = webhooks.send_due(limit=batch)
                    if not verdicts:
                        break
                    for verdict, n in verdicts.items():
                        got[verdict] = got.get(verdict, 0) + n
            finally:
                connections.close_all()
            counts.append(got)

        counts: list[dict] = []
        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(counts,)) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        proc.stdin.close()
        handled = json.loads(proc.stdout.readline())["handled"]
        proc.wait(timeout=10)
        delivered = WebhookDelivery.objects.filter(endpoint=endpoint, state="delivered").count()
        figures = {
            "database": connection.vendor,
            "deliveries": args.deliveries,
            "threads": args.threads,
            "delivered": delivered,
            "handled_by_receiver": handled,
            "verdicts": {k: sum(c.get(k, 0) for c in counts) for k in {k for c in counts for k in c}},
            "seconds": round(seconds, 2),
            "deliveries_per_second": round(delivered / seconds, 1),
            "per_thread": round(delivered / seconds / args.threads, 1),
            "load_1min": round(os.getloadavg()[0], 2),
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        Campaign.objects.filter(pk=campaign.pk).delete()  # its events and their deliveries go with it
        WebhookEndpoint.objects.filter(name=tag).delete()
        contact_list.delete()
        account.delete()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
