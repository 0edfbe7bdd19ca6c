from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chat.replies.reaper import reply_reap_stale


class Command(BaseCommand):
    help = (
        "End replies left streaming by a worker that died (no heartbeat for "
        "CHAT_WORKER_DEAD_AFTER_SECONDS) as interrupted, keeping the text they streamed. Running "
        "workers do this on their own from start-up; this is for cron or after a crash."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ended = reply_reap_stale()
        self.stdout.write(f"{ended} stale repl{'y' if ended == 1 else 'ies'} ended as interrupted.")
