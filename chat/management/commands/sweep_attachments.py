from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.attachments.store import attachments_sweep


class Command(BaseCommand):
    help = (
        "Remove attachments uploaded more than a day ago and never sent with a message, and "
        "their stored files when no other attachment shares them. Run it daily (cron)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        removed = attachments_sweep()
        self.stdout.write(f"{removed} unsent attachment{'' if removed == 1 else 's'} removed.")
