"""The reply stream in Redis (with REDIS_URL), so any worker can read what any worker's job writes.

Readers on the worker that runs a reply follow it in memory (a `MemoryReplyStream` of this
worker's own replies), exactly as without Redis. Redis carries the log for everyone else (readers
on other workers, resume after the local copy is gone, the reaper): the worker's `PublishTicker`
sends the deltas of a short window (CHAT_REDIS_PUBLISH_MS) of all its replies in one pipeline, one
entry per reply whose id is `0-<last seq>` (readers drop what they already have, so resuming from
any seq, from either copy, stays exact). Stop is published on a channel that each worker's one
listener hands to its jobs, backed by a key for stops sent while a listener was not subscribed.

The job never awaits redis-py itself where a cancellation matters: a cancel that lands inside a
redis-py call can be swallowed (redis/redis-py#2028, #2551, #2665), which once let a stopped
reply run to its end. Stop reaches a job as an asyncio.Event, and the calls a job must make run as
separate tasks it waits for with a bound (`bounded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from redis.exceptions import ResponseError

from chat.adapters.redis_pubsub import abort_socket
from chat.replies.redis_options import (
    MAX_BLOCK_SECONDS,
    STREAM_SOCKET_TIMEOUT,
    cache_options,
    stream_client_options,
)
from chat.replies.stream.base import (
    SHARED_STREAM_ERRORS,
    ReplyStream,
    StreamEntry,
    StreamUnavailable,
    bounded,
)
from chat.replies.stream.memory import MemoryReplyStream
from chat.telemetry import metrics

logger = logging.getLogger(__name__)

# How long this worker keeps its own finished replies in memory for readers here (later they read
# Redis, which keeps them CHAT_STREAM_RETENTION_SECONDS).
LOCAL_RETENTION_SECONDS = 60


class _StopListener:
    """One per worker (and event loop): a pub/sub subscription that hands stops to local jobs."""

    # How often the listener also looks at the stop keys of its live jobs (one MGET for all of
    # them): a backstop for a stop published while the subscription was broken, since pub/sub
    # delivers at most once.
    RECHECK_SECONDS = 2.0

    def __init__(self, stream: RedisReplyStream) -> None:
        self.stream = stream
        self.events: dict[int, asyncio.Event] = {}
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._listen(), name="stop-listener")
        self.backstop = loop.create_task(self._recheck_forever(), name="stop-backstop")

    def register(self, message_id: int) -> asyncio.Event:
        return self.events.setdefault(message_id, asyncio.Event())

    def unregister(self, message_id: int) -> None:
        self.events.pop(message_id, None)

    def _set(self, message_id: int) -> None:
        if event := self.events.get(message_id):
            event.set()

    async def _recheck(self) -> None:
        ids = list(self.events)
        if not ids:
            return
        values = await self.stream.client().mget([self.stream.stop_key(i) for i in ids])
        for message_id, value in zip(ids, values, strict=True):
            if value:
                self._set(message_id)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self.RECHECK_SECONDS)
            with contextlib.suppress(*SHARED_STREAM_ERRORS):
                await bounded(self._recheck(), timeout=self.RECHECK_SECONDS)

    async def _listen(self) -> None:
        backoff = 0.1
        failing = False
        while True:
            pubsub = self.stream.client().pubsub(ignore_subscribe_messages=True)
            try:
                # Every call as a task of its own (`bounded`): a cancel that lands inside
                # redis-py can be swallowed, and the listener then blocked in its read for good
                # (shutdown hung on it).
                timeout = self.stream.CALL_TIMEOUT_SECONDS
                await bounded(pubsub.subscribe(self.stream.stop_channel), timeout=timeout)
                # Stops sent while we were not subscribed.
                await bounded(self._recheck(), timeout=timeout)
                if failing:
                    logger.info("The stop channel is back")
                backoff, failing = 0.1, False
                while True:
                    # Blocking, without a read timeout: a timeout that fires while a message
                    # is half read can lose it. A dead connection raises (keepalive, health
                    # checks), and the backstop covers the time until it does.
                    # Cancelling the listener closes the socket under the read (`finally`).
                    message = await bounded(pubsub.get_message(timeout=None), timeout=None)
                    if message and message.get("type") == "message":
                        with contextlib.suppress(ValueError):
                            self._set(int(message["data"]))
            except SHARED_STREAM_ERRORS:
                metrics.redis_error("stop_listener")
                if not failing:
                    logger.warning("The stop channel failed; listening again", exc_info=True)
                failing = True
            finally:
                abort_socket(pubsub)
                with contextlib.suppress(Exception):
                    await bounded(pubsub.aclose(), timeout=2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


class _Follower:
    """One per worker (and event loop): follows, with one blocking XREAD naming them all, the
    replies that readers here want and that run on another worker, into an in-memory copy
    (`mirror`) those readers read, as readers of the worker's own replies read its copy.

    So Redis sees one read per worker per window, however many remote replies and readers the
    worker has, where each reader used to block in an XREAD of its own (a connection and a
    round trip per reader per window). A reply joins the read from its start (the copy is the
    whole log from seq 1, so resume from any seq stays exact); a blocked read that does not name
    it yet is woken through the worker's own wake stream. A reply leaves at its end, or when no
    reader has read it for FOLLOW_IDLE_SECONDS. While Redis fails, readers are told so (they read
    the database for the ending), and the read resumes where each reply was."""

    FOLLOW_IDLE_SECONDS = 60.0
    # Entries one read returns per reply (more than a window's worth; the rest come next read).
    COUNT = 1000

    def __init__(self, stream: RedisReplyStream) -> None:
        self.stream = stream
        self.mirror = MemoryReplyStream(retention_seconds=LOCAL_RETENTION_SECONDS)
        # message id -> the last seq the copy has.
        self.following: dict[int, int] = {}
        self.read_at: dict[int, float] = {}
        self.wake_key = f"{stream.prefix}:wake:{{{uuid.uuid4().hex}}}"
        self.wake_id: str | None = None
        # A read is out (a reply that joins now is not in it), and whether it was woken.
        self.reading = False
        self.woken = False
        self.changed = asyncio.Event()
        self._waking: asyncio.Task[None] | None = None
        self.failing = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name="reply-follower")

    def follow(self, message_id: int) -> None:
        if message_id in self.following:
            self.read_at[message_id] = time.monotonic()
            return
        if self.mirror.holds(message_id) and _ended(self.mirror, message_id):
            return  # its whole log is here
        self.read_at[message_id] = time.monotonic()
        self.mirror.claim(message_id)
        self.following[message_id] = _last_seq(self.mirror, message_id)
        self.changed.set()
        if self.reading and not self.woken:
            # The read in flight does not name it: end that read now (one wake for however
            # many replies join before it ends).
            self.woken = True
            self._waking = asyncio.get_running_loop().create_task(self._wake())
            self._waking.add_done_callback(_consume_result)

    async def _wake(self) -> None:
        async with self.stream.client().pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=10, approximate=True)
            pipe.expire(self.wake_key, int(MAX_BLOCK_SECONDS * 4))
            await bounded(pipe.execute(), timeout=self.stream.CALL_TIMEOUT_SECONDS)

    def _drop_idle(self) -> None:
        cutoff = time.monotonic() - self.FOLLOW_IDLE_SECONDS
        for message_id in list(self.following):
            if self.read_at.get(message_id, 0.0) < cutoff and not self.mirror.waiting(message_id):
                del self.following[message_id]
                self.read_at.pop(message_id, None)
                self.mirror.forget(message_id)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            self._drop_idle()
            if not self.following:
                self.failing = False  # nothing to read: the next reader finds out afresh
                self.changed.clear()
                await self.changed.wait()
                continue
            try:
                if self.wake_id is None:
                    # Our own first entry: any wake sent after it has a larger id.
                    async with self.stream.client().pipeline(transaction=False) as pipe:
                        pipe.xadd(self.wake_key, {"w": "0"}, maxlen=10)
                        pipe.expire(self.wake_key, int(MAX_BLOCK_SECONDS * 4))
                        added = await bounded(
                            pipe.execute(), timeout=self.stream.CALL_TIMEOUT_SECONDS
                        )
                    self.wake_id = added[0]
                    if self.failing:
                        # Redis answers again: readers stop being sent to the database.
                        logger.info("Following remote replies again")
                        self.failing = False
                streams = {self.stream.key(i): f"0-{last}" for i, last in self.following.items()}
                streams[self.wake_key] = self.wake_id
                self.reading = True
                self.woken = False
                response = await bounded(
                    self.stream.client().xread(
                        streams, block=int(MAX_BLOCK_SECONDS * 1000), count=self.COUNT
                    ),
                    timeout=STREAM_SOCKET_TIMEOUT + 1,
                )
            except SHARED_STREAM_ERRORS:
                metrics.redis_error("read")
                self.reading = False
                self.wake_id = None
                if not self.failing:
                    logger.warning("Following remote replies failed; reading again", exc_info=True)
                    self.failing = True
                    for message_id in self.following:
                        self.mirror.wake(message_id)  # readers learn it, and ask the database
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.reading = False
            backoff = 0.1
            try:
                await self._take(response or [])
            except Exception:  # one bad entry must not stop every remote reader here
                logger.exception("Reading the remote replies' entries failed")

    async def _take(self, response: list[Any]) -> None:
        for key, items in response:
            if key == self.wake_key:
                if items:
                    self.wake_id = items[-1][0]
                continue
            message_id = int(key.rsplit("{", 1)[1].rstrip("}"))
            last = self.following.get(message_id)
            if last is None:
                continue  # dropped while the read was out
            if len(self.mirror.entries(message_id)) != last:
                # The copy is not the log up to `last` any more (positions are sequence
                # numbers): start it again from seq 1 rather than shift what readers get.
                self.mirror.forget(message_id)
                self.mirror.claim(message_id)
                self.following[message_id] = 0
                continue
            entries = _decode([(key, items)], last)
            end = next((entry for entry in entries if entry.kind == "end"), None)
            deltas: list[tuple[int, str]] = []
            for entry in entries:
                if end is not None and entry.seq >= end.seq:
                    break  # nothing after the first ending (a reaper's and the job's own)
                # A gap (writes Redis lost in a failover) keeps its places, empty: the reply's
                # saved text has them.
                deltas.extend((seq, "") for seq in range(last + 1, entry.seq))
                deltas.append((entry.seq, entry.text))
                last = entry.seq
            if deltas:
                self.mirror.publish_now(message_id, deltas)
                self.following[message_id] = last
            if end is not None:
                if end.seq > last + 1:
                    self.mirror.publish_now(
                        message_id, [(seq, "") for seq in range(last + 1, end.seq)]
                    )
                await self.mirror.finish(message_id, end.seq, end.text)
                self.following.pop(message_id, None)
                self.read_at.pop(message_id, None)

    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        self.follow(message_id)
        if self.failing:
            raise StreamUnavailable("the worker's read of remote replies is failing")
        entries = await self.mirror.read(message_id, after=after, timeout=timeout)
        if not entries and self.failing:
            raise StreamUnavailable("the worker's read of remote replies is failing")
        return entries


def _ended(mirror: MemoryReplyStream, message_id: int) -> bool:
    entries = mirror.entries(message_id)
    return bool(entries) and entries[-1].kind == "end"


def _last_seq(mirror: MemoryReplyStream, message_id: int) -> int:
    entries = mirror.entries(message_id)
    return entries[-1].seq if entries else 0


def _consume_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        metrics.redis_error("wake")


class RedisReplyStream(ReplyStream):
    coalesces_on_write = True
    # Bound on one call a job or request makes (it has none of the blocking reads' length).
    CALL_TIMEOUT_SECONDS = 5.0

    def __init__(self, *, url: str, retention_seconds: int, prefix: str = "chatsite") -> None:
        self.url = url
        self.retention_seconds = retention_seconds
        self.prefix = prefix
        self.publish_window = settings.CHAT_REDIS_PUBLISH_MS / 1000
        # This worker's own replies, for its readers (filled as the job writes, before Redis).
        self._local = MemoryReplyStream(
            retention_seconds=min(retention_seconds, LOCAL_RETENTION_SECONDS)
        )
        self.stop_channel = f"{prefix}:stops"
        # Connection pools belong to the event loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _StopListener] = (
            weakref.WeakKeyDictionary()
        )
        self._followers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Follower] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: Any = None

    def client(self) -> Any:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = redis.Redis.from_url(
                self.url, decode_responses=True, **stream_client_options()
            )
        return self._clients[loop]

    def sync_client(self) -> Any:
        import redis

        if self._sync is None:
            # Only quick calls (the reaper's), from request and database threads: fail fast.
            options = {key: value for key, value in cache_options().items() if key != "retry"}
            self._sync = redis.Redis.from_url(self.url, decode_responses=True, **options)
        return self._sync

    # A reply's keys carry its id as a hash tag ({42}), so that on Redis Cluster they share one
    # slot and its log and stop are on one node (docs/scaling.md).
    def key(self, message_id: int) -> str:
        return f"{self.prefix}:reply:{{{message_id}}}"

    def stop_key(self, message_id: int) -> str:
        return f"{self.prefix}:stop:{{{message_id}}}"

    def worker_key(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def claim(self, message_id: int) -> None:
        self._local.claim(message_id)

    def gathers_on_write(self, message_id: int) -> bool:
        # Readers of this worker's own replies read them delta by delta, in memory.
        return not self._local.holds(message_id)

    def publish_now(self, message_id: int, deltas: list[tuple[int, str]]) -> bool:
        # Only into a copy held from the start (claimed by the job): one dropped meanwhile (idle
        # for the local retention) is not made again half-way, and readers here read Redis.
        if self._local.holds(message_id):
            self._local.publish_now(message_id, deltas)
        return False  # Redis still needs them

    @metrics.counts_redis_errors("publish")
    async def publish(self, message_id: int, deltas: list[tuple[int, str]]) -> None:
        if not deltas:
            return
        async with self.client().pipeline(transaction=False) as pipe:
            self._queue_publish(pipe, message_id, deltas)
            _already_written(await pipe.execute(raise_on_error=False))

    @metrics.counts_redis_errors("publish")
    async def publish_many(self, batches: dict[int, list[tuple[int, str]]]) -> set[int]:
        """One pipeline (one round trip) for the batches of all the worker's replies."""
        counts: list[tuple[int, int]] = []
        async with self.client().pipeline(transaction=False) as pipe:
            for message_id, deltas in batches.items():
                if deltas:
                    counts.append((message_id, self._queue_publish(pipe, message_id, deltas)))
            results = await pipe.execute(raise_on_error=False) if counts else []
        failed: set[int] = set()
        position = 0
        for message_id, count in counts:
            try:
                _already_written(results[position : position + count])
            except ResponseError:
                logger.warning("Publishing reply %s failed", message_id, exc_info=True)
                failed.add(message_id)
            position += count
        return failed

    def _queue_publish(self, pipe: Any, message_id: int, deltas: list[tuple[int, str]]) -> int:
        """Queue one entry for the deltas on the pipeline; how many commands that took."""
        key = self.key(message_id)
        first, last = deltas[0][0], deltas[-1][0]
        fields: dict[str, Any]
        if len(deltas) == 1:
            fields = {"k": "d", "t": deltas[0][1]}
        else:
            # One entry for the window; its id is the last seq, and `s` the first.
            fields = {"k": "d", "s": first, "t": json.dumps([text for _, text in deltas])}
        pipe.xadd(key, fields, id=f"0-{last}")
        if first == 1:
            # A job that dies never writes its end marker; the log must not outlive it.
            pipe.expire(key, self.retention_seconds + int(settings.CHAT_REPLY_TIMEOUT))
            return 2
        return 1

    @metrics.counts_redis_errors("finish")
    async def finish(
        self, message_id: int, seq: int, ended_reason: str, message: Any = None
    ) -> None:
        if self._local.holds(message_id):
            # Readers here learn the ending at once, whatever happens to Redis.
            await self._local.finish(message_id, seq, ended_reason, message)
        key = self.key(message_id)
        fields = {"k": "end", "t": ended_reason}
        async with self.client().pipeline(transaction=False) as pipe:
            pipe.xadd(key, fields, id=f"0-{seq}")
            pipe.expire(key, self.retention_seconds)
            _already_written(await pipe.execute(raise_on_error=False))

    @metrics.counts_redis_errors("read")
    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        if self._local.holds(message_id):
            # This worker runs (or just ran) the reply: its log is here from seq 1, ahead of
            # Redis. Once it is dropped, readers carry on from Redis where they are.
            return await self._local.read(message_id, after=after, timeout=timeout)
        if timeout > 0:
            # Waiting: through the worker's one read of the remote replies its readers follow.
            return await self._follower().read(message_id, after=after, timeout=timeout)
        # What the log holds now (one command; a reply not followed here is not started on).
        # As a task of its own: a caller that is cancelled is, even when redis-py would swallow
        # the cancel (it did for about 2 % of cancels in tests/replies/test_streams.py).
        response = await bounded(
            self.client().xread({self.key(message_id): f"0-{after}"}, count=10_000),
            timeout=self.CALL_TIMEOUT_SECONDS,
        )
        return _decode(response, after)

    def _follower(self) -> _Follower:
        loop = asyncio.get_running_loop()
        follower = self._followers.get(loop)
        if follower is None or follower.task.done():
            follower = self._followers[loop] = _Follower(self)
        return follower

    @metrics.counts_redis_errors("request_stop")
    async def request_stop(self, message_id: int) -> None:
        # The key first: a job that starts listening later, or a listener that reconnects,
        # finds it; the message wakes a listening job at once.
        async with self.client().pipeline(transaction=False) as pipe:
            pipe.set(self.stop_key(message_id), "1", ex=self.retention_seconds)
            pipe.publish(self.stop_channel, str(message_id))
            await bounded(pipe.execute(), timeout=self.CALL_TIMEOUT_SECONDS)

    def _listener(self) -> _StopListener:
        loop = asyncio.get_running_loop()
        listener = self._listeners.get(loop)
        if listener is None or listener.task.done() or listener.backstop.done():
            if listener is not None:
                listener.task.cancel()
                listener.backstop.cancel()
            listener = self._listeners[loop] = _StopListener(self)
        return listener

    async def wait_stop(self, message_id: int) -> None:
        listener = self._listener()
        event = listener.register(message_id)
        try:
            # A stop sent before we registered is in the key; the listener also rechecks keys.
            with contextlib.suppress(*SHARED_STREAM_ERRORS):
                if await bounded(
                    self.client().exists(self.stop_key(message_id)),
                    timeout=self.CALL_TIMEOUT_SECONDS,
                ):
                    return
            await event.wait()
        finally:
            listener.unregister(message_id)

    def start_listening(self) -> None:
        """Subscribe to stops now (at worker start-up) rather than at the first job."""
        self._listener()

    async def available(self) -> bool:
        try:
            return bool(await bounded(self.client().ping(), timeout=2.0))
        except SHARED_STREAM_ERRORS:
            metrics.redis_error("ping")
            return False

    async def beat(self, worker_id: str, message_ids: Iterable[int], *, ttl: float) -> None:
        await self.client().set(
            self.worker_key(worker_id), json.dumps(sorted(message_ids)), px=int(ttl * 1000)
        )

    def live_elsewhere(self) -> set[int] | None:
        client = self.sync_client()
        try:
            keys = list(client.scan_iter(match=self.worker_key("*"), count=1000))
            values = client.mget(keys) if keys else []
        except SHARED_STREAM_ERRORS:
            metrics.redis_error("live_workers")
            return None
        live: set[int] = set()
        for value in values:
            with contextlib.suppress(TypeError, ValueError):
                live.update(int(i) for i in json.loads(value))
        return live

    def tail(self, message_id: int, *, after: int) -> list[StreamEntry]:
        items = self.sync_client().xrange(self.key(message_id), min=f"0-{after + 1}")
        return _decode([(self.key(message_id), items)], after)

    def forget_idle(self) -> None:
        self._local.forget_idle()
        # The followers' copies are theirs to drop (`_Follower._drop_idle`): one dropped here
        # while followed would be made again half-way.

    def finish_sync(self, message_id: int, seq: int, ended_reason: str) -> None:
        self._local.finish_sync(message_id, seq, ended_reason)
        key = self.key(message_id)
        with self.sync_client().pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"k": "end", "t": ended_reason}, id=f"0-{seq}")
            pipe.expire(key, self.retention_seconds)
            _already_written(pipe.execute(raise_on_error=False))


def _already_written(results: list[Any]) -> None:
    """Raise the first error of a pipeline, except an XADD whose id is taken: a retried call
    whose first try did arrive (or an end marker someone else wrote) is not a failure."""
    for result in results:
        if isinstance(result, ResponseError) and "equal or smaller" in str(result):
            continue
        if isinstance(result, Exception):
            raise result


def _decode(response: Any, after: int) -> list[StreamEntry]:
    entries: list[StreamEntry] = []
    # A batch re-published after a cancelled publish that had arrived after all repeats
    # sequence numbers of the entry before it: each one is read once.
    seen = after
    for _key, items in response or []:
        for entry_id, fields in items:
            last = int(entry_id.split("-")[1])
            if fields.get("k") == "end":
                entries.append(StreamEntry(last, "end", fields.get("t", "")))
            elif "s" in fields:
                texts = json.loads(fields["t"])
                first = int(fields["s"])
                entries.extend(
                    StreamEntry(seq, "delta", text)
                    for seq, text in enumerate(texts, start=first)
                    if seq > seen
                )
            elif last > seen:
                entries.append(StreamEntry(last, "delta", fields.get("t", "")))
            seen = max(seen, last)
    return entries
