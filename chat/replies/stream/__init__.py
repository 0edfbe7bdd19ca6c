"""The reply stream: a sequence-numbered log per assistant message that transports read.

Without REDIS_URL the log lives in this process's memory (`memory`); with REDIS_URL it is a
Redis Stream (`redis`), so any worker can read what any other worker's job writes. The job
publishes through `publisher`.
"""

from __future__ import annotations

from django.conf import settings

from chat.replies.stream.base import (
    SHARED_STREAM_ERRORS,
    ReplyStream,
    StreamEntry,
    StreamUnavailable,
    bounded,
)
from chat.replies.stream.memory import MemoryReplyStream
from chat.replies.stream.redis import RedisReplyStream

__all__ = [
    "SHARED_STREAM_ERRORS",
    "MemoryReplyStream",
    "RedisReplyStream",
    "ReplyStream",
    "StreamEntry",
    "StreamUnavailable",
    "bounded",
    "get_reply_stream",
    "reset_reply_stream",
]

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
