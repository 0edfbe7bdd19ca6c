from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.money import MicroDollarsField

OwnedRows = TypeVar("OwnedRows", bound=models.QuerySet[Any])


def _owned_by(queryset: OwnedRows, *, user: Any, visitor_id: str) -> OwnedRows:
    """The rows of a signed-in user, or of an anonymous visitor by their random id: how
    conversations and attachments are owned."""
    if user is not None and user.is_authenticated:
        return queryset.filter(user=user)
    if not visitor_id:
        return queryset.none()
    return queryset.filter(user__isnull=True, visitor_id=visitor_id)


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def owned_by(self, *, user: Any, visitor_id: str) -> ConversationQuerySet:
        """Conversations this visitor may see: a signed-in user's own, or the anonymous
        session's (identified by a random visitor id kept in the session)."""
        return _owned_by(self, user=user, visitor_id=visitor_id)

    def live(self) -> ConversationQuerySet:
        """Not deleted by their owner (staff still see deleted ones in the admin)."""
        return self.filter(deleted_at__isnull=True)


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

    class Source(models.TextChoices):
        PAGE = "page"
        API = "api", "API"

    # Where the conversation was started: the chat page, or the OpenAI-compatible API.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.PAGE)
    title = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    # Members see who else is here (chat/web's rooms); the owner may turn that off.
    presence_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField("last activity", default=timezone.now, db_index=True)

    # The last message of the branch the owner sees (see chat/conversations/tree.py); set whenever a
    # message is added, a version is chosen or a failed turn is deleted.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Deleted by its owner: hidden from them everywhere, kept (marked) for staff review, unless
    # CHAT_PURGE_DELETED removes the rows instead.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The owner's sidebar: pinned ones in a "Pinned" group at its top, archived ones out of it
    # (listed on the archived page; their links still work).
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    # Staff review.
    flagged = models.BooleanField(default=False)
    review_note = models.TextField(blank=True)

    # Totals over every message, replaced and other-branch replies and generated titles included
    # (they were paid for), kept by `refresh_totals` whenever a message is added or ends, so the
    # admin list and its sorting never aggregate the message table. The chat page shows these
    # same figures: one definition of a conversation's total.
    message_count = models.PositiveIntegerField("messages", default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_microusd = models.BigIntegerField("cost", default=0)
    unpriced_replies = models.PositiveIntegerField(default=0)
    ended_reasons = models.CharField(max_length=120, blank=True)
    # Counts of the replies the owner rated, kept by `message_feedback_set`, so staff can filter
    # the list by feedback without reading the message table.
    feedback_up = models.PositiveIntegerField(default=0)
    feedback_down = models.PositiveIntegerField(default=0)
    feedback_comments = models.PositiveIntegerField(default=0)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["user", "-updated_at"], name="conv_user_recent"),
            models.Index(fields=["visitor_id", "-updated_at"], name="conv_visitor_recent"),
            models.Index(fields=["-cost_microusd"], name="conv_cost"),
            models.Index(fields=["model"], name="conv_model"),
            models.Index(
                fields=["-updated_at"], name="conv_flagged_recent", condition=Q(flagged=True)
            ),
            # Few conversations have feedback: the list's feedback filter walks only those.
            models.Index(
                fields=["-updated_at"],
                name="conv_feedback_recent",
                condition=Q(feedback_up__gt=0) | Q(feedback_down__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return self.title or "New chat"

    def totals(self) -> dict[str, int]:
        """The conversation's total as the page shows it: the stored figures staff see too."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_microusd": self.cost_microusd,
        }

    def count_new_messages(self, added: int, **also: Any) -> None:
        """`added` chat messages were just created that change no other total (a user message
        and a reply still streaming: no tokens, no cost, no ending yet). Cheaper than
        `refresh_totals`, which recounts: this runs for every message sent."""
        Conversation.objects.filter(pk=self.pk).update(
            message_count=models.F("message_count") + added, **also
        )
        self.message_count += added

    def refresh_totals(self, **also: Any) -> None:
        """Recount the stored totals from the messages (call inside the transaction that
        changed them), writing `also` (e.g. `updated_at`) in the same update.

        One plain read of a few columns, summed here: an `aggregate()` with filtered counts plus
        a DISTINCT read cost ~3 ms of Django's query building per reply's ending (the largest
        item of the writer thread at 100 streams, docs/journal.md, the second pass); a
        conversation's rows are few."""
        message_count = input_tokens = output_tokens = cost = unpriced = 0
        reasons: set[str] = set()
        rows = self.messages.order_by().values_list(
            "kind", "role", "from_client", "status", "ended_reason",
            "input_tokens", "output_tokens", "cost_microusd",
        )  # fmt: skip
        for kind, role, from_client, status, reason, tokens_in, tokens_out, micro in rows:
            # A generated title is usage, not a message of the conversation.
            if kind == Message.Kind.CHAT:
                message_count += 1
            input_tokens += tokens_in or 0
            output_tokens += tokens_out or 0
            cost += micro or 0
            if (
                micro is None
                and role == Message.Role.ASSISTANT
                and not from_client
                and status != Message.Status.STREAMING
            ):
                unpriced += 1
            if reason:
                reasons.add(reason)
        totals = {
            "ended_reasons": ",".join(sorted(reasons)),
            "message_count": message_count,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_microusd": cost,
            "unpriced_replies": unpriced,
            **also,
        }
        Conversation.objects.filter(pk=self.pk).update(**totals)
        for name, value in totals.items():  # this instance shows them too (the finished reply)
            setattr(self, name, value)


class MessageQuerySet(models.QuerySet["Message"]):
    def visible(self) -> MessageQuerySet:
        """The messages of the branch the owner sees: other versions (Retry, Regenerate, an
        edited message) are marked `superseded`, deleted failed turns and title jobs drop out.
        The branch itself is the path to `Conversation.current_leaf`
        (chat/conversations/tree.py)."""
        return self.filter(superseded=False, deleted_at__isnull=True, kind=Message.Kind.CHAT)

    def chat(self) -> MessageQuerySet:
        """Messages of the conversation's tree (every branch), without deleted ones."""
        return self.filter(deleted_at__isnull=True, kind=Message.Kind.CHAT)

    def streaming(self) -> MessageQuerySet:
        return self.filter(status=Message.Status.STREAMING)

    def replies(self) -> MessageQuerySet:
        """Assistant messages generated here: not the earlier turns an API client sent along."""
        return self.filter(role=Message.Role.ASSISTANT, from_client=False)


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
        # The reply reached CHAT_MAX_REPLY_CHARS; its text up to the cap is kept.
        TOO_LONG = "too_long", "size limit reached"
        # A part of chatsite itself (Redis, the database) failed, not the model's provider.
        SERVICE_ERROR = "service_error", "service unavailable"

    class UsageSource(models.TextChoices):
        PROVIDER = "provider"
        ESTIMATED = "estimated"
        # The provider refused the request (an HTTP error before any token): nothing was used.
        NONE = "none", "not billed"

    class Kind(models.TextChoices):
        CHAT = "chat"
        # A cheap model naming the conversation (CHAT_TITLE_MODEL): usage, never shown in chat.
        TITLE = "title", "generated title"

    class Feedback(models.IntegerChoices):
        UP = 1, "👍"
        DOWN = -1, "👎"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    # The signed-in person who sent a user message, and on its reply the person who asked (the
    # reply is charged to them): in a shared conversation not always its owner. Empty for
    # anonymous visitors' messages and for messages written before conversations were shared.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    ended_reason = models.CharField(max_length=32, choices=EndedReason.choices, blank=True)
    # The conversation is a tree: a message follows its parent. Versions of a reply (Retry,
    # Regenerate) and branches of an edited message are siblings: children of one parent.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CHAT)
    # Not on the branch the owner sees (kept in step with Conversation.current_leaf), so staff
    # review and exports can tell the replaced versions apart without walking the tree.
    superseded = models.BooleanField(default=False)
    # An earlier turn of the conversation that an API client sent with its request (its own
    # history, assistant turns included): context for the model, never a reply counted here.
    from_client = models.BooleanField(default=False)
    # The output token cap the request asked for (the API's max_tokens), below the configured one.
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    # A failed turn its owner deleted: gone from the chat, kept for staff and in the totals.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # A user message sent with files (`Attachment.message`): building a reply's history looks
    # for attachments only when a message on the branch has some.
    has_attachments = models.BooleanField(default=False)
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
    price_version = models.CharField(max_length=120, blank=True)

    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    error_text = models.TextField(blank=True)

    # The owner's rating of a finished reply, with an optional comment; they may change it.
    feedback = models.SmallIntegerField(choices=Feedback.choices, null=True, blank=True)
    feedback_comment = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    # Set at insert so daily analytics group on an indexed column instead of a per-row function.
    day = models.DateField(default=timezone.localdate)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # A keyed hash of the sender's IP (never the address itself): limits and anonymous spending
    # caps count by it, so a fresh session from the same address does not reset them.
    client_key = models.CharField(max_length=32, blank=True)

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
            models.Index(
                fields=["client_key", "day"],
                name="msg_client_day",
                condition=~Q(client_key=""),
            ),
            # Satisfaction is read from the rated replies of a period, never the whole day, and
            # counted from this index alone (36,000 rated replies in 90 days at a million
            # replies: reading each from the table took 0.5 s); with a source or owner filter
            # joined to their conversations from here too.
            models.Index(
                fields=["day", "provider", "model", "feedback", "role", "conversation"],
                name="msg_feedback_day_model",
                condition=Q(feedback__isnull=False),
            ),
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


class UsageReport(Message):
    """No table of its own: it gives the admin's analytics page a place in the index and a
    permission of its own (`chat.view_usagereport`)."""

    class Meta:
        proxy = True
        verbose_name = "usage analytics"
        verbose_name_plural = "usage analytics"
        default_permissions = ("view",)


class PriceOverride(models.Model):
    """A price staff set for a model, winning over genai-prices from `valid_from` on: self-hosted
    models (Ollama, vLLM) at 0, negotiated rates, models the library does not know. Prices are
    applied when a reply is written, so changing one never rewrites past costs."""

    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    input_per_mtok = MicroDollarsField(
        "input $ per 1M tokens", help_text="Dollars per million input tokens."
    )
    output_per_mtok = MicroDollarsField(
        "output $ per 1M tokens", help_text="Dollars per million output tokens."
    )
    cached_input_per_mtok = MicroDollarsField(
        "cached input $ per 1M tokens",
        null=True,
        blank=True,
        help_text="Dollars per million cached input tokens. Blank: the input price.",
    )
    valid_from = models.DateField(default=timezone.localdate)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider", "model", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "valid_from"], name="price_override_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.model} from {self.valid_from}"


class SpendingCap(models.Model):
    """A cap on what one person's replies may cost per day and per month. A user's own cap
    replaces the defaults; anonymous visitors get the anonymous default, or else the default for
    everyone. A blank amount means no cap for that period."""

    class Scope(models.TextChoices):
        EVERYONE = "everyone", "default for everyone"
        ANONYMOUS = "anonymous", "default for anonymous visitors"
        USER = "user", "one user"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="spending_cap",
        help_text="Only for the scope 'one user'.",
    )
    daily_cap = MicroDollarsField(
        "daily cap ($)", null=True, blank=True, help_text="Dollars per day. Blank: no daily cap."
    )
    monthly_cap = MicroDollarsField(
        "monthly cap ($)",
        null=True,
        blank=True,
        help_text="Dollars per calendar month. Blank: no monthly cap.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope"], condition=~Q(scope="user"), name="spending_cap_one_default"
            ),
            models.CheckConstraint(
                condition=Q(scope="user", user__isnull=False)
                | (~Q(scope="user") & Q(user__isnull=True)),
                name="spending_cap_user_iff_scope_user",
            ),
        ]

    def __str__(self) -> str:
        if self.scope == self.Scope.USER:
            return f"Cap for {self.user}"
        return f"Cap: {self.get_scope_display()}"


class UsageDay(models.Model):
    """A day whose analytics have been rolled up. Days are rolled up once they are over; a reply of
    a rolled-up day that ends late (a reaped reply after downtime) marks the roll-up stale, and
    the next analytics view rebuilds it."""

    day = models.DateField(primary_key=True)
    built_at = models.DateTimeField(default=timezone.now)
    # Marked with an upsert rather than deleted: on PostgreSQL an upsert waits for a roll-up of
    # the day being built in a concurrent transaction, so a late reply is never missed.
    stale = models.BooleanField(default=False)
    # A rating of one of the day's replies changed since its ratings were counted: the next view
    # counts them again (`UsageDayRating`), the rest of the roll-up stays.
    ratings_stale = models.BooleanField(default=False)

    def __str__(self) -> str:
        return str(self.day)


class UsageDayModel(models.Model):
    """Replies of one day, provider, model, source, kind of owner and ended reason."""

    usage_day = models.ForeignKey(
        UsageDay, on_delete=models.CASCADE, db_column="day", related_name="models"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    # The conversation's source and whether its owner is an anonymous visitor: the analytics
    # page's source and owner filters read roll-ups too.
    source = models.CharField(max_length=8, default=Conversation.Source.PAGE)
    anonymous = models.BooleanField(default=False)
    ended_reason = models.CharField(max_length=32)
    replies = models.PositiveIntegerField()
    input_tokens = models.PositiveBigIntegerField()
    output_tokens = models.PositiveBigIntegerField()
    cached_input_tokens = models.PositiveBigIntegerField()
    cost_microusd = models.BigIntegerField()
    unpriced_replies = models.PositiveIntegerField()
    estimated_replies = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.usage_day_id} {self.provider}:{self.model} {self.ended_reason}"


class UsageDayLatency(models.Model):
    """How fast one model answered on one day for one source and kind of owner, as histograms
    (`chat.analytics.histograms`: counts by bucket, buckets 2 % wide on a log scale), so
    percentiles merge across days and models exact to within 1 %."""

    usage_day = models.ForeignKey(
        UsageDay, on_delete=models.CASCADE, db_column="day", related_name="latencies"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    source = models.CharField(max_length=8, default=Conversation.Source.PAGE)
    anonymous = models.BooleanField(default=False)
    ttft_histogram = models.JSONField(default=dict)
    duration_histogram = models.JSONField(default=dict)
    speed_histogram = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.usage_day_id} {self.provider}:{self.model}"


class UsageDayLatencyTotal(models.Model):
    """The `UsageDayLatency` rows of one day and model merged over sources and kinds of owner:
    what a page without a source or owner filter reads, a third of the rows to merge."""

    usage_day = models.ForeignKey(
        UsageDay, on_delete=models.CASCADE, db_column="day", related_name="latency_totals"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    ttft_histogram = models.JSONField(default=dict)
    duration_histogram = models.JSONField(default=dict)
    speed_histogram = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.usage_day_id} {self.provider}:{self.model} (all)"


class UsageDayRating(models.Model):
    """Rated replies of one day, provider, model, source, kind of owner and rating."""

    usage_day = models.ForeignKey(
        UsageDay, on_delete=models.CASCADE, db_column="day", related_name="ratings"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    source = models.CharField(max_length=8, default=Conversation.Source.PAGE)
    anonymous = models.BooleanField(default=False)
    rating = models.SmallIntegerField(choices=Message.Feedback.choices)
    replies = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.usage_day_id} {self.provider}:{self.model} {self.rating}"


class UsageDayOwner(models.Model):
    """Replies of one day, owner ("user:<id>" or "visitor:<id>"), provider, model and source."""

    usage_day = models.ForeignKey(
        UsageDay, on_delete=models.CASCADE, db_column="day", related_name="owners"
    )
    owner = models.CharField(max_length=80)
    provider = models.CharField(max_length=32, default="")
    model = models.CharField(max_length=100, default="")
    source = models.CharField(max_length=8, default=Conversation.Source.PAGE)
    replies = models.PositiveIntegerField()
    input_tokens = models.PositiveBigIntegerField()
    output_tokens = models.PositiveBigIntegerField()
    cost_microusd = models.BigIntegerField()

    class Meta:
        # Every column: the analytics page sums a period's rows (190,000 for 90 days at a million
        # replies) from the index alone, without a lookup of each row in the table.
        indexes = [
            models.Index(
                fields=[
                    "usage_day",
                    "owner",
                    "provider",
                    "model",
                    "source",
                    "replies",
                    "input_tokens",
                    "output_tokens",
                    "cost_microusd",
                ],
                name="usage_owner_day_sums",
            )
        ]

    def __str__(self) -> str:
        return f"{self.usage_day_id} {self.owner}"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A personal key for the OpenAI-compatible API. Only a SHA-256 digest of the key is stored:
    the key is 256 random bits, so a fast hash is as safe as a slow one and costs one indexed
    lookup per request. `prefix` (the key's first characters) tells keys apart in lists."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    hashed_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- Sharing ------------------------------------------------------------------------------------


class ConversationMember(models.Model):
    """Someone the owner let into a conversation (through an invite link): they read it, send
    in it and stop their own replies. The owner is `Conversation.user` and has no row."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["added_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.conversation_id}"


class ConversationInvite(models.Model):
    """The invite link of a conversation (`/join/<token>`). "New link" replaces the token, so
    the old link stops working; "Turn off" disables it."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invite to {self.conversation_id}"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )


class ConversationShare(models.Model):
    """A read-only snapshot of a conversation's branch, published at `/s/<token>`. Sharing
    again updates the same link's snapshot."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversation_shares"
    )
    token = models.CharField(max_length=64, unique=True)
    # The branch on screen when shared: [{role, author, content, created_at, model}, ...].
    snapshot = models.JSONField(default=list)
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"Share of {self.conversation_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )


# --- Preferences --------------------------------------------------------------------------------


class Preferences(models.Model):
    """A signed-in person's own settings, one row each (created on first save). Their default
    instructions prefill a new conversation's system prompt; existing conversations keep theirs."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_preferences"
    )
    # Capped by CHAT_MAX_SYSTEM_PROMPT_CHARS when saved (chat.conversations.preferences).
    default_instructions = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user_id}"


class AttachmentQuerySet(models.QuerySet["Attachment"]):
    def owned_by(self, *, user: Any, visitor_id: str) -> AttachmentQuerySet:
        """Files this visitor uploaded: owned exactly as conversations are (a signed-in user's
        own, or the anonymous visitor's by their random id)."""
        return _owned_by(self, user=user, visitor_id=visitor_id)

    def unsent(self) -> AttachmentQuerySet:
        return self.filter(message__isnull=True)


class Attachment(models.Model):
    """A file someone attached: an image (re-encoded, metadata removed) or a document (its text
    extracted). Stored once per content (`storage_name` is the stored bytes' hash); the name the
    person gave is display text only, never a path."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document"

    # Random ids: an attachment's URL reveals nothing about how many others exist.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
    )
    visitor_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The stored bytes' SHA-256 (of the re-encoded image, or of the document as uploaded).
    sha256 = models.CharField(max_length=64, db_index=True)
    # The SHA-256 of the bytes as the API received them (an `image_url` data URL's or a fetched
    # URL's): API clients resend every earlier turn, and an image already read is not read again.
    source_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    storage_name = models.CharField(max_length=200)
    thumbnail_name = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200)
    # Decided from the content (magic bytes), never from the name or the browser's claim.
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # A document's text as the model reads it (capped at CHAT_ATTACHMENT_MAX_TOKENS), and what
    # of it that is, in words: "pages 1–40 of 300", "all 12 lines".
    text = models.TextField(blank=True)
    included = models.CharField(max_length=200, blank=True)
    # The user message it was sent with; empty until sent (unsent uploads are swept after a day).
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.name
