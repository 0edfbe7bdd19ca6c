from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q, Sum
from django.utils import timezone


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def owned_by(self, *, user: Any, visitor_id: str) -> ConversationQuerySet:
        """Conversations this visitor may see: a signed-in user's own, or the anonymous
        session's (identified by a random visitor id kept in the session)."""
        if user is not None and user.is_authenticated:
            return self.filter(user=user)
        if not visitor_id:
            return self.none()
        return self.filter(user__isnull=True, visitor_id=visitor_id)


class Conversation(models.Model):
    # Random ids: a conversation's URL reveals nothing about how many others exist.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="conversations",
    )
    visitor_id = models.CharField(max_length=64, blank=True, db_index=True)
    title = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conv_user_recent")]

    def __str__(self) -> str:
        return self.title or "New chat"

    def totals(self) -> dict[str, int]:
        figures = self.messages.visible().aggregate(
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_microusd=Sum("cost_microusd"),
        )
        return {key: value or 0 for key, value in figures.items()}


class MessageQuerySet(models.QuerySet["Message"]):
    def visible(self) -> MessageQuerySet:
        """What the conversation shows and sends to the model: superseded replies (replaced by
        Retry or Regenerate) stay in the database for staff, but drop out of the chat."""
        return self.filter(superseded=False)

    def streaming(self) -> MessageQuerySet:
        return self.filter(status=Message.Status.STREAMING)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"

    class EndedReason(models.TextChoices):
        COMPLETED = "completed"
        STOPPED = "stopped", "stopped by user"
        PROVIDER_ERROR = "provider_error", "provider error"
        TIMEOUT = "timeout"
        BUDGET = "budget", "budget reached"
        INTERRUPTED = "interrupted", "interrupted (worker died)"

    class UsageSource(models.TextChoices):
        PROVIDER = "provider"
        ESTIMATED = "estimated"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    ended_reason = models.CharField(max_length=32, choices=EndedReason.choices, blank=True)
    superseded = models.BooleanField(default=False)
    # The reply-stream sequence number that `content` reaches: a page rendered from the database
    # resumes the live stream after it, so no delta is shown twice or skipped.
    stream_seq = models.PositiveIntegerField(default=0)

    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cached_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_source = models.CharField(max_length=16, choices=UsageSource.choices, blank=True)
    # Money as an integer of micro-dollars: SQLite would store a DecimalField as a float.
    # NULL means "no price known", which is not the same as free.
    cost_microusd = models.BigIntegerField(null=True, blank=True)
    price_version = models.CharField(max_length=64, blank=True)

    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    error_text = models.TextField(blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    # Set at insert so daily analytics group on an indexed column instead of a per-row function.
    day = models.DateField(default=timezone.localdate)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="msg_conversation_order"),
            models.Index(
                fields=["heartbeat_at"],
                name="msg_streaming_heartbeat",
                condition=Q(status="streaming"),
            ),
            models.Index(fields=["day", "model"], name="msg_day_model"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def failed(self) -> bool:
        return self.status == self.Status.ERROR

    @property
    def cost_usd(self) -> float | None:
        return None if self.cost_microusd is None else self.cost_microusd / 1_000_000
