"""Synthetic usage history, so the admin's conversation list and analytics can be measured.

    python manage.py seed_usage --replies 1000000
    python manage.py seed_usage --replies 300 --days 30 --seed 7 --clear

The generator lives in `chat.management.seeding`.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Max, Min, Q

from chat.analytics.rollups import rollups_build
from chat.management.seeding import SEED_USER_PREFIX, SEED_VISITOR_PREFIX, Seeder
from chat.models import Conversation, Message, UsageDay


class Command(BaseCommand):
    help = (
        "Write synthetic conversations and replies (marked seed-…) ending today, with real "
        "prices, so the admin pages can be measured. --clear removes earlier seeded data first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--replies", type=int, required=True, help="assistant replies")
        parser.add_argument("--days", type=int, default=120)
        parser.add_argument("--users", type=int, help="default: max(20, replies // 200)")
        parser.add_argument(
            "--anonymous-share", type=float, default=0.3, help="of conversations (0-1)"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--batch-size", type=int, default=5000, help="messages per insert")
        parser.add_argument("--clear", action="store_true", help="delete seeded data first")
        parser.add_argument(
            "--no-rollups",
            action="store_true",
            help="leave the daily roll-ups to the first analytics view",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        replies: int = options["replies"]
        days: int = options["days"]
        share: float = options["anonymous_share"]
        if replies < 0 or days < 1 or not 0 <= share <= 1:
            raise CommandError("--replies >= 0, --days >= 1 and 0 <= --anonymous-share <= 1.")
        users = options["users"] if options["users"] is not None else max(20, replies // 200)
        started = time.perf_counter()
        if options["clear"]:
            self._clear()
        if replies:
            seeder = Seeder(
                replies=replies,
                days=days,
                users=max(1, users),
                anonymous_share=share,
                seed=options["seed"],
                batch_size=max(100, options["batch_size"]),
                write=self.stdout.write,
            )
            seeder.run()
        self.stdout.write(f"Done in {time.perf_counter() - started:.1f} s.")
        if replies and not options["no_rollups"]:
            self._build_rollups()

    def _clear(self) -> None:
        started = time.perf_counter()
        seeded = Conversation.objects.filter(
            Q(user__username__startswith=SEED_USER_PREFIX)
            | Q(user__isnull=True, visitor_id__startswith=SEED_VISITOR_PREFIX)
        )
        messages = Message.objects.filter(conversation__in=seeded)
        span = messages.aggregate(first=Min("day"), last=Max("day"))
        with transaction.atomic():
            # Roll-ups are derived data: the days the seeded replies counted in are rebuilt.
            if span["first"] is not None:
                UsageDay.objects.filter(day__range=(span["first"], span["last"])).delete()
            # Messages first, in one statement: deleting conversations alone would make the
            # cascade collect every message id in Python.
            deleted_messages, _ = messages.delete()
            _, deleted = seeded.delete()
            users = get_user_model().objects.filter(username__startswith=SEED_USER_PREFIX)
            _, deleted_users = users.delete()
        self.stdout.write(
            f"Cleared seeded data: {deleted.get(Conversation._meta.label, 0):,} conversations, "
            f"{deleted_messages:,} messages and "
            f"{deleted_users.get(users.model._meta.label, 0):,} users "
            f"({time.perf_counter() - started:.1f} s)."
        )

    def _build_rollups(self) -> None:
        started = time.perf_counter()
        built = rollups_build()
        self.stdout.write(
            f"Built daily roll-ups for {built} days in {time.perf_counter() - started:.1f} s."
        )
