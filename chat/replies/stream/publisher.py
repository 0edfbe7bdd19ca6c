"""How the job publishes its deltas to the reply stream."""

from __future__ import annotations

import asyncio
import logging

from chat.replies.stream.base import SHARED_STREAM_ERRORS, ReplyStream, bounded

logger = logging.getLogger(__name__)


class SharedStreamDown(Exception):
    """The shared reply stream (Redis) kept failing: readers elsewhere cannot follow the reply."""


# How long a job keeps trying to publish to a failing Redis before it ends the reply: long enough
# for a blip, short enough that nobody watches a reply that no reader can see.
PUBLISH_OUTAGE_SECONDS = 3.0


class Publisher:
    """Publishes the job's deltas: the first of a quiet spell at once (no added latency), then
    whatever arrives within the stream's window as one command (one XADD per ~6 tokens at
    20 tokens/s, instead of one per token). Sequence numbers stay one per delta."""

    def __init__(self, stream: ReplyStream, message_id: int) -> None:
        self.stream = stream
        self.message_id = message_id
        self.window = stream.publish_window
        self.pending: list[tuple[int, str]] = []
        self.wake = asyncio.Event()
        self.failing_since: float | None = None

    def add(self, seq: int, text: str) -> None:
        if not self.pending and self.stream.publish_now(self.message_id, [(seq, text)]):
            return  # published in place (the in-process stream): no task switch
        self.pending.append((seq, text))
        self.wake.set()

    async def run(self) -> None:
        """Publish until cancelled; raises SharedStreamDown after a long outage."""
        loop = asyncio.get_running_loop()
        published_at = -self.window
        while True:
            await self.wake.wait()
            self.wake.clear()
            wait = published_at + self.window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # inside the window: gather what else arrives
            published_at = loop.time()
            if not await self.flush():
                if loop.time() - (self.failing_since or 0) > PUBLISH_OUTAGE_SECONDS:
                    raise SharedStreamDown
                self.wake.set()  # try again after the window

    async def flush(self, *, timeout: float = 5.0) -> bool:
        """Publish what is pending; False (pending kept) if the stream failed."""
        batch, self.pending = self.pending, []
        if not batch:
            return True
        try:
            await bounded(self.stream.publish(self.message_id, batch), timeout=timeout)
        except SHARED_STREAM_ERRORS:
            self.pending = batch + self.pending
            if self.failing_since is None:
                self.failing_since = asyncio.get_running_loop().time()
                logger.warning("Publishing reply %s failed", self.message_id, exc_info=True)
            return False
        except BaseException:
            # Cancelled mid-publish (a stop, a shutdown): the batch goes out with the final
            # flush. If it did arrive after all, readers skip what they have by sequence number.
            self.pending = batch + self.pending
            raise
        self.failing_since = None
        return True
