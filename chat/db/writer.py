"""One writer for the reply path: every live reply's progress saved together, and the starts and
endings of replies, on one thread in the order they came.

SQLite allows one writer at a time, and a transaction that finds the lock taken does not queue:
its busy handler sleeps in growing steps and tries again. With a transaction per live reply per
flush, plus one per send and per ending, from many threads, the sends spent most of their time
asleep in that handler while the CPU idled (docs/journal.md, the first pass). Here the writes of
the reply path never meet each other:

- `reply_progress_save` queues a reply's text and sequence number; the writer saves all the
  replies queued since its last save in one transaction, at most once per CHAT_FLUSH_SECONDS
  (group commit: one transaction per interval however many replies stream).
- `db_write` runs a write transaction of its own (a reply's start, its ending) on the same
  thread, as soon as the thread is free: a batch of progress takes a few milliseconds.

On PostgreSQL, which has row locks, the batch still saves round trips (one locking read and one
UPDATE per batch instead of one transaction per reply); starts stay concurrent there
(`writer_serializes_starts`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from chat.models import Message
from chat.providers.base import Usage

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """A live reply's text so far and the sequence number it reaches (saved together, so a page
    rendered from them resumes the stream right after)."""

    message_id: int
    text: str
    seq: int
    usage: Usage | None = None
    # Time to the first token, once there was one: kept if the reply later dies with its worker.
    ttft_ms: int | None = None


def progress_save(batch: list[Progress]) -> set[int]:
    """Save the progress of many replies in one transaction; returns the ids still streaming
    (a reply ended elsewhere, e.g. reaped, is not written and not returned)."""
    ids = [item.message_id for item in batch]
    now = timezone.now()
    with transaction.atomic():
        # Locked on PostgreSQL, so that a reaper ending one of them waits for this batch.
        live = set(
            Message.objects.select_for_update()
            .filter(pk__in=ids, status=Message.Status.STREAMING)
            .values_list("pk", flat=True)
        )
        # One parameterised UPDATE run for every row (executemany) rather than `bulk_update`,
        # whose CASE WHEN expressions cost more Django query building than the save itself.
        heartbeat = Message._meta.get_field("heartbeat_at").get_db_prep_value(now, connection)
        plain, with_usage = [], []
        for item in batch:
            if item.message_id not in live:
                continue
            if item.usage is None:
                plain.append((item.text, item.seq, heartbeat, item.ttft_ms, item.message_id))
            else:
                # Exact input counts sent early (Anthropic): kept for the reaper's estimate.
                usage = item.usage
                with_usage.append(
                    (item.text, item.seq, heartbeat, item.ttft_ms, usage.input_tokens,
                     usage.cached_input_tokens, item.message_id)
                )  # fmt: skip
        table = connection.ops.quote_name(Message._meta.db_table)
        columns = (
            "content = %s, stream_seq = %s, heartbeat_at = %s, ttft_ms = COALESCE(ttft_ms, %s)"
        )
        with connection.cursor() as cursor:
            if plain:
                cursor.executemany(f"UPDATE {table} SET {columns} WHERE id = %s", plain)  # noqa: S608 - our own names
            if with_usage:
                cursor.executemany(
                    f"UPDATE {table} SET {columns}, input_tokens = %s, "  # noqa: S608 - our own names
                    "cached_input_tokens = %s WHERE id = %s",
                    with_usage,
                )
    return live


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _resolve(
    waiter: _Waiter | concurrent.futures.Future[Any],
    result: Any = None,
    error: BaseException | None = None,
) -> None:
    if isinstance(waiter, concurrent.futures.Future):  # a synchronous caller, blocked on it
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
        return

    def settle() -> None:
        if waiter.future.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            waiter.future.set_exception(error)
        else:
            waiter.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is waiting
        waiter.loop.call_soon_threadsafe(settle)


class ReplyWriter:
    """The writer thread and its two queues. Safe to use from any event loop of the process."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._calls: deque[
            tuple[Callable[..., Any], tuple[Any, ...], _Waiter | concurrent.futures.Future[Any]]
        ] = deque()
        # One pending save per reply: a newer one replaces it, and both callers get its result.
        self._progress: dict[int, tuple[Progress, list[_Waiter]]] = {}
        self._progress_due = 0.0  # monotonic time before which no batch is saved
        self._thread: threading.Thread | None = None
        self.batches = 0  # saved so far (for tests and the benchmark)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="reply-writer", daemon=True)
            self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        waiter = _Waiter(asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
        with self._wake:
            self._ensure_thread()
            self._calls.append((function, args, waiter))
            self._wake.notify()
        return await waiter.future  # type: ignore[no-any-return]

    def call_blocking(self, function: Callable[..., T], *args: Any, timeout: float) -> T:
        """`call` for synchronous code (a sync view's request thread): queued behind what is
        there, and waited for, at most `timeout` seconds."""
        if threading.current_thread() is self._thread:
            return function(*args)  # already on the writer
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._wake:
            self._ensure_thread()
            self._calls.append((function, args, future))
            self._wake.notify()
        return future.result(timeout)

    async def save(self, progress: Progress) -> bool:
        waiter = _Waiter(asyncio.get_running_loop(), asyncio.get_running_loop().create_future())
        with self._wake:
            self._ensure_thread()
            _old, waiters = self._progress.get(progress.message_id, (progress, []))
            self._progress[progress.message_id] = (progress, [*waiters, waiter])
            self._wake.notify()
        return bool(await waiter.future)

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    now = time.monotonic()
                    progress_due = bool(self._progress) and now >= self._progress_due
                    if self._calls or progress_due:
                        break
                    timeout = self._progress_due - now if self._progress else None
                    self._wake.wait(timeout)
                calls = list(self._calls)
                self._calls.clear()
                batch = {}
                if progress_due:
                    batch, self._progress = self._progress, {}
                    # Leading edge: a batch goes at once after a quiet interval, and the next
                    # waits for the interval to pass, gathering every reply that saves meanwhile.
                    self._progress_due = now + settings.CHAT_FLUSH_SECONDS
            for function, args, waiter in calls:
                try:
                    _resolve(waiter, self._guarded(function, *args))
                except BaseException as exc:
                    _resolve(waiter, error=exc)
            if batch:
                self._save_batch(batch)

    def _save_batch(self, batch: dict[int, tuple[Progress, list[_Waiter]]]) -> None:
        try:
            live = self._guarded(progress_save, [item for item, _waiters in batch.values()])
        except BaseException as exc:
            for _item, waiters in batch.values():
                for waiter in waiters:
                    _resolve(waiter, error=exc)
            return
        self.batches += 1
        for message_id, (_item, waiters) in batch.items():
            for waiter in waiters:
                _resolve(waiter, message_id in live)

    @staticmethod
    def _guarded(function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except DatabaseError:
            # A broken connection must not stay with the thread: the next write reconnects.
            connection.close()
            raise


_writer = ReplyWriter()


async def db_write(function: Callable[..., T], *args: Any, concurrent: bool = False) -> T:
    """Run a write transaction (a sync function) on the writer thread, after what is queued.
    `concurrent`: a write that may run beside others where the database allows it (PostgreSQL's
    row locks; a send's start), which then runs on the database threads instead."""
    if concurrent and not writer_serializes_starts():
        from chat.db.threads import db_read

        return await db_read(function, *args)
    return await _writer.call(function, *args)


def db_write_blocking(function: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
    """`db_write` for synchronous code: a sync view that must write (rarely) does it on the
    writer too, and waits for it."""
    return _writer.call_blocking(function, *args, timeout=timeout)


async def reply_progress_save(
    *,
    message_id: int,
    text: str,
    seq: int,
    usage: Usage | None = None,
    ttft_ms: int | None = None,
) -> bool:
    """Save a live reply's progress with the next batch; False if the reply was ended elsewhere."""
    return await _writer.save(Progress(message_id, text, seq, usage, ttft_ms))


def writer_serializes_starts() -> bool:
    """Whether concurrent writes go through the writer too: on SQLite, where writers exclude
    each other."""
    return connection.vendor == "sqlite"
