from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat.analytics.rollups import rollups_build
from chat.models import UsageDay


class Command(BaseCommand):
    help = (
        "Roll up the usage of every finished day for the admin's analytics page. The page and "
        "the running workers do this on their own, a day at a time; run it after importing or "
        "upgrading a large history so the first view of the page is quick."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rebuild", action="store_true", help="delete every roll-up and build them again"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild"]:
            UsageDay.objects.all().delete()
        started = time.perf_counter()
        built = rollups_build()
        elapsed = time.perf_counter() - started
        self.stdout.write(f"Rolled up {built} day{'' if built == 1 else 's'} in {elapsed:.1f} s.")
