"""The reply stream in this process's memory (the embedded, single-process setup)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from chat.replies.redis_options import MAX_BLOCK_SECONDS
from chat.replies.stream.base import ReplyStream, StreamEntry


@dataclass
class _Log:
    entries: list[StreamEntry] = field(default_factory=list)
    touched: float = field(default_factory=time.monotonic)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class MemoryReplyStream(ReplyStream):
    def __init__(self, *, retention_seconds: float) -> None:
        self.retention_seconds = retention_seconds
        self._logs: dict[int, _Log] = {}
        # The loop the logs' readers wait on, for end markers written from another thread.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _log(self, message_id: int) -> _Log:
        # Not `setdefault(message_id, _Log())`, which builds a log (and its Event) on every
        # call: this runs for every delta, once to publish it and once per reader.
        log = self._logs.get(message_id)
        if log is None:
            log = self._logs[message_id] = _Log()
            self._loop = asyncio.get_running_loop()
        return log

    def claim(self, message_id: int) -> None:
        self._log(message_id)

    def holds(self, message_id: int) -> bool:
        return message_id in self._logs

    def entries(self, message_id: int) -> list[StreamEntry]:
        """The log as it stands ([] for a log not held)."""
        log = self._logs.get(message_id)
        return log.entries if log is not None else []

    def waiting(self, message_id: int) -> bool:
        """Whether a reader is waiting on the log now."""
        log = self._logs.get(message_id)
        return log is not None and bool(log.waiters)

    def wake(self, message_id: int) -> None:
        """Wake the log's waiting readers without news (they look again at why they wait)."""
        if log := self._logs.get(message_id):
            log.wake()

    def forget(self, message_id: int) -> None:
        if log := self._logs.pop(message_id, None):
            log.wake()

    async def publish(self, message_id: int, deltas: list[tuple[int, str]]) -> None:
        self.publish_now(message_id, deltas)

    def publish_now(self, message_id: int, deltas: list[tuple[int, str]]) -> bool:
        log = self._log(message_id)
        # A batch published again (its first publish was cancelled after it arrived) adds only
        # what is new: sequence numbers are the positions in the list.
        last = log.entries[-1].seq if log.entries else 0
        log.entries.extend(StreamEntry(seq, "delta", text) for seq, text in deltas if seq > last)
        log.touched = time.monotonic()
        log.wake()
        return True

    async def finish(
        self, message_id: int, seq: int, ended_reason: str, message: Any = None
    ) -> None:
        log = self._log(message_id)
        if log.entries and log.entries[-1].kind == "end":
            return
        log.entries.append(StreamEntry(seq, "end", ended_reason, message))
        log.wake()
        # Keep the finished log a while for readers that are catching up, then free it (this
        # log: one made again meanwhile for the same reply is not this timer's).
        asyncio.get_running_loop().call_later(self.retention_seconds, self._drop, message_id, log)

    def _drop(self, message_id: int, log: _Log) -> None:
        if self._logs.get(message_id) is log:
            del self._logs[message_id]

    def finish_sync(self, message_id: int, seq: int, ended_reason: str) -> None:
        # The reaper runs on the writer thread: the readers' loop writes the marker.
        loop = self._loop
        if loop is not None and not loop.is_closed() and message_id in self._logs:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(
                    loop.create_task, self.finish(message_id, seq, ended_reason)
                )

    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        log = self._log(message_id)
        if not _entries_after(log.entries, after) and timeout > 0:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            log.waiters.add(waiter)
            # A timer that settles the waiter, rather than `asyncio.wait_for`, which wraps each
            # wait in more futures and callbacks: this runs once per delta per reader.
            timer = loop.call_later(min(timeout, MAX_BLOCK_SECONDS), _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                log.waiters.discard(waiter)
        return _entries_after(log.entries, after)

    async def request_stop(self, message_id: int) -> None:
        self._log(message_id).stop.set()

    async def wait_stop(self, message_id: int) -> None:
        await self._log(message_id).stop.wait()

    def forget_idle(self) -> None:
        # A reader of a reply whose job is gone (e.g. after a restart) creates an empty log to
        # wait on; drop logs nobody has written to or waited on for the retention period.
        cutoff = time.monotonic() - self.retention_seconds
        for message_id, log in list(self._logs.items()):
            if log.touched < cutoff and not log.waiters:
                del self._logs[message_id]


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _entries_after(entries: list[StreamEntry], after: int) -> list[StreamEntry]:
    # Sequence numbers are the 1-based positions in the list, so the offset is an index.
    return entries[after:] if after >= 0 else list(entries)
