"""Generated titles (CHAT_TITLE_MODEL): after a conversation's first reply completes, a cheap
model names the conversation.

It runs through the same provider layer as replies and is recorded like one: a Message of kind
`title` (never shown in the chat, not counted as a message) with its tokens and cost, so the
conversation's totals, the admin and the analytics include what it cost. Off by default; then
the first message is the title. A name the owner gave meanwhile is never overwritten, and a
failed attempt keeps the first-message title.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import providers
from chat.analytics.rollups import rollup_invalidate
from chat.conversations.text import title_clean
from chat.costs.pricing import price_reply
from chat.costs.usage import reply_usage
from chat.db import db_read, db_write
from chat.models import Conversation, Message
from chat.providers.base import ChatTurn, ProviderError, TextDelta, Usage, estimate_tokens

logger = logging.getLogger(__name__)

TITLE_SYSTEM_PROMPT = (
    "You name chat conversations. Answer with a short title of at most six words that says "
    "what the conversation is about, in the conversation's language. No quotes, no final "
    "punctuation, nothing else."
)
TITLE_MAX_OUTPUT_TOKENS = 24
TITLE_TIMEOUT_SECONDS = 30.0
TITLE_MAX_CHARS = 60
EXCERPT_CHARS = 1500


@dataclass(frozen=True, slots=True)
class _TitleJob:
    conversation_id: uuid.UUID
    first_title: str
    prompt: str
    provider: str
    model: str


def title_from_message(text: str) -> str:
    """The title a conversation starts with: its first message, on one line, shortened."""
    first_line = title_clean(text)
    if len(first_line) <= TITLE_MAX_CHARS:
        return first_line
    return first_line[: TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"


def title_model() -> tuple[str, str] | None:
    provider, _, model = settings.CHAT_TITLE_MODEL.partition(":")
    return (provider, model) if provider and model else None


def _title_job(reply_id: int) -> _TitleJob | None:
    """The job for this reply, if it is its conversation's first completed reply and nothing
    named the conversation yet."""
    chosen = title_model()
    if chosen is None:
        return None
    reply = Message.objects.select_related("conversation", "parent").get(pk=reply_id)
    conversation = reply.conversation
    replies = conversation.messages.filter(role=Message.Role.ASSISTANT)
    if (
        conversation.source != Conversation.Source.PAGE
        or reply.kind != Message.Kind.CHAT
        or reply.status != Message.Status.COMPLETE
        or reply.parent is None
        or replies.filter(kind=Message.Kind.TITLE).exists()
        or replies.filter(kind=Message.Kind.CHAT, status=Message.Status.COMPLETE)
        .exclude(pk=reply.pk)
        .exists()
    ):
        return None
    prompt = (
        "Name this conversation.\n\n"
        f"User: {reply.parent.content[:EXCERPT_CHARS]}\n\n"
        f"Assistant: {reply.content[:EXCERPT_CHARS]}"
    )
    first_title = title_from_message(reply.parent.content)
    if conversation.title != first_title:
        return None  # the owner named it already
    return _TitleJob(conversation.pk, first_title, prompt, *chosen)


def clean_title(text: str) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = re.sub(r"^(title:\s*)", "", line.strip(), flags=re.IGNORECASE)
    line = title_clean(line.strip(" \"'“”‘’*#`")).rstrip(".:;,!")
    if len(line) > TITLE_MAX_CHARS:
        line = line[: TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return line


async def title_generate(reply_id: int) -> None:
    """Name the conversation of `reply_id` if it should be named; never raises (a title is a
    nicety: the reply has already ended)."""
    try:
        job = await db_read(_title_job, reply_id)
        if job is None:
            return
        await _run(job)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("Generating a title after reply %s failed", reply_id)


async def _run(job: _TitleJob) -> None:
    parts: list[str] = []
    usage: Usage | None = None
    error = ""
    refused = False
    started = timezone.now()
    try:
        provider = providers.get_provider(job.provider)
        events = provider.stream(
            [ChatTurn("user", job.prompt)],
            model=job.model,
            system_prompt=TITLE_SYSTEM_PROMPT,
            max_output_tokens=TITLE_MAX_OUTPUT_TOKENS,
        )
        async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    usage = event
    except ProviderError as exc:
        error = exc.message
        refused = exc.status_code is not None and not parts and usage is None
    except TimeoutError:
        error = f"No title within {TITLE_TIMEOUT_SECONDS:g} s."
    await db_write(
        functools.partial(
            _record, job, "".join(parts), usage, error=error, refused=refused, started=started
        )
    )


def _record(
    job: _TitleJob,
    text: str,
    usage: Usage | None,
    *,
    error: str,
    refused: bool,
    started: datetime,
) -> None:
    title = clean_title(text) if not error else ""
    usage, source = reply_usage(
        text=text,
        reported=usage,
        estimated_input_tokens=estimate_tokens(job.prompt),
        complete=not error,
        refused=refused,
    )
    now = timezone.now()
    price = price_reply(
        provider=job.provider, model=job.model, usage=usage, on=timezone.localdate(now)
    )
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=job.conversation_id)
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            kind=Message.Kind.TITLE,
            superseded=True,
            content=title or text,
            status=Message.Status.ERROR if error else Message.Status.COMPLETE,
            ended_reason=(
                Message.EndedReason.PROVIDER_ERROR if error else Message.EndedReason.COMPLETED
            ),
            error_text=error,
            provider=job.provider,
            model=job.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            usage_source=source,
            cost_microusd=price.cost_microusd,
            price_version=price.version,
            created_at=started,
            finished_at=now,
            duration_ms=round((now - started).total_seconds() * 1000),
        )
        # Only over the first-message title: a name the owner chose meanwhile stays.
        if title and conversation.title == job.first_title:
            Conversation.objects.filter(pk=conversation.pk).update(title=title)
        conversation.refresh_totals()
        rollup_invalidate(message.day)
