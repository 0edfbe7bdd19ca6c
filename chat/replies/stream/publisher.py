"""How the job publishes its deltas to the reply stream.

Every delta goes at once to the readers in this process (`ReplyStream.publish_now`): the
in-process stream is the whole log, and with Redis it is the copy that readers on the worker
running the reply follow, so they never wait for Redis. What must still reach the shared log
(Redis) goes out on the worker's one `PublishTicker`: the pending deltas of all its replies in
one pipeline per tick, the first tick of a quiet spell at once, then at most one per window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref

from chat.replies.stream.base import SHARED_STREAM_ERRORS, ReplyStream, bounded

logger = logging.getLogger(__name__)


class SharedStreamDown(Exception):
    """The shared reply stream (Redis) kept failing: readers elsewhere cannot follow the reply."""


# How long a job keeps trying to publish to a failing Redis before it ends the reply: long enough
# for a blip, short enough that nobody watches a reply that no reader can see.
PUBLISH_OUTAGE_SECONDS = 3.0
# The bound on one tick's pipeline (a hung Redis must not stall every reply's ticks for long).
TICK_TIMEOUT_SECONDS = 5.0


class Publisher:
    """Publishes one job's deltas. Sequence numbers stay one per delta; what goes to the shared
    log in one tick is one entry (readers drop what they already have, so resume stays exact)."""

    def __init__(self, stream: ReplyStream, message_id: int) -> None:
        self.stream = stream
        self.message_id = message_id
        # Readers here follow the reply in memory from its start, even before its first token.
        stream.claim(message_id)
        self.pending: list[tuple[int, str]] = []
        # The batch a tick is sending, and whether that send is over.
        self.in_flight: list[tuple[int, str]] = []
        self.landed = asyncio.Event()
        self.landed.set()
        self.failing_since: float | None = None
        self.down = asyncio.Event()
        # Set by the final flush: from then on the job publishes itself, not the ticker.
        self.closed = False
        self._ticker: PublishTicker | None = None

    def add(self, seq: int, text: str) -> None:
        if self.stream.publish_now(self.message_id, [(seq, text)]):
            return  # the in-process stream is the whole log: nothing left to publish
        self.pending.append((seq, text))
        if self._ticker is None or self._ticker.task.done():
            self._ticker = PublishTicker.of(self.stream)
        self._ticker.mark(self)

    async def run(self) -> None:
        """Wait until cancelled; raises SharedStreamDown after a long outage of the shared log."""
        await self.down.wait()
        raise SharedStreamDown

    def failed(self, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = now
            logger.warning("Publishing reply %s failed", self.message_id)
        elif now - self.failing_since > PUBLISH_OUTAGE_SECONDS:
            self.down.set()

    async def flush(self, *, timeout: float = 5.0) -> bool:
        """The job's final publish: what is pending, after the batch a tick is sending (a later
        entry written first would make Redis refuse that one). False (pending kept) if the
        stream failed."""
        self.closed = True
        if not self.landed.is_set():
            try:
                await asyncio.wait_for(asyncio.shield(self.landed.wait()), timeout)
            except TimeoutError:
                # The tick hangs: send its batch again with ours. If it lands after all, Redis
                # refuses it (its id is smaller) and readers drop the repeated sequence numbers.
                self.pending = self.in_flight + self.pending
                self.in_flight = []
        batch, self.pending = self.pending, []
        if not batch:
            return True
        try:
            await bounded(self.stream.publish(self.message_id, batch), timeout=timeout)
        except SHARED_STREAM_ERRORS:
            self.pending = batch + self.pending
            self.failed(asyncio.get_running_loop().time())
            return False
        except BaseException:
            # Cancelled mid-publish (a shutdown): the batch stays pending for another flush. If
            # it did arrive after all, readers skip what they have by sequence number.
            self.pending = batch + self.pending
            raise
        self.failing_since = None
        return True


class PublishTicker:
    """One per stream and event loop: sends the pending deltas of all the worker's replies in one
    pipeline per tick. Leading edge: a tick goes at once when none went in the last window, else
    when the window since the last one has passed. So Redis sees one round trip per window for the
    whole worker and at most one entry per reply, and a reader elsewhere waits at most a window."""

    _tickers: weakref.WeakKeyDictionary[
        ReplyStream, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PublishTicker]
    ] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, stream: ReplyStream) -> PublishTicker:
        loop = asyncio.get_running_loop()
        by_loop = cls._tickers.setdefault(stream, weakref.WeakKeyDictionary())
        ticker = by_loop.get(loop)
        if ticker is None or ticker.task.done():
            ticker = by_loop[loop] = cls(stream)
        return ticker

    def __init__(self, stream: ReplyStream) -> None:
        self.stream = stream
        self.window = stream.publish_window
        self.dirty: dict[int, Publisher] = {}
        self.wake = asyncio.Event()
        # Pipelines sent (what Redis round trips the worker's publishing costs).
        self.ticks = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name="publish-ticker")

    def mark(self, publisher: Publisher) -> None:
        self.dirty[publisher.message_id] = publisher
        self.wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ticked_at = -math.inf
        while True:
            await self.wake.wait()
            self.wake.clear()
            wait = ticked_at + self.window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # inside the window: gather what else arrives
            self.wake.clear()
            ticked_at = loop.time()
            try:
                await self.tick()
            except Exception:  # never let one bad tick stop every reply's publishing
                logger.exception("Publishing the worker's replies failed")

    async def tick(self) -> None:
        publishers, self.dirty = list(self.dirty.values()), {}
        sending: list[Publisher] = []
        for publisher in publishers:
            if publisher.closed or not publisher.pending:
                continue
            if not publisher.landed.is_set():
                self.dirty[publisher.message_id] = publisher  # its last batch is still out
                continue
            publisher.in_flight, publisher.pending = publisher.pending, []
            publisher.landed.clear()
            sending.append(publisher)
        if not sending:
            return
        self.ticks += 1
        batches = {publisher.message_id: publisher.in_flight for publisher in sending}
        try:
            failed = await bounded(self.stream.publish_many(batches), timeout=TICK_TIMEOUT_SECONDS)
        except SHARED_STREAM_ERRORS:
            failed = set(batches)
        except BaseException:
            failed = set(batches)
            raise
        finally:
            now = asyncio.get_running_loop().time()
            for publisher in sending:
                if publisher.message_id in failed:
                    publisher.pending = publisher.in_flight + publisher.pending
                    publisher.failed(now)
                else:
                    publisher.failing_since = None
                publisher.in_flight = []
                publisher.landed.set()
                if publisher.pending and not publisher.closed:
                    self.mark(publisher)  # what failed, or arrived meanwhile: next tick
