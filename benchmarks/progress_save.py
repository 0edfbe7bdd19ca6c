"""What saving live replies' progress costs the database, to choose CHAT_FLUSH_SECONDS.

    .venv/bin/python -m benchmarks.progress_save [--replies 100] [--saves 200]
    .venv/bin/python scripts/with_postgres.py -m benchmarks.progress_save

The writer (chat/db/writer.py) saves every live reply's text in one transaction per interval;
a shorter interval means a crash loses less of what readers saw, and more of these transactions.
This runs that transaction (`progress_save`) for `--replies` streaming replies, each a little
longer every time as a reply grows, `--saves` times, and reports the wall and CPU time per save
and what one worker spends per second at each interval. SQLite in a temporary directory, or the
database of DATABASE_URL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("CHATSITE_DATA_DIR", tempfile.mkdtemp(prefix="chatsite-progress-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from chat.db.writer import Progress, progress_save  # noqa: E402
from chat.models import Conversation, Message  # noqa: E402

WORDS = "Each save writes the whole text so far, as a reply grows by a few tokens a tick. "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--saves", type=int, default=200)
    args = parser.parse_args()
    call_command("migrate", verbosity=0, interactive=False)
    ids = []
    for n in range(args.replies):
        conversation = Conversation.objects.create(title=f"bench {n}")
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
            model="openai:gpt-4.1-mini",
        )
        ids.append(message.pk)
    walls, cpus = [], []
    for save in range(1, args.saves + 1):
        text = WORDS * (1 + save // 4)  # ~2,000 characters by the end of 100 saves
        batch = [Progress(message_id=pk, text=text, seq=save) for pk in ids]
        wall, cpu = time.perf_counter(), time.process_time()
        live = progress_save(batch)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if len(live) != args.replies:
            raise SystemExit(f"only {len(live)} of {args.replies} replies were still streaming")
    wall_ms = statistics.median(walls) * 1000
    cpu_ms = statistics.median(cpus) * 1000
    print(  # noqa: T201
        f"{connection.vendor}: one save of {args.replies} live replies: "
        f"{wall_ms:.1f} ms wall (p95 {sorted(walls)[int(len(walls) * 0.95)] * 1000:.1f}), "
        f"{cpu_ms:.1f} ms CPU in the worker"
    )
    for interval in (1.0, 0.5, 0.25, 0.1):
        print(  # noqa: T201
            f"  every {interval:.2f} s: the writer busy {wall_ms / interval / 10:.1f} % "
            f"of the time, {cpu_ms / interval / 10:.1f} % of a core in the worker"
        )


if __name__ == "__main__":
    main()
