"""The generation job: the one place replies are generated.

`reply_generate` reads the provider, cleans each delta, publishes it to the reply stream (which
transports read), saves the text every CHAT_FLUSH_SECONDS through the single writer, and records
how the reply ended (`endings`). It runs as a task of this process (`workers.job_launch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from chat import providers
from chat.conversations.text import DeltaCleaner
from chat.conversations.tree import Versions
from chat.costs.budgets import BudgetGuard
from chat.db import db_read, db_write, reply_progress_save
from chat.models import Message
from chat.providers.base import ProviderError, TextDelta, estimate_tokens_for_chars
from chat.replies.context import JobContext, job_context_load
from chat.replies.endings import ReplyState, record_ending
from chat.replies.stream import SHARED_STREAM_ERRORS, bounded, get_reply_stream
from chat.replies.stream.publisher import Publisher
from chat.replies.titles import title_generate

logger = logging.getLogger(__name__)


class BudgetReached(Exception):
    """The reply's cost reached what was left of its owner's spending cap."""


class ReplyTooLong(Exception):
    """The reply reached CHAT_MAX_REPLY_CHARS; what it had up to the cap is kept."""


# The bound on the final publish, the end marker and the wait for the job's own tasks.
FINISH_BOUND_SECONDS = 3.0


async def reply_generate(message_id: int, context: JobContext | None = None) -> None:
    """Run one reply to its end, whatever the end is, and record it. Without `context`, the job
    reads it from the database first."""
    stream = get_reply_stream()
    state = ReplyState()
    publisher = Publisher(stream, message_id)
    ended: str = Message.EndedReason.COMPLETED
    error_text = ""
    tasks: list[asyncio.Task[Any]] = []
    try:
        if context is None:
            context = await db_read(job_context_load, message_id)
        state.estimated_input_tokens = context.estimated_input_tokens
        provider = providers.get_provider(context.provider)
        generate = asyncio.create_task(_consume(provider, context, state, publisher))
        stop = asyncio.create_task(stream.wait_stop(message_id))
        flush = asyncio.create_task(_flush_periodically(message_id, state))
        publish = asyncio.create_task(publisher.run())
        tasks = [generate, stop, flush, publish]
        done, _ = await asyncio.wait(
            set(tasks), timeout=settings.CHAT_REPLY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if generate in done:
            ended, error_text = _ending_of(generate)
        elif stop in done:
            ended = Message.EndedReason.STOPPED
        elif publish in done:
            ended = Message.EndedReason.SERVICE_ERROR
            error_text = (
                "The chat's message service (Redis) stopped answering, so this reply was ended. "
                "Its text so far is saved; try again in a moment."
            )
        elif flush in done:
            # The reply was ended elsewhere (reaped while its saves were failing): stop paying
            # for tokens nobody will see. `_record_ending` still saves all the text we have.
            ended = Message.EndedReason.INTERRUPTED
            error_text = "This reply was ended because its progress could not be saved."
        else:
            ended = Message.EndedReason.TIMEOUT
            error_text = (
                f"The reply took longer than {settings.CHAT_REPLY_TIMEOUT:g} s and was ended."
            )
    except ProviderError as exc:
        ended, error_text = Message.EndedReason.PROVIDER_ERROR, exc.message
    except asyncio.CancelledError:
        ended = Message.EndedReason.INTERRUPTED
        error_text = "The server shut down before the reply finished."
        raise
    except Exception:
        logger.exception("Reply %s failed", message_id)
        ended, error_text = Message.EndedReason.PROVIDER_ERROR, "Something went wrong on our side."
    finally:
        # Cancelling the generation task closes the upstream request (the adapters stream
        # inside `async with`), so a stopped reply stops costing tokens at once. The wait is
        # bounded: a task whose cancellation got lost inside a library must not hang the job.
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=FINISH_BOUND_SECONDS)
        # Shielded: a shutdown that cancels this job must still save the partial text.
        versions = context.versions if context is not None else None
        await asyncio.shield(_finish(message_id, state, publisher, ended, error_text, versions))
    # Readers already have the whole reply; naming the conversation (CHAT_TITLE_MODEL) after
    # its first reply happens in the same job, without delaying them.
    if ended == Message.EndedReason.COMPLETED and settings.CHAT_TITLE_MODEL:
        await title_generate(message_id)


def _ending_of(generate: asyncio.Task[None]) -> tuple[str, str]:
    exc = generate.exception()
    if exc is None:
        return Message.EndedReason.COMPLETED, ""
    if isinstance(exc, TimeoutError):
        return (
            Message.EndedReason.TIMEOUT,
            f"The model sent nothing for {settings.CHAT_IDLE_TIMEOUT:g} s, so the reply was ended.",
        )
    if isinstance(exc, ProviderError):
        return Message.EndedReason.PROVIDER_ERROR, exc.message
    if isinstance(exc, BudgetReached):
        return Message.EndedReason.BUDGET, str(exc)
    if isinstance(exc, ReplyTooLong):
        return Message.EndedReason.TOO_LONG, str(exc)
    logger.error("Reply generation failed", exc_info=exc)
    return Message.EndedReason.PROVIDER_ERROR, "Something went wrong on our side."


async def _consume(
    provider: providers.Provider, context: JobContext, state: ReplyState, publisher: Publisher
) -> None:
    budget = context.budget
    if budget is not None and context.max_output_tokens <= 0:
        raise BudgetReached(budget.message)  # the prompt alone costs what is left: don't send it
    events = provider.stream(
        context.turns,
        model=context.model,
        system_prompt=context.system_prompt,
        max_output_tokens=context.max_output_tokens,
    )
    try:
        await _consume_events(events, context, state, publisher)
    except ProviderError as exc:
        # An HTTP status means the provider answered the request itself with an error; if not a
        # token came first, it refused it. A stream that drops mid-way has no status.
        state.refused = exc.status_code is not None and state.seq == 0 and state.usage is None
        raise


async def _consume_events(
    events: Any, context: JobContext, state: ReplyState, publisher: Publisher
) -> None:
    loop = asyncio.get_running_loop()
    budget = context.budget
    # Cleaned here, once: readers are sent exactly the text the database stores.
    cleaner = DeltaCleaner()
    # Read once: settings are a lazy object, and this loop runs for every token.
    idle_timeout, max_chars = settings.CHAT_IDLE_TIMEOUT, settings.CHAT_MAX_REPLY_CHARS
    # aclosing: cancellation and timeouts close the provider's generator (and its HTTP stream).
    # The idle timer moves at most every `slack` seconds rather than at every token (each move
    # replaces a timer in the loop's heap), so it fires between `idle_timeout` and
    # `idle_timeout + slack` after the last event.
    slack = min(1.0, idle_timeout / 4)
    async with contextlib.aclosing(events), asyncio.timeout(None) as idle:
        moved_at = loop.time()
        idle.reschedule(moved_at + idle_timeout + slack)
        async for event in events:
            if (now := loop.time()) - moved_at >= slack:
                moved_at = now
                idle.reschedule(now + idle_timeout + slack)
            if isinstance(event, TextDelta):
                _emit(cleaner.clean(event.text), state, publisher, budget, max_chars)
            else:
                state.usage = event
        _emit(cleaner.flush(), state, publisher, budget, max_chars)
        state.completed_with_usage = state.usage is not None


def _emit(
    text: str,
    state: ReplyState,
    publisher: Publisher,
    budget: BudgetGuard | None,
    max_chars: int,
) -> None:
    """Append one cleaned delta to the reply, within its size cap and its owner's budget. No
    await: the publisher sends it (and its neighbours) on its own task."""
    too_long = state.chars + len(text) > max_chars
    if too_long:
        text = text[: max(0, max_chars - state.chars)]
    if text:
        state.last_token_at = time.monotonic()
        if state.first_token_at is None:
            state.first_token_at = state.last_token_at
        state.seq += 1
        state.chars += len(text)
        state.parts.append(text)
        publisher.add(state.seq, text)
    if too_long:
        raise ReplyTooLong(
            f"This reply reached the size limit of {max_chars:,} characters and was ended there."
        )
    if budget is not None and budget.crossed(
        input_tokens=state.usage.input_tokens if state.usage else state.estimated_input_tokens,
        output_tokens=estimate_tokens_for_chars(state.chars),
    ):
        raise BudgetReached(budget.message)


async def _flush_periodically(message_id: int, state: ReplyState) -> None:
    """Save the text so far every CHAT_FLUSH_SECONDS (never per token) when it changed. Returns
    only if the reply was ended by someone else; a failed save is logged and tried again next
    time. (The worker's heartbeat marks the reply alive while it is silent.)"""
    flushed_seq = 0
    while True:
        await asyncio.sleep(settings.CHAT_FLUSH_SECONDS)
        if state.seq == flushed_seq:
            continue
        # Read both without an await between them, so the saved text and its sequence number
        # always agree (a page rendered from them resumes the stream right after).
        seq, text = state.seq, state.text
        try:
            # With every other live reply's, in one transaction (chat/db/writer.py).
            first = state.first_token_at
            saved = await reply_progress_save(
                message_id=message_id,
                text=text,
                seq=seq,
                usage=state.usage,
                ttft_ms=None if first is None else round((first - state.started) * 1000),
            )
        except Exception:
            logger.warning("Saving reply %s failed; will try again", message_id, exc_info=True)
            continue
        if not saved:
            return
        flushed_seq = seq


async def _finish(
    message_id: int,
    state: ReplyState,
    publisher: Publisher,
    ended: str,
    error_text: str,
    versions: Versions | None = None,
) -> None:
    # Readers get every delta before the ending, so the recorded text is what they were sent.
    # If the shared stream failed, they find the ending (and all the text) in the database.
    await publisher.flush(timeout=FINISH_BOUND_SECONDS)
    recorded: Message | None = None
    try:
        for attempt in range(3):
            try:
                recorded = await db_write(
                    record_ending, message_id, state, ended, error_text, versions
                )
                break
            except DatabaseError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
    except Exception:
        logger.exception("Recording the end of reply %s failed", message_id)
    finally:
        # Whatever happened to the database, readers must learn that the reply ended; bounded,
        # so a Redis outage cannot hang the job (readers then learn it from the database). The
        # reply as recorded goes with the marker, so readers here need not read it back.
        try:
            await bounded(
                get_reply_stream().finish(message_id, state.seq + 1, ended, recorded),
                timeout=FINISH_BOUND_SECONDS,
            )
        except SHARED_STREAM_ERRORS:
            logger.warning("Writing the end marker of reply %s failed", message_id)
