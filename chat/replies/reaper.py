"""Ends the replies of workers that died, as `interrupted`, keeping the text their readers saw.

Every worker's sweeper (`workers`) runs it each beat, through the single writer; a reader that
finds a reply whose worker fell silent asks the sweeper to run it now (`workers.reap_soon`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from chat.costs.usage import reply_usage
from chat.models import Message
from chat.providers.base import Usage
from chat.replies.context import job_context_load
from chat.replies.endings import ending_save, usage_record
from chat.replies.registry import live_reply_ids
from chat.replies.stream import SHARED_STREAM_ERRORS, ReplyStream, get_reply_stream
from chat.telemetry import metrics

logger = logging.getLogger(__name__)


def reply_reap_stale(*, message_ids: list[int] | None = None, force: bool = False) -> int:
    """End replies whose worker died as `interrupted`, keeping the text the shared stream holds
    (or, without it, the text they had saved) and estimating what they used. A reply is dead when
    its heartbeat is CHAT_WORKER_DEAD_AFTER_SECONDS old (`force`: half that) and no live worker
    lists it; this process's own jobs are always spared. Returns how many were ended."""
    # `force` (someone pressed Stop): two missed beats are enough, since the Redis key of a live
    # worker still spares its replies.
    dead_after = settings.CHAT_WORKER_DEAD_AFTER_SECONDS / (2 if force else 1)
    cutoff = timezone.now() - timedelta(seconds=dead_after)
    stale = Message.objects.streaming().filter(heartbeat_at__lte=cutoff)
    if message_ids is not None:
        stale = stale.filter(pk__in=message_ids)
    # Read before writing: on SQLite even an UPDATE that matches nothing takes the write lock.
    candidates = set(stale.values_list("pk", flat=True)) - live_reply_ids()
    if not candidates:
        return 0
    stream = get_reply_stream()
    # A worker whose database writes lag is still alive if its Redis key lists the reply.
    candidates -= stream.live_elsewhere() or set()
    reaped = 0
    for message_id in sorted(candidates):
        try:
            reaped += reply_reap(message_id, cutoff, stream)
        except DatabaseError:
            raise
        except Exception:
            # One reply that cannot be ended (a bug) must not keep the others streaming forever.
            logger.exception("Ending stale reply %s failed", message_id)
    return reaped


def reply_reap(message_id: int, cutoff: Any, stream: ReplyStream | None = None) -> int:
    stream = stream or get_reply_stream()
    estimated_input_tokens = job_context_load(message_id, with_budget=False).estimated_input_tokens
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .filter(pk=message_id, status=Message.Status.STREAMING, heartbeat_at__lte=cutoff)
            .first()
        )
        if message is None:
            return 0  # it beat or ended meanwhile
        # The dead job published more than it last saved: readers saw it, so keep it.
        try:
            tail = stream.tail(message_id, after=message.stream_seq)
        except SHARED_STREAM_ERRORS:
            logger.warning("Reading reply %s from Redis failed; keeping its saved text", message_id)
            tail = []
        for entry in tail:
            if entry.kind != "delta" or entry.seq != message.stream_seq + 1:
                break
            message.content += entry.text
            message.stream_seq = entry.seq
        message.status = Message.Status.ERROR
        message.ended_reason = Message.EndedReason.INTERRUPTED
        message.error_text = "The server restarted before this reply finished."
        message.finished_at = timezone.now()
        reported = None
        if message.input_tokens is not None:
            reported = Usage(message.input_tokens, 0, message.cached_input_tokens or 0)
        usage, source = reply_usage(
            text=message.content, reported=reported, estimated_input_tokens=estimated_input_tokens
        )
        usage_record(message, usage, source)
        ending_save(message)
        metrics.reply_ended(
            provider=message.provider,
            reason=message.ended_reason,
            output_tokens=usage.output_tokens,
        )
    # Readers on every worker are waiting on the stream: give them the ending.
    try:
        stream.finish_sync(message_id, message.stream_seq + 1, Message.EndedReason.INTERRUPTED)
    except SHARED_STREAM_ERRORS:
        logger.warning("Writing the end marker of reaped reply %s failed", message_id)
    return 1
