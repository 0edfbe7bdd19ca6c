"""channels-redis, made to ride out a Redis outage (the layer named by CHANNEL_LAYERS with
REDIS_URL).

Channels' consumer awaits the layer's `receive` next to the client's frames: channels-redis
raises redis-py's ConnectionError from it while Redis is down or restarting, and that error
crashed the whole socket (1011) — the chat, not just its room. Here `receive` waits instead,
retrying with a bounded backoff until Redis answers again.

A Redis that restarts comes back empty (no persistence: groups are not kept), so the layer
remembers which of this process's channels are in which groups, and adds them all again once
Redis answers after a failure: the rooms of every open connection work again by themselves.
Messages sent to a group while Redis was down are lost — a room's events are live only
(presence is refreshed by each connection's heartbeat; a missed typing event is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer

from chat.rooms.layer import REDIS_OUTAGE_ERRORS

logger = logging.getLogger(__name__)

# The wait before `receive` asks Redis again after a failure: doubling from the first to the
# last, then every RECEIVE_RETRY_MAX_SECONDS until Redis answers.
RECEIVE_RETRY_FIRST_SECONDS = 0.1
RECEIVE_RETRY_MAX_SECONDS = 2.0


class ResilientRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # This process's channels and their groups, as the layer was asked (so they can be
        # added again to a Redis that lost them).
        self.local_groups: defaultdict[str, set[str]] = defaultdict(set)
        # Set by a failure: the groups are added again once Redis answers.
        self.resubscribe_needed = False
        # When the outage under way began (monotonic), or None: one warning per outage.
        self.outage_since: float | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        delay = RECEIVE_RETRY_FIRST_SECONDS
        while True:
            try:
                if self.resubscribe_needed:
                    await self.resubscribe()
                message: dict[str, Any] = await super().receive(channel)
            except REDIS_OUTAGE_ERRORS as exc:
                self._outage(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECEIVE_RETRY_MAX_SECONDS)
                continue
            self._recovered()
            return message

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        # channels-redis runs this in a task nobody awaits, after a message was received: if
        # Redis went in between, its error was never retrieved and asyncio logged it at ERROR
        # when the task was collected. The message was delivered; a Redis that restarts has no
        # backup queue left to clean (at worst a surviving one redelivers it, as channels-redis
        # accepts for a cancelled cleaner).
        try:
            await super()._clean_receive_backup(index, channel)
        except REDIS_OUTAGE_ERRORS as exc:
            self._outage(exc)

    async def group_add(self, group: str, channel: str) -> None:
        # Remembered first: added again after an outage even if this add fails.
        self.local_groups[channel].add(group)
        try:
            await super().group_add(group, channel)
        except REDIS_OUTAGE_ERRORS:
            self.resubscribe_needed = True
            raise

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self.local_groups.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self.local_groups[channel]
        await super().group_discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.resubscribe_needed:
            with contextlib.suppress(*REDIS_OUTAGE_ERRORS):  # the send below says so
                await self.resubscribe()
        await super().group_send(group, message)

    async def resubscribe(self) -> None:
        """Add every channel of this process to its groups again (a restarted Redis has none).
        Idempotent: a channel already in a group only has its time refreshed."""
        self.resubscribe_needed = False
        try:
            for channel, groups in list(self.local_groups.items()):
                for group in list(groups):
                    await super().group_add(group, channel)
        except BaseException:
            self.resubscribe_needed = True
            raise
        self._recovered()

    def _outage(self, exc: BaseException) -> None:
        self.resubscribe_needed = True
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            logger.warning(
                "The channel layer's Redis is unreachable (%s): rooms pause, retrying", exc
            )

    def _recovered(self) -> None:
        if self.outage_since is not None:
            logger.warning(
                "The channel layer's Redis answers again after %.1f s: rooms resume",
                time.monotonic() - self.outage_since,
            )
            self.outage_since = None
