"""The channel layer's room groups, and its Redis connection settings.

No Django imports at module level: chatsite/settings.py builds CHANNEL_LAYERS with
`redis_layer_hosts` (the layer class itself is in chat/rooms/redis_layer.py).

The room is an extra: while the layer's Redis is unreachable, room operations fail, are logged
at WARNING by `room_guarded` and skipped, and the chat (send, stop, watch, the reply streams)
goes on; the room comes back by itself with Redis.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from typing import Any

import redis.exceptions

logger = logging.getLogger(__name__)

# What the layer and the presence store raise while Redis is down, restarting or unreachable
# (redis-py's own errors are not OSErrors; a refused or reset socket may surface as one).
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

# channels-redis waits this long in BZPOPMIN for a consumer's next message (its `brpop_timeout`).
LAYER_BLOCKING_POP_SECONDS = 5.0
# The layer's sockets wait longer than that for an answer: with redis-py 8's default (5 s, the
# same as the pop) every idle consumer died with 1011 about every 5 s (django/channels_redis#422).
LAYER_SOCKET_TIMEOUT = LAYER_BLOCKING_POP_SECONDS + 10.0
LAYER_CONNECT_TIMEOUT = 2.0


def redis_retry() -> Any:
    """redis-py's retry for the room's asyncio clients (the layer's pools, presence): a command
    on a pooled connection that Redis dropped (a restart) reconnects and runs again, instead of
    failing once per stale connection after Redis is back. A Redis that stays down still fails
    within a second, and the room's callers go on without it."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2)


def redis_layer_hosts(url: str) -> list[dict[str, Any]]:
    """channels-redis hosts as dicts: the rest of each is passed to redis-py's connection pool."""
    return [
        {
            "address": url,
            "socket_timeout": LAYER_SOCKET_TIMEOUT,
            "socket_connect_timeout": LAYER_CONNECT_TIMEOUT,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry": redis_retry(),
        }
    ]


def room_group(conversation_id: Any) -> str:
    """The group of a conversation's live room (group names allow [a-z0-9._-], under 100)."""
    return f"room.{uuid.UUID(str(conversation_id)).hex}"


def get_layer() -> Any:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - CHANNEL_LAYERS always names one
        raise RuntimeError("No channel layer is configured.")
    return layer


async def room_send(conversation_id: Any, event: dict[str, Any]) -> None:
    """One message to the room's group: the layer delivers it to each member's connection
    (O(connections in the room) messages, never a list of the whole site)."""
    await get_layer().group_send(room_group(conversation_id), event)


async def room_guarded(operation: Awaitable[Any], *, doing: str) -> bool:
    """Await a room operation (a group add, discard or send, a presence write); if Redis is
    unreachable, log it at WARNING and go on: the room pauses, the connection does not fail.
    Whether it succeeded."""
    try:
        await operation
    except REDIS_OUTAGE_ERRORS as exc:
        logger.warning(
            "The room could not %s (Redis unreachable: %s); it goes on without", doing, exc
        )
        return False
    return True
