"""Streamed downloads: conversations as CSV (one row per message) or JSON Lines (one
conversation per line), and the plumbing that streams any generated text under ASGI."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Generator, Iterator
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from chat.models import Conversation, Message
from chat.money import dollars_text

EXPORT_CHUNK_SIZE = 200  # conversations per prefetch of their messages


def ended_reasons(conversation: Conversation) -> list[str]:
    return sorted({reason for reason in conversation.ended_reasons.split(",") if reason})


CSV_COLUMNS = [
    "conversation_id",
    "title",
    "owner",
    "conversation_provider",
    "conversation_model",
    "flagged",
    "review_note",
    "message_id",
    "role",
    "created_at",
    "status",
    "ended_reason",
    "superseded",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "usage_source",
    "cost_usd",
    "price_version",
    "ttft_ms",
    "duration_ms",
    "tokens_per_second",
    "error_text",
    "feedback",
    "feedback_comment",
    "feedback_at",
    "content",
]
# A spreadsheet runs a cell starting with one of these as a formula; visitors write the content.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Echo:
    """A file-like object whose `write` returns the line, for streaming `csv.writer` output."""

    def write(self, value: str) -> str:
        return value


def _with_messages(queryset: QuerySet[Conversation]) -> Iterator[Conversation]:
    # `iterator(chunk_size=...)` prefetches the messages one chunk of conversations at a time:
    # memory stays flat whether one conversation is exported or all of them.
    return queryset.prefetch_related(
        "user", Prefetch("messages", queryset=Message.objects.order_by("id"))
    ).iterator(chunk_size=EXPORT_CHUNK_SIZE)


def export_owner(conversation: Conversation) -> str:
    """A username, or `visitor:<visitor id>` (usernames cannot contain a colon)."""
    if conversation.user is not None:
        return conversation.user.get_username()
    return f"visitor:{conversation.visitor_id}"


def feedback_label(message: Message) -> str:
    """The owner's rating of a reply as the list's feedback filter names it: "good", "bad", or
    "" when unrated (and for user messages)."""
    if message.feedback == Message.Feedback.UP:
        return "good"
    if message.feedback == Message.Feedback.DOWN:
        return "bad"
    return ""


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(queryset: QuerySet[Conversation]) -> Generator[str, None, None]:
    writer = csv.writer(Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation in _with_messages(queryset):
        head = [
            conversation.pk,
            conversation.title,
            export_owner(conversation),
            conversation.provider,
            conversation.model,
            conversation.flagged,
            conversation.review_note,
        ]
        rows = [head + _message_columns(message) for message in conversation.messages.all()]
        # A conversation without messages still gets its line: the export has every one selected.
        rows = rows or [head + [None] * (len(CSV_COLUMNS) - len(head))]
        yield "".join(writer.writerow([_csv_cell(value) for value in row]) for row in rows)


def _message_columns(message: Message) -> list[Any]:
    return [
        message.pk,
        message.role,
        message.created_at.isoformat(),
        message.status,
        message.ended_reason,
        message.superseded,
        message.provider,
        message.model,
        message.input_tokens,
        message.output_tokens,
        message.cached_input_tokens,
        message.usage_source,
        dollars_text(message.cost_microusd),
        message.price_version,
        message.ttft_ms,
        message.duration_ms,
        message.tokens_per_second,
        message.error_text,
        feedback_label(message),
        message.feedback_comment,
        message.feedback_at.isoformat() if message.feedback_at else None,
        message.content,
    ]


def jsonl_chunks(queryset: QuerySet[Conversation]) -> Generator[str, None, None]:
    for conversation in _with_messages(queryset):
        record = {
            "id": str(conversation.pk),
            "title": conversation.title,
            "owner": export_owner(conversation),
            "user_id": conversation.user_id,
            "visitor_id": conversation.visitor_id,
            "provider": conversation.provider,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
            "flagged": conversation.flagged,
            "review_note": conversation.review_note,
            "message_count": conversation.message_count,
            "input_tokens": conversation.input_tokens,
            "output_tokens": conversation.output_tokens,
            "cost_usd": dollars_text(conversation.cost_microusd),
            "unpriced_replies": conversation.unpriced_replies,
            "ended_reasons": ended_reasons(conversation),
            "messages": [_message_record(message) for message in conversation.messages.all()],
        }
        yield json.dumps(record, ensure_ascii=False) + "\n"


def _message_record(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "role": message.role,
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
        "status": message.status,
        "ended_reason": message.ended_reason,
        "superseded": message.superseded,
        "provider": message.provider,
        "model": message.model,
        "input_tokens": message.input_tokens,
        "output_tokens": message.output_tokens,
        "cached_input_tokens": message.cached_input_tokens,
        "usage_source": message.usage_source,
        "cost_usd": dollars_text(message.cost_microusd) or None,
        "price_version": message.price_version,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "tokens_per_second": message.tokens_per_second,
        "error_text": message.error_text,
        "feedback": feedback_label(message) or None,
        "feedback_comment": message.feedback_comment,
        "feedback_at": message.feedback_at.isoformat() if message.feedback_at else None,
        "content": message.content,
    }


def dated_filename(name: str, extension: str) -> str:
    return f"{name}-{timezone.localdate():%Y-%m-%d}.{extension}"


def attachment(
    request: HttpRequest, chunks: Generator[str, None, None], filename: str, content_type: str
) -> StreamingHttpResponse:
    """A download streamed as it is generated."""
    content: Iterator[str] | AsyncIterator[str] = chunks
    if isinstance(request, ASGIRequest):
        content = _read_in_batches(chunks)
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


async def _read_in_batches(
    chunks: Generator[str, None, None], batch_size: int = 50
) -> AsyncIterator[str]:
    """Under ASGI, Django reads a synchronous iterator into one list before sending a byte.
    Pull it a batch at a time instead, on the request's thread, where its database connection
    and cursor live."""

    def next_batch() -> str | None:
        batch = list(islice(chunks, batch_size))
        return "".join(batch) if batch else None

    read = sync_to_async(next_batch, thread_sensitive=True)
    try:
        while (batch := await read()) is not None:
            yield batch
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()
