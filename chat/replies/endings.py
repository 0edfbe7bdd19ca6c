"""What an ending records on a reply — status, text, usage, price, speed — shared by the job
(`generation`) and the reaper (`reaper`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.analytics.rollups import rollup_invalidate
from chat.conversations.tree import Versions
from chat.costs.pricing import price_reply
from chat.costs.usage import reply_usage
from chat.models import Message
from chat.providers.base import Usage
from chat.telemetry import metrics


@dataclass
class ReplyState:
    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    seq: int = 0
    chars: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    usage: Usage | None = None
    completed_with_usage: bool = False
    estimated_input_tokens: int = 0
    # The provider answered the request with an HTTP error before any token (a bad key, a
    # refused or malformed request, a rate limit): nothing was generated, nothing is billed.
    refused: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


_STATUS_FOR_ENDING = {
    Message.EndedReason.COMPLETED: Message.Status.COMPLETE,
    Message.EndedReason.STOPPED: Message.Status.STOPPED,
    Message.EndedReason.BUDGET: Message.Status.STOPPED,
    Message.EndedReason.TOO_LONG: Message.Status.STOPPED,
}


def record_ending(
    message_id: int,
    state: ReplyState,
    ended: str,
    error_text: str,
    versions: Versions | None = None,
) -> Message | None:
    """Save how the reply ended; returns it as saved (None: it was already recorded), with its
    `versions` when the job knew them."""
    finished = time.monotonic()
    with transaction.atomic():
        # Only the message row: a send locks the conversation first, then reaps its replies.
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .get(pk=message_id)
        )
        reaped = message.ended_reason == Message.EndedReason.INTERRUPTED
        if message.status != Message.Status.STREAMING and not reaped:
            return None  # already recorded
        # A reply the reaper wrongly took for dead (its saves were failing) is still recorded
        # by the job, which knows how it really ended and has all of its text.
        text = state.text
        message.content = text
        message.stream_seq = state.seq
        message.status = _STATUS_FOR_ENDING.get(ended, Message.Status.ERROR)  # type: ignore[call-overload]
        message.ended_reason = ended
        message.error_text = error_text
        message.finished_at = timezone.now()
        message.duration_ms = round((finished - state.started) * 1000)
        if state.first_token_at is not None:
            message.ttft_ms = round((state.first_token_at - state.started) * 1000)
            metrics.first_token(message.provider, state.first_token_at - state.started)
        usage, source = reply_usage(
            text=text,
            reported=state.usage,
            estimated_input_tokens=state.estimated_input_tokens,
            complete=state.completed_with_usage,
            refused=state.refused,
        )
        usage_record(message, usage, source)
        message.tokens_per_second = output_speed(state, usage.output_tokens)
        ending_save(message, updated_at=timezone.now())
        if versions is not None and not reaped:
            # Reaped, the conversation was idle meanwhile and may have a new version beside it.
            message.versions = versions  # type: ignore[attr-defined]
        metrics.reply_ended(
            provider=message.provider, reason=ended, output_tokens=usage.output_tokens
        )
    return message


# What an ending (the job's or the reaper's) writes to the reply: the rest of the row does not
# change, and saving only these is a shorter UPDATE and less of Django's query building.
ENDING_FIELDS = [
    "content", "stream_seq", "status", "ended_reason", "error_text", "finished_at",
    "duration_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_input_tokens",
    "usage_source", "cost_microusd", "price_version", "tokens_per_second",
]  # fmt: skip


def ending_save(message: Message, **conversation_fields: Any) -> None:
    """Save an ended reply with what depends on it: its conversation's totals, and its day's
    roll-up if the day is over."""
    message.save(update_fields=ENDING_FIELDS)
    message.conversation.refresh_totals(**conversation_fields)
    rollup_invalidate(message.day)


def usage_record(message: Message, usage: Usage, source: str) -> None:
    message.input_tokens = usage.input_tokens
    message.output_tokens = usage.output_tokens
    message.cached_input_tokens = usage.cached_input_tokens
    message.usage_source = source
    price = price_reply(provider=message.provider, model=message.model, usage=usage, on=message.day)
    message.cost_microusd, message.price_version = price.cost_microusd, price.version


# Below this much streaming time a speed says more about network buffering than about the model.
MIN_SECONDS_FOR_SPEED = 0.25


def output_speed(state: ReplyState, output_tokens: int) -> float | None:
    """Tokens per second from the first token to the last, so neither the wait for the first
    token nor a stall before Stop counts against the model."""
    if state.first_token_at is None or state.last_token_at is None or output_tokens < 2:
        return None
    seconds = state.last_token_at - state.first_token_at
    if seconds < MIN_SECONDS_FOR_SPEED:
        return None
    # The first token arrived at the start of the interval, so it is not part of the rate.
    return round((output_tokens - 1) / seconds, 1)
