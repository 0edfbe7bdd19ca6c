"""A few long-lived threads for the database work of replies: the jobs' reads (a reply's
context, the reaper) and their readers' (a watch, the first liveness check, the finished
message). Their writes go through the one writer thread (chat/db/writer.py).

A pool rather than `database_sync_to_async`: that runs each call in the socket's own thread and
closes the connection after it (with CONN_MAX_AGE = 0), so every hop of every reply opened a new
database connection (on SQLite, a file open plus the WAL pragmas): ~5 % of the server's CPU at
50 streams (docs/journal.md, the second pass). These threads keep theirs; a broken one is closed
and the next call reconnects. Several threads, so one slow query does not stall the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None


async def db_read(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`, which reads, on one of the database threads."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.CHAT_JOB_DB_THREADS, thread_name_prefix="reply-db"
        )

    def call() -> T:
        try:
            return function(*args)
        except DatabaseError:
            # A broken connection must not stay in the pool thread: the next call reconnects.
            connections.close_all()
            raise

    return await asyncio.get_running_loop().run_in_executor(_executor, call)
