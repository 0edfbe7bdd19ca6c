"""Conversation review: a list staff filter and search without aggregating the message table, a
read-only transcript whose flag and review note are the only editable fields, and streaming CSV /
JSON Lines exports."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from chat.admin.conversation_filters import (
    REASON_LABELS,
    DeletedFilter,
    EndedReasonFilter,
    FeedbackFilter,
    LastActivityFilter,
    ModelFilter,
    OwnerFilter,
    ProviderFilter,
    SourceFilter,
    owner_label,
    owner_of,
)
from chat.admin.exports import (
    attachment,
    csv_chunks,
    dated_filename,
    ended_reasons,
    jsonl_chunks,
)
from chat.attachments.shown import files_prefetch
from chat.models import Conversation, Message
from chat.money import format_usd

# --- The admin -------------------------------------------------------------------------------


def _with_files(rows: Any) -> list[Message]:
    """The transcript, each message's files read in one query (none if no message has any)."""
    transcript = list(rows)
    files_prefetch(transcript)
    return transcript


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "owner_display",
        "title_display",
        "model_display",
        "messages_display",
        "tokens_display",
        "cost_display",
        "last_activity_display",
        # How the replies ended and the review marks share a column: the title takes the room.
        "outcome_display",
    ]
    list_display_links = ["title_display"]
    sortable_by = ["last_activity_display", "cost_display", "tokens_display", "messages_display"]
    list_filter = [
        "flagged",
        DeletedFilter,
        EndedReasonFilter,
        LastActivityFilter,
        OwnerFilter,
        ProviderFilter,
        ModelFilter,
        SourceFilter,
        FeedbackFilter,
    ]
    # Users come in a second query for the page: joining them made SQLite plan the owner filter
    # and the sorts on unindexed columns from the user side, at ~0.5 s for 200,000 rows.
    list_select_related = False
    list_per_page = 50
    # Counting the whole table on every page view is what makes big admin lists slow; facet
    # counts would run one count per choice.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    search_fields = ["title", "messages__content", "user__username", "user__email"]
    search_help_text = (
        "Title, message text, username or email; a conversation or visitor id finds that one."
    )
    ordering = ["-updated_at"]
    fieldsets = [("Review", {"fields": ["flagged", "review_note"]})]
    actions = ["export_csv", "export_jsonl", "flag_selected", "unflag_selected"]

    class Media:
        css = {"all": ["chat/admin.css"]}
        js = ["chat/admin_list.js"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).prefetch_related("user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations come from the chat

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        # Django's own search joins the messages and adds DISTINCT over every column. An EXISTS
        # per term finds the same conversations without duplicates to remove, and stops at a
        # conversation's first matching message. (Measured against `pk IN (... UNION ...)` on
        # 200,000 conversations: as fast or faster on SQLite and PostgreSQL alike.)
        terms = []
        for bit in smart_split(search_term):
            if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            by_text = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=bit)
            term = (
                Q(title__icontains=bit)
                | Q(user__username__icontains=bit)
                | Q(user__email__icontains=bit)
                | Q(visitor_id=bit)
                | Q(Exists(by_text))
            )
            with contextlib.suppress(ValueError):
                term |= Q(pk=uuid.UUID(bit))
            terms.append(term)
        if terms:
            queryset = queryset.filter(Q(*terms))
        return queryset, False

    # Columns

    @admin.display(description="owner")
    def owner_display(self, conversation: Conversation) -> SafeString:
        label = owner_label(conversation)
        return format_html(
            '<a class="review-cut" href="?{}" title="{} — only this owner’s conversations">{}</a>',
            urlencode({"owner": owner_of(conversation)}),
            label,
            label,
        )

    @admin.display(description="title")
    def title_display(self, conversation: Conversation) -> SafeString:
        # One line, cut with an ellipsis; the whole title on hover.
        title = str(conversation)
        cut = format_html(
            '<span class="review-cut review-title" title="{}">{}</span>', title, title
        )
        if conversation.deleted_at is None:
            return cut
        return format_html(
            '{}<span class="review-badge review-badge-deleted" title="Deleted by its owner on {}'
            '; hidden from them, kept for review">deleted</span>',
            cut,
            date_format(timezone.localtime(conversation.deleted_at), "Y-m-d H:i"),
        )

    @admin.display(description="model")
    def model_display(self, conversation: Conversation) -> SafeString:
        return format_html(
            '<span class="review-cut review-model" title="{}:{}">{}</span>'
            '<span class="review-cut review-provider">{}</span>',
            conversation.provider,
            conversation.model,
            conversation.model,
            conversation.provider,
        )

    @admin.display(description="msgs", ordering="message_count")
    def messages_display(self, conversation: Conversation) -> str:
        return f"{conversation.message_count:,}"

    @admin.display(description="tokens in / out", ordering=F("input_tokens") + F("output_tokens"))
    def tokens_display(self, conversation: Conversation) -> SafeString:
        return format_html(
            "{}&nbsp;in<br>{}&nbsp;out",
            f"{conversation.input_tokens:,}",
            f"{conversation.output_tokens:,}",
        )

    @admin.display(description="cost", ordering="cost_microusd")
    def cost_display(self, conversation: Conversation) -> SafeString:
        if not conversation.unpriced_replies:
            return format_html("{}", format_usd(conversation.cost_microusd))
        return format_html(
            '{} <span class="review-unpriced" title="Replies with no known price">'
            "+{} unpriced</span>",
            format_usd(conversation.cost_microusd),
            conversation.unpriced_replies,
        )

    @admin.display(description="last active", ordering="updated_at")
    def last_activity_display(self, conversation: Conversation) -> SafeString:
        # Date and time on two lines: a narrow column.
        when = timezone.localtime(conversation.updated_at)
        return format_html("{}<br>{}", date_format(when, "Y-m-d"), date_format(when, "H:i"))

    @admin.display(description="ended · review")
    def outcome_display(self, conversation: Conversation) -> SafeString:
        return format_html_join(
            " ",
            '<span class="review-badge review-badge-{}"{}>{}</span>',
            [*self._ending_badges(conversation), *self._review_badges(conversation)],
        )

    def _ending_badges(self, conversation: Conversation) -> list[tuple[str, str, str]]:
        reasons = ended_reasons(conversation)
        # Problems first; "completed" is the normal case and stays quiet.
        reasons.sort(key=lambda reason: reason == Message.EndedReason.COMPLETED)
        return [(reason, "", REASON_LABELS.get(reason, reason)) for reason in reasons]

    def _review_badges(self, conversation: Conversation) -> list[tuple[str, SafeString, str]]:
        # Only the flagged and the rated stand out: a red cross on every other row would be noise.
        badges = []
        if conversation.flagged:
            badges.append(("flagged", "⚑ Flagged", "Flagged by a reviewer"))
        if conversation.feedback_up:
            badges.append(
                ("feedback-up", f"{conversation.feedback_up} good", "Replies the owner rated good")
            )
        if conversation.feedback_down:
            badges.append(
                (
                    "feedback-down",
                    f"{conversation.feedback_down} bad",
                    "Replies the owner rated bad",
                )
            )
        if conversation.feedback_comments:
            count = conversation.feedback_comments
            badges.append(("feedback-comment", f"{count} comment{pluralize(count)}", "Comments"))
        return [(kind, format_html(' title="{}"', title), text) for kind, text, title in badges]

    # The review page

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Conversations", **(extra_context or {})})

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {"title": "Review conversation", **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Conversation | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(
                transcript=_with_files(obj.messages.select_related("author").order_by("id")),
                owner_label=owner_label(obj),
                owner_query=urlencode({"owner": owner_of(obj)}),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Conversation, form: Any, change: bool) -> None:
        # Only the review fields: saving the whole row would write back the totals as they were
        # when the page was opened, over those of a reply that ended since.
        obj.save(update_fields=["flagged", "review_note"])

    # Actions

    @admin.action(description="Export selected as CSV (one row per message)", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        return attachment(
            request,
            csv_chunks(queryset),
            dated_filename("conversations", "csv"),
            "text/csv; charset=utf-8",
        )

    @admin.action(
        description="Export selected as JSON Lines (one conversation per line)",
        permissions=["view"],
    )
    def export_jsonl(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> StreamingHttpResponse:
        chunks = jsonl_chunks(queryset)
        return attachment(
            request,
            chunks,
            dated_filename("conversations", "jsonl"),
            "application/jsonl; charset=utf-8",
        )

    @admin.action(description="Flag selected conversations", permissions=["change"])
    def flag_selected(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        count = queryset.update(flagged=True)
        self.message_user(request, f"Flagged {count:,} conversation(s).", messages.SUCCESS)

    @admin.action(description="Unflag selected conversations", permissions=["change"])
    def unflag_selected(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        count = queryset.update(flagged=False)
        self.message_user(request, f"Unflagged {count:,} conversation(s).", messages.SUCCESS)
