"""The reply stream: a sequence-numbered log per assistant message that transports read.

The generation job appends text deltas and, last, an end marker. Readers (the WebSocket consumer,
the SSE view) read from any offset and block until more arrives, so a client that reconnects asks
for the reply from the last sequence number it has and nothing is lost or shown twice.

Without REDIS_URL the log lives in this process's memory (the embedded, single-process setup).
With REDIS_URL it is a Redis Stream whose entry ids are `0-<seq>`, so any worker can read what any
other worker's job writes, and stop is a Redis key any worker can set.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from redis.exceptions import RedisError

from chat import metrics

logger = logging.getLogger(__name__)

EntryKind = Literal["delta", "end"]


@dataclass(frozen=True, slots=True)
class StreamEntry:
    seq: int
    kind: EntryKind
    text: str  # the delta, or the ended_reason for the end marker


class ReplyStream:
    """What every backend offers. Sequence numbers start at 1; `after=0` reads from the start."""

    async def append(self, message_id: int, seq: int, text: str) -> None:
        raise NotImplementedError

    async def finish(self, message_id: int, seq: int, ended_reason: str) -> None:
        raise NotImplementedError

    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        """Entries after `after`, waiting up to `timeout` seconds for the first; [] if none."""
        raise NotImplementedError

    async def request_stop(self, message_id: int) -> None:
        raise NotImplementedError

    async def wait_stop(self, message_id: int) -> None:
        """Return once someone, on any worker, asked this reply to stop."""
        raise NotImplementedError

    def forget_idle(self) -> None:
        """Free what readers of replies that never ran left behind (Redis expires keys itself)."""


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

    def _log(self, message_id: int) -> _Log:
        return self._logs.setdefault(message_id, _Log())

    async def append(self, message_id: int, seq: int, text: str) -> None:
        log = self._log(message_id)
        log.entries.append(StreamEntry(seq, "delta", text))
        log.touched = time.monotonic()
        log.wake()

    async def finish(self, message_id: int, seq: int, ended_reason: str) -> None:
        log = self._log(message_id)
        log.entries.append(StreamEntry(seq, "end", ended_reason))
        log.wake()
        # Keep the finished log a while for readers that are catching up, then free it.
        asyncio.get_running_loop().call_later(
            self.retention_seconds, self._logs.pop, message_id, None
        )

    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        log = self._log(message_id)
        if not _entries_after(log.entries, after) and timeout > 0:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            log.waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                pass
            finally:
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


def _entries_after(entries: list[StreamEntry], after: int) -> list[StreamEntry]:
    # Sequence numbers are the 1-based positions in the list, so the offset is an index.
    return entries[after:] if after >= 0 else list(entries)


class RedisReplyStream(ReplyStream):
    STOP_POLL_SECONDS = 0.25

    def __init__(self, *, url: str, retention_seconds: int, prefix: str = "chatsite") -> None:
        self.url = url
        self.retention_seconds = retention_seconds
        self.prefix = prefix
        # Connection pools belong to the event loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> Any:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = redis.Redis.from_url(self.url, decode_responses=True)
        return self._clients[loop]

    def _key(self, message_id: int) -> str:
        return f"{self.prefix}:reply:{message_id}"

    def _stop_key(self, message_id: int) -> str:
        return f"{self.prefix}:stop:{message_id}"

    @metrics.counts_redis_errors("append")
    async def append(self, message_id: int, seq: int, text: str) -> None:
        key = self._key(message_id)
        client = self.client()
        await client.xadd(key, {"k": "d", "t": text}, id=f"0-{seq}")
        if seq == 1:
            # A job that dies never writes its end marker; the log must not outlive it forever.
            await client.expire(key, self.retention_seconds + int(settings.CHAT_REPLY_TIMEOUT))

    @metrics.counts_redis_errors("finish")
    async def finish(self, message_id: int, seq: int, ended_reason: str) -> None:
        key = self._key(message_id)
        async with self.client().pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"k": "end", "t": ended_reason}, id=f"0-{seq}")
            pipe.expire(key, self.retention_seconds)
            pipe.delete(self._stop_key(message_id))
            await pipe.execute()

    @metrics.counts_redis_errors("read")
    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        response = await self.client().xread(
            {self._key(message_id): f"0-{after}"}, block=block, count=10_000
        )
        entries: list[StreamEntry] = []
        for _key, items in response or []:
            for entry_id, fields in items:
                kind: EntryKind = "end" if fields.get("k") == "end" else "delta"
                entries.append(StreamEntry(int(entry_id.split("-")[1]), kind, fields.get("t", "")))
        return entries

    @metrics.counts_redis_errors("request_stop")
    async def request_stop(self, message_id: int) -> None:
        await self.client().set(self._stop_key(message_id), "1", ex=self.retention_seconds)

    async def wait_stop(self, message_id: int) -> None:
        # A poll of one key four times a second per live reply: cheap, and it needs no
        # subscription that could miss a stop sent just before the job started listening.
        client = self.client()
        key = self._stop_key(message_id)
        while True:
            try:
                if await client.exists(key):
                    return
            except (RedisError, OSError):
                metrics.redis_error("wait_stop")
                # A Redis blip is not a stop: keep generating and look again.
                logger.warning("Checking the stop signal of reply %s failed", message_id)
            await asyncio.sleep(self.STOP_POLL_SECONDS)


_instance: ReplyStream | None = None


def get_reply_stream() -> ReplyStream:
    global _instance
    if _instance is None:
        if settings.REDIS_URL:
            _instance = RedisReplyStream(
                url=settings.REDIS_URL, retention_seconds=settings.CHAT_STREAM_RETENTION_SECONDS
            )
        else:
            _instance = MemoryReplyStream(retention_seconds=settings.CHAT_STREAM_RETENTION_SECONDS)
    return _instance


def reset_reply_stream() -> None:
    """Forget the backend (tests switch between memory and Redis with settings)."""
    global _instance
    _instance = None
