"""The generation job and its recovery: the one place replies are generated.

`job_launch` runs `reply_generate` as an asyncio task of this process. The job publishes deltas to
the reply stream (which transports read), saves the text to the database every
CHAT_FLUSH_SECONDS and at every ending, and records why it ended, with its usage and cost. A
reaper (run by every worker's sweeper, chat/replies/workers.py) ends the replies of workers that
died.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from chat import providers
from chat.analytics.rollups import rollup_invalidate
from chat.conversations.text import DeltaCleaner
from chat.conversations.tree import Tree, Versions, history_turns
from chat.costs.budgets import BudgetGuard, budget_guard
from chat.costs.pricing import price_reply
from chat.models import Conversation, Message
from chat.providers.base import (
    ChatTurn,
    ProviderError,
    TextDelta,
    Usage,
    estimate_tokens,
    estimate_tokens_for_chars,
)
from chat.replies.db_threads import db_call
from chat.replies.streams import (
    SHARED_STREAM_ERRORS,
    ReplyStream,
    bounded,
    get_reply_stream,
)
from chat.replies.titles import title_generate
from chat.replies.writer import reply_progress_save, writer_call
from chat.telemetry import metrics
from chat.telemetry.log_context import log_context_bind
from chat.web.rendering import final_fragment

logger = logging.getLogger(__name__)

# --- The generation job -----------------------------------------------------------------------

_jobs: set[asyncio.Task[None]] = set()
# The ids of this process's live replies, replaced (never mutated) so that database threads
# (the reaper spares them) can read it while the loop changes it.
_live_ids: frozenset[int] = frozenset()


def live_reply_ids() -> frozenset[int]:
    return _live_ids


def job_launch(message_id: int, context: JobContext | None = None) -> asyncio.Task[None]:
    """Run the reply's generation as a task of this process. `context`: what the send already
    knows (its history, its budget), so the job need not read it again."""
    global _live_ids
    from chat.replies.workers import beat_soon, worker_start

    worker_start()
    # A fresh context: the job must not inherit the launching request's (or consumer's)
    # thread-sensitive context, which ends long before the reply does.
    task = asyncio.get_running_loop().create_task(
        _job_run(message_id, context), name=f"reply-{message_id}", context=contextvars.Context()
    )
    # The loop keeps only weak references to tasks; hold them until they finish.
    _jobs.add(task)
    metrics.live_reply_track(task)
    _live_ids = _live_ids | {message_id}
    task.add_done_callback(lambda _task: _job_done(message_id, task))
    beat_soon()  # so other workers' reapers see at once that this reply lives here
    return task


async def _job_run(message_id: int, context: JobContext | None) -> None:
    log_context_bind(reply_id=message_id)
    await reply_generate(message_id, context)


def _job_done(message_id: int, task: asyncio.Task[None]) -> None:
    global _live_ids
    _jobs.discard(task)
    _live_ids = _live_ids - {message_id}


async def jobs_interrupt(*, grace: float = 0.0, timeout: float = 10.0) -> None:
    """At shutdown: let live replies finish for `grace` seconds, then end the rest as
    `interrupted`, their text saved."""
    if grace > 0 and _jobs:
        await asyncio.wait(list(_jobs), timeout=grace)
    jobs = list(_jobs)
    for job in jobs:
        job.cancel()
    if jobs:
        await asyncio.wait(jobs, timeout=timeout)


@dataclass
class _ReplyState:
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


class BudgetReached(Exception):
    """The reply's cost reached what was left of its owner's spending cap."""


class ReplyTooLong(Exception):
    """The reply reached CHAT_MAX_REPLY_CHARS; what it had up to the cap is kept."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a reply is generated from: its model, its history and its owner's budget."""

    provider: str
    model: str
    system_prompt: str
    turns: list[ChatTurn]
    estimated_input_tokens: int
    budget: BudgetGuard | None = None
    requested_max_tokens: int | None = None
    # Where the reply stands among its siblings (‹ 1/2 ›). No sibling can be added while it
    # streams (a send, a regenerate and an edit need the conversation idle), so what was true
    # at its start is true at its end, and its finished fragment needs no query for it.
    versions: Versions | None = None

    @property
    def max_output_tokens(self) -> int:
        """The configured cap (or the request's, if lower), or fewer when what is left of the
        owner's budget pays for fewer."""
        caps = [settings.CHAT_MAX_OUTPUT_TOKENS]
        if self.requested_max_tokens is not None:
            caps.append(self.requested_max_tokens)
        if self.budget is not None:
            affordable = self.budget.output_tokens_left(input_tokens=self.estimated_input_tokens)
            if affordable is not None:
                caps.append(affordable)
        return min(caps)


def job_context_build(
    message: Message,
    conversation: Conversation,
    path: Sequence[Message],
    *,
    budget: BudgetGuard | None,
    versions: Versions | None = None,
) -> JobContext:
    """The context of reply `message` whose ancestors are `path` (root first, ending with the
    question). The history is that branch only — never another version's, whatever the page
    shows meanwhile."""
    turns = history_turns(path)
    turns = turns[-settings.CHAT_HISTORY_MAX_MESSAGES :]
    while turns and turns[0].role != "user":
        turns.pop(0)
    prompt_chars = len(conversation.system_prompt) + sum(len(turn.content) for turn in turns)
    return JobContext(
        message.provider,
        message.model,
        conversation.system_prompt,
        turns,
        estimated_input_tokens=estimate_tokens_for_chars(prompt_chars),
        budget=budget,
        requested_max_tokens=message.max_output_tokens,
        versions=versions,
    )


def _job_context(message_id: int, *, with_budget: bool = True) -> JobContext:
    message = Message.objects.select_related("conversation").get(pk=message_id)
    conversation = message.conversation
    tree = Tree(conversation.messages.filter(kind=Message.Kind.CHAT))
    budget = (
        budget_guard(
            user_id=conversation.user_id,
            visitor_id=conversation.visitor_id,
            provider=message.provider,
            model=message.model,
            on=message.day,
            client_key=message.client_key,
        )
        if with_budget
        else None
    )
    return job_context_build(
        message,
        conversation,
        tree.path_to(message.parent_id),
        budget=budget,
        versions=tree.versions(message),
    )


class SharedStreamDown(Exception):
    """The shared reply stream (Redis) kept failing: readers elsewhere cannot follow the reply."""


# How long a job keeps trying to publish to a failing Redis before it ends the reply: long enough
# for a blip, short enough that nobody watches a reply that no reader can see.
PUBLISH_OUTAGE_SECONDS = 3.0
# The bound on the final publish, the end marker and the wait for the job's own tasks.
FINISH_BOUND_SECONDS = 3.0


class _Publisher:
    """Publishes the job's deltas: the first of a quiet spell at once (no added latency), then
    whatever arrives within the stream's window as one command (one XADD per ~6 tokens at
    20 tokens/s, instead of one per token). Sequence numbers stay one per delta."""

    def __init__(self, stream: ReplyStream, message_id: int) -> None:
        self.stream = stream
        self.message_id = message_id
        self.window = stream.publish_window
        self.pending: list[tuple[int, str]] = []
        self.wake = asyncio.Event()
        self.failing_since: float | None = None

    def add(self, seq: int, text: str) -> None:
        if not self.pending and self.stream.publish_now(self.message_id, [(seq, text)]):
            return  # published in place (the in-process stream): no task switch
        self.pending.append((seq, text))
        self.wake.set()

    async def run(self) -> None:
        """Publish until cancelled; raises SharedStreamDown after a long outage."""
        loop = asyncio.get_running_loop()
        published_at = -self.window
        while True:
            await self.wake.wait()
            self.wake.clear()
            wait = published_at + self.window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # inside the window: gather what else arrives
            published_at = loop.time()
            if not await self.flush():
                if loop.time() - (self.failing_since or 0) > PUBLISH_OUTAGE_SECONDS:
                    raise SharedStreamDown
                self.wake.set()  # try again after the window

    async def flush(self, *, timeout: float = 5.0) -> bool:
        """Publish what is pending; False (pending kept) if the stream failed."""
        batch, self.pending = self.pending, []
        if not batch:
            return True
        try:
            await bounded(self.stream.publish(self.message_id, batch), timeout=timeout)
        except SHARED_STREAM_ERRORS:
            self.pending = batch + self.pending
            if self.failing_since is None:
                self.failing_since = asyncio.get_running_loop().time()
                logger.warning("Publishing reply %s failed", self.message_id, exc_info=True)
            return False
        except BaseException:
            # Cancelled mid-publish (a stop, a shutdown): the batch goes out with the final
            # flush. If it did arrive after all, readers skip what they have by sequence number.
            self.pending = batch + self.pending
            raise
        self.failing_since = None
        return True


async def reply_generate(message_id: int, context: JobContext | None = None) -> None:
    """Run one reply to its end, whatever the end is, and record it. Without `context`, the job
    reads it from the database first."""
    stream = get_reply_stream()
    state = _ReplyState()
    publisher = _Publisher(stream, message_id)
    ended: str = Message.EndedReason.COMPLETED
    error_text = ""
    tasks: list[asyncio.Task[Any]] = []
    try:
        if context is None:
            context = await db_call(_job_context, message_id)
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
    provider: providers.Provider, context: JobContext, state: _ReplyState, publisher: _Publisher
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
    events: Any, context: JobContext, state: _ReplyState, publisher: _Publisher
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
    state: _ReplyState,
    publisher: _Publisher,
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


async def _flush_periodically(message_id: int, state: _ReplyState) -> None:
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
            # With every other live reply's, in one transaction (chat/replies/writer.py).
            saved = await reply_progress_save(
                message_id=message_id, text=text, seq=seq, usage=state.usage
            )
        except Exception:
            logger.warning("Saving reply %s failed; will try again", message_id, exc_info=True)
            continue
        if not saved:
            return
        flushed_seq = seq


async def _finish(
    message_id: int,
    state: _ReplyState,
    publisher: _Publisher,
    ended: str,
    error_text: str,
    versions: Versions | None = None,
) -> None:
    # Readers get every delta before the ending, so the recorded text is what they were sent.
    # If the shared stream failed, they find the ending (and all the text) in the database.
    await publisher.flush(timeout=FINISH_BOUND_SECONDS)
    html = ""
    try:
        for attempt in range(3):
            try:
                recorded = await writer_call(
                    _record_ending, message_id, state, ended, error_text, versions
                )
                html = await _final_html(recorded)
                break
            except DatabaseError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
    except Exception:
        logger.exception("Recording the end of reply %s failed", message_id)
    finally:
        # Whatever happened to the database, readers must learn that the reply ended; bounded,
        # so a Redis outage cannot hang the job (readers then learn it from the database).
        try:
            await bounded(
                get_reply_stream().finish(message_id, state.seq + 1, ended, html),
                timeout=FINISH_BOUND_SECONDS,
            )
        except SHARED_STREAM_ERRORS:
            logger.warning("Writing the end marker of reply %s failed", message_id)


_STATUS_FOR_ENDING = {
    Message.EndedReason.COMPLETED: Message.Status.COMPLETE,
    Message.EndedReason.STOPPED: Message.Status.STOPPED,
    Message.EndedReason.BUDGET: Message.Status.STOPPED,
    Message.EndedReason.TOO_LONG: Message.Status.STOPPED,
}


async def _final_html(message: Message | None) -> str:
    """The finished message as the page's readers get it, rendered once for all of them and
    carried by the end marker ("": readers render it from the database). An API client reads
    text, not HTML."""
    if message is None or message.conversation.source == Conversation.Source.API:
        return ""
    try:
        return await db_call(final_fragment, message)
    except Exception:
        logger.exception("Rendering the end of reply %s failed", message.pk)
        return ""


def _record_ending(
    message_id: int,
    state: _ReplyState,
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
        usage, source = _usage_for(state, text)
        _usage_record(message, usage, source)
        message.tokens_per_second = _output_speed(state, usage.output_tokens)
        _ending_save(message, updated_at=timezone.now())
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


def _ending_save(message: Message, **conversation_fields: Any) -> None:
    """Save an ended reply with what depends on it: its conversation's totals, and its day's
    roll-up if the day is over."""
    message.save(update_fields=ENDING_FIELDS)
    message.conversation.refresh_totals(**conversation_fields)
    rollup_invalidate(message.day)


def _usage_record(message: Message, usage: Usage, source: str) -> None:
    message.input_tokens = usage.input_tokens
    message.output_tokens = usage.output_tokens
    message.cached_input_tokens = usage.cached_input_tokens
    message.usage_source = source
    price = price_reply(provider=message.provider, model=message.model, usage=usage, on=message.day)
    message.cost_microusd, message.price_version = price.cost_microusd, price.version


# Below this much streaming time a speed says more about network buffering than about the model.
MIN_SECONDS_FOR_SPEED = 0.25


def _output_speed(state: _ReplyState, output_tokens: int) -> float | None:
    """Tokens per second from the first token to the last, so neither the wait for the first
    token nor a stall before Stop counts against the model."""
    if state.first_token_at is None or state.last_token_at is None or output_tokens < 2:
        return None
    seconds = state.last_token_at - state.first_token_at
    if seconds < MIN_SECONDS_FOR_SPEED:
        return None
    # The first token arrived at the start of the interval, so it is not part of the rate.
    return round((output_tokens - 1) / seconds, 1)


def _usage_for(state: _ReplyState, text: str) -> tuple[Usage, str]:
    """The provider's counts when it reported them for the whole reply; nothing when it refused
    the request; otherwise an estimate (keeping exact input counts when the provider sent them
    early, as Anthropic does)."""
    if state.completed_with_usage and state.usage is not None:
        return state.usage, Message.UsageSource.PROVIDER
    if state.refused:
        return Usage(input_tokens=0, output_tokens=0), Message.UsageSource.NONE
    if state.usage is not None:
        input_tokens, cached = state.usage.input_tokens, state.usage.cached_input_tokens
    else:
        input_tokens, cached = state.estimated_input_tokens, 0
    return (
        Usage(
            input_tokens=input_tokens,
            output_tokens=estimate_tokens(text),
            cached_input_tokens=cached,
        ),
        Message.UsageSource.ESTIMATED,
    )


# --- Recovery ---------------------------------------------------------------------------------


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
            reaped += _reap(message_id, cutoff, stream)
        except DatabaseError:
            raise
        except Exception:
            # One reply that cannot be ended (a bug) must not keep the others streaming forever.
            logger.exception("Ending stale reply %s failed", message_id)
    return reaped


def _reap(message_id: int, cutoff: Any, stream: ReplyStream | None = None) -> int:
    stream = stream or get_reply_stream()
    estimated_input_tokens = _job_context(message_id, with_budget=False).estimated_input_tokens
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
        usage = Usage(
            input_tokens=(
                message.input_tokens if message.input_tokens is not None else estimated_input_tokens
            ),
            output_tokens=estimate_tokens(message.content),
            cached_input_tokens=message.cached_input_tokens or 0,
        )
        _usage_record(message, usage, Message.UsageSource.ESTIMATED)
        _ending_save(message)
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


async def reply_wait(message_id: int, *, timeout: float) -> None:
    """Wait until the reply ends (the no-JavaScript form posts and shows the finished reply)."""
    stream = get_reply_stream()
    after = 0
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            entries = await stream.read(message_id, after=after, timeout=min(remaining, 5.0))
        except SHARED_STREAM_ERRORS:
            # Redis is down: the database tells when the reply (which ends itself) is over.
            await asyncio.sleep(0.5)
            entries = []
        if entries:
            if entries[-1].kind == "end":
                return
            after = entries[-1].seq
        elif not await Message.objects.filter(pk=message_id).streaming().aexists():
            return
