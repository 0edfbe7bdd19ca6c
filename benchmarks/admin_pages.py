"""The admin's conversation list and analytics page with a large synthetic history.

    .venv/bin/python -m benchmarks.admin_pages --replies 1000000
    .venv/bin/python scripts/with_postgres.py -m benchmarks.admin_pages --replies 1000000

Seeds the database with `seed_usage` (SQLite in var/bench/ unless DATABASE_URL is set; `--reuse`
keeps a database that already holds that many replies), then renders each page in-process with
Django's test client as a signed-in superuser: once cold, then `--runs` times warm. Reports the
median and worst warm time, the status and the number of SQL queries of each page.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.test import Client

    from chat.models import Conversation

# Django is imported only in `main`, after this: the benchmark's SQLite database lives apart from
# the one `make run` uses (with DATABASE_URL set, the database is that one and this directory
# only holds the secret key).
BENCH_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"
os.environ["CHATSITE_DATA_DIR"] = str(BENCH_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

BENCH_ADMIN = "bench-admin"


@dataclass
class Timing:
    label: str
    url: str
    status: int
    cold_ms: float
    median_ms: float
    max_ms: float
    queries: int
    sql_ms: float
    slowest_query_ms: float
    slowest_query: str


def _get(client: Client, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.get(url)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)  # type: ignore[attr-defined]
    else:
        response.content  # noqa: B018 - rendered lazily until read
    return response.status_code, (time.perf_counter() - started) * 1000


def measure(client: Client, label: str, url: str, runs: int) -> Timing:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    status, cold = _get(client, url)
    warm = [_get(client, url)[1] for _ in range(runs)]
    # Counted on a separate run: capturing queries forces a debug cursor, which costs a little.
    # Its times are of executing each query; on SQLite rows are produced while being fetched,
    # so a query that returns many rows counts partly as Python time.
    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
    return Timing(
        label=label,
        url=url,
        status=status,
        cold_ms=cold,
        median_ms=statistics.median(warm) if warm else cold,
        max_ms=max(warm) if warm else cold,
        queries=len(captured.captured_queries),
        sql_ms=sum(float(q["time"]) for q in captured.captured_queries) * 1000,
        slowest_query_ms=float(slowest["time"]) * 1000 if slowest else 0.0,
        slowest_query=slowest["sql"] if slowest else "",
    )


def heaviest_user() -> int:
    """The user with the most conversations: the heaviest "one user" page (0: none)."""
    from django.db.models import Count

    from chat.models import Conversation

    return (
        Conversation.objects.filter(user__isnull=False)
        .values("user")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("user", flat=True)
        .first()
    ) or 0


def database_size() -> str:
    from django.conf import settings
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = cursor.fetchone()[0]
    else:
        name = Path(settings.DATABASES["default"]["NAME"])
        size = sum(p.stat().st_size for p in name.parent.glob(name.name + "*"))
    return f"{size / 2**20:,.0f} MiB"


def seed(replies: int, *, reuse: bool) -> str:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from chat.models import Message

    call_command("migrate", verbosity=0)
    existing = Message.objects.filter(role=Message.Role.ASSISTANT).count()
    if reuse and existing >= replies:
        return f"reused ({existing:,} replies already there)"
    name = Path(str(settings.DATABASES["default"]["NAME"]))
    if connection.vendor == "sqlite" and name.parent == BENCH_DIR:
        # Start from an empty file: SQLite keeps the pages a --clear frees, which would
        # double the size reported and spread the tables over the file.
        connection.close()
        for path in BENCH_DIR.glob(name.name + "*"):
            path.unlink()
        call_command("migrate", verbosity=0)
    started = time.perf_counter()
    call_command("seed_usage", replies=replies, clear=True)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # What autovacuum would do soon after a bulk load: the planner needs row counts.
            cursor.execute("VACUUM ANALYZE")
        elif connection.vendor == "sqlite":
            # Fold the write-ahead log into the database file, as the last connection would.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return f"{elapsed:.0f} s (including daily roll-ups)"


def pages(conversation: Conversation, heavy_user: int) -> list[tuple[str, str]]:
    from django.utils import timezone

    base = "/admin/chat/conversation/"
    report = "/admin/chat/usagereport/"
    today = timezone.localdate()
    yesterday = f"{today - timedelta(days=1):%Y-%m-%d}"
    day_and_model = f"active_from={yesterday}&active_to={yesterday}&model__exact=gpt-4o"
    long_start, long_end = f"{today - timedelta(days=90):%Y-%m-%d}", f"{today:%Y-%m-%d}"
    return [
        ("Conversation list", base),
        ("… ended reason = stopped", f"{base}?ended_reason=stopped"),
        ("… owner = anonymous", f"{base}?owner=anonymous"),
        ("… page 50", f"{base}?p=50"),
        ("Conversation (change page)", f"{base}{conversation.pk}/change/"),
        ("Analytics, 7 days", "/admin/chat/usagereport/?days=7"),
        ("Analytics, 30 days", "/admin/chat/usagereport/?days=30"),
        ("Analytics, 90 days", "/admin/chat/usagereport/?days=90"),
        ("… feedback = bad", f"{base}?feedback=down"),
        ("… source = api", f"{base}?source=api"),
        ("… one day, one model", f"{base}?{day_and_model}"),
        ("Analytics, 90 days, model = gpt-4o", f"{report}?days=90&model=gpt-4o"),
        ("Analytics, 90 days, source = api", f"{report}?days=90&source=api"),
        ("Analytics, 90 days, anonymous", f"{report}?days=90&owner=anonymous"),
        ("Analytics, 30 days, one user", f"{report}?days=30&owner=user:{heavy_user}"),
        ("Analytics, a 91-day range", f"{report}?start={long_start}&end={long_end}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database that already has that many replies"
    )
    parser.add_argument("--show-queries", action="store_true", help="print each slowest query")
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from chat.models import Conversation, Message

    seeding = seed(args.replies, reuse=args.reuse)

    User = get_user_model()  # noqa: N806 - a class
    admin, _ = User.objects.get_or_create(
        username=BENCH_ADMIN, defaults={"is_staff": True, "is_superuser": True}
    )
    # The test client's host is "testserver"; settings allow only the real local names.
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    # A long conversation: the change page's inline lists all its messages.
    conversation = (
        Conversation.objects.filter(message_count__gte=20).order_by("-updated_at").first()
        or Conversation.objects.order_by("-updated_at").first()
    )
    if conversation is None:
        raise SystemExit("No conversations: seed some with --replies.")

    replies = Message.objects.filter(role=Message.Role.ASSISTANT).count()
    conversations = Conversation.objects.count()
    engine = connection.vendor
    version = ""
    if engine == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = f" {cursor.fetchone()[0]}"
    print(
        f"\n{engine}{version}: {replies:,} replies in "
        f"{conversations:,} conversations; database {database_size()}; seeding {seeding}"
    )
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, {args.runs} warm runs\n")

    heavy_user = heaviest_user()
    results = [
        measure(client, label, url, args.runs) for label, url in pages(conversation, heavy_user)
    ]
    print(
        "| Page | URL | Status | Cold | Warm median | Warm max | Queries | SQL time "
        "| Slowest query |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        r.url = r.url.replace(str(conversation.pk), "<id>")
        if r.status == 404:
            print(f"| {r.label} | `{r.url}` | 404 | not available yet | | | | | |")
            continue
        print(
            f"| {r.label} | `{r.url}` | {r.status} | {r.cold_ms:.0f} ms | {r.median_ms:.0f} ms "
            f"| {r.max_ms:.0f} ms | {r.queries} | {r.sql_ms:.0f} ms | {r.slowest_query_ms:.0f} ms |"
        )
    if args.show_queries:
        for r in results:
            print(f"\n{r.label} — slowest query ({r.slowest_query_ms:.0f} ms):\n{r.slowest_query}")


if __name__ == "__main__":
    main()
