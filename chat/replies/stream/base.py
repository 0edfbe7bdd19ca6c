"""The reply stream's contract: a sequence-numbered log per assistant message.

The generation job publishes text deltas and, last, an end marker. Readers read from any offset
and block until more arrives, so a client that reconnects asks for the reply from the last
sequence number it has and nothing is lost or shown twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")

EntryKind = Literal["delta", "end"]


class StreamUnavailable(Exception):
    """The shared stream (Redis) did not answer within its bound."""


# What a failing shared stream raises: Redis errors, sockets that broke under them, no answer.
SHARED_STREAM_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    OSError,
    TimeoutError,
    StreamUnavailable,
)


@dataclass(frozen=True, slots=True)
class StreamEntry:
    seq: int
    kind: EntryKind
    text: str  # the delta, or the ended_reason for the end marker
    # The end marker's message as the job recorded it, handed to readers in this process so they
    # need not read it back (None: they read it from the database). Never leaves the process.
    message: Any = None


async def bounded(awaitable: Awaitable[T], *, timeout: float | None) -> T:
    """Await `awaitable` as a task of its own, giving up after `timeout` seconds.

    The caller waits on the task rather than inside it, so the caller's own cancellation and
    this bound hold even if the call inside swallows a cancellation."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        _give_up(task)
        raise
    if not done:
        _give_up(task)
        raise StreamUnavailable(f"no answer within {timeout:g} s")
    return task.result()


def _give_up(task: asyncio.Future[Any]) -> None:
    """Cancel a call no one waits for any more, and consume how it ends: it may still fail (its
    socket closed under it), and an error never retrieved is logged when the task is collected,
    at any moment in any thread (on CPython 3.11 that logging, inside another ast.parse, raised
    "AST constructor recursion depth mismatch")."""
    task.cancel()
    task.add_done_callback(_consume)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class ReplyStream:
    """What every backend offers. Sequence numbers start at 1; `after=0` reads from the start."""

    # True when the job already gathers a window's deltas into one entry, so a reader sends what
    # one read returns instead of waiting to coalesce.
    coalesces_on_write = False
    # How long the job gathers deltas before publishing them (0: publish each at once).
    publish_window = 0.0

    def claim(self, message_id: int) -> None:
        """This process runs the reply's job: readers here may follow it in memory."""

    def gathers_on_write(self, message_id: int) -> bool:
        """Whether a read of this reply returns what the job gathered over a window (then the
        reader sends it as it is rather than coalescing again)."""
        return self.coalesces_on_write

    def publish_now(self, message_id: int, deltas: list[tuple[int, str]]) -> bool:
        """Hand the deltas at once, without awaiting, to the readers in this process, if this
        backend keeps them in memory. True: that was all (the in-process log is the whole log),
        one task switch per token fewer. False: they must still go out through `publish`
        (`publish_many`)."""
        return False

    async def publish(self, message_id: int, deltas: list[tuple[int, str]]) -> None:
        """Append consecutive (seq, text) deltas."""
        raise NotImplementedError

    async def publish_many(self, batches: dict[int, list[tuple[int, str]]]) -> set[int]:
        """Publish the batches of several replies at once; the ids whose publish failed."""
        failed: set[int] = set()
        for message_id, deltas in batches.items():
            try:
                await self.publish(message_id, deltas)
            except SHARED_STREAM_ERRORS:
                failed.add(message_id)
        return failed

    async def append(self, message_id: int, seq: int, text: str) -> None:
        await self.publish(message_id, [(seq, text)])

    async def finish(
        self, message_id: int, seq: int, ended_reason: str, message: Any = None
    ) -> None:
        """Write the end marker; `message`, the reply as recorded, saves readers in this process
        reading it back from the database."""
        raise NotImplementedError

    async def read(self, message_id: int, *, after: int, timeout: float) -> list[StreamEntry]:
        """Entries after `after`, waiting up to `timeout` seconds (at most MAX_BLOCK_SECONDS) for
        the first; [] if none."""
        raise NotImplementedError

    async def request_stop(self, message_id: int) -> None:
        raise NotImplementedError

    async def wait_stop(self, message_id: int) -> None:
        """Return once someone, on any worker, asked this reply to stop."""
        raise NotImplementedError

    async def available(self) -> bool:
        """Whether the stream can take a new reply now."""
        return True

    async def beat(self, worker_id: str, message_ids: Iterable[int], *, ttl: float) -> None:
        """Mark this worker and its live replies alive for `ttl` seconds (shared backends)."""

    # Sync calls, for the reaper (it runs in database threads).

    def live_elsewhere(self) -> set[int] | None:
        """Replies some live worker says it runs; None when that cannot be known."""
        return None

    def tail(self, message_id: int, *, after: int) -> list[StreamEntry]:
        """What the stream holds after `after` (the reaper rebuilds a dead job's text with it)."""
        return []

    def finish_sync(self, message_id: int, seq: int, ended_reason: str) -> None:
        """Write the end marker for a reply whose job is gone."""

    def forget_idle(self) -> None:
        """Free what readers of replies that never ran left behind (Redis expires keys itself)."""
