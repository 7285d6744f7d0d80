"""Recompute every call's report facts from its attempts: after restoring attempts from a backup, or after
rows were written by hand. The reports read these facts; the webhooks keep them as calls happen."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from campaigns.lifecycle import rebuild_call_facts
from campaigns.models import Call


class Command(BaseCommand):
    help = "Recompute the per-call report facts (answered, human, listened, final keys, talk time) from the attempts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, action="append", help="only this campaign id (repeatable)")

    def handle(self, *args: object, **options: object) -> None:
        calls = Call.objects.all()
        if options["campaign"]:
            calls = calls.filter(campaign_id__in=options["campaign"])
        updated = rebuild_call_facts(calls)
        self.stdout.write(f"{updated} calls updated")
