"""Synthetic usage history (`manage.py seed_usage`), so the admin's conversation list and
analytics can be measured and tried out.

Everything it writes is marked: users are named `seed-user-NNNN` and anonymous visitors' ids start
with `seed-`, which is how `seed_usage --clear` finds them again. Costs come from
`chat.costs.pricing.price_reply`, as for real replies; only the arithmetic is done here, from
unit prices read once per model.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import CommandError
from django.db import connection, models, transaction
from django.utils import timezone

from chat.costs.pricing import Price, price_reply
from chat.models import Conversation, Message, PriceOverride, UsageDay
from chat.providers.base import Usage

SEED_USER_PREFIX = "seed-user-"
SEED_VISITOR_PREFIX = "seed-"

# Token counts past this would reach the long-context price tiers some models have; real
# conversations are trimmed to CHAT_HISTORY_MAX_MESSAGES long before that.
MAX_INPUT_TOKENS = 90_000
MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class ModelProfile:
    provider: str
    model: str
    share: float  # of conversations
    ttft_p50_ms: float
    tokens_per_second: float
    # How often a follow-up's prompt prefix is read from the provider's cache.
    cache_hit_rate: float


MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("demo", "demo", 0.14, 35, 30, 0.0),
    ModelProfile("openai", "gpt-4o-mini", 0.34, 380, 85, 0.6),
    ModelProfile("openai", "gpt-4o", 0.16, 560, 60, 0.6),
    ModelProfile("anthropic", "claude-sonnet-4-5", 0.15, 880, 55, 0.5),
    ModelProfile("anthropic", "claude-haiku-4-5", 0.19, 450, 110, 0.5),
    # A self-hosted model genai-prices does not know: its replies have no price.
    ModelProfile("openai", "llama3.1-local", 0.02, 300, 35, 0.0),
)

# (ended reason, share of replies); what is left over completes normally.
ENDINGS: tuple[tuple[str, float], ...] = (
    (Message.EndedReason.STOPPED, 0.04),
    (Message.EndedReason.PROVIDER_ERROR, 0.03),
    (Message.EndedReason.TIMEOUT, 0.01),
    (Message.EndedReason.INTERRUPTED, 0.01),
    (Message.EndedReason.BUDGET, 0.005),
)
STATUS_FOR_ENDING = {
    Message.EndedReason.COMPLETED: Message.Status.COMPLETE,
    Message.EndedReason.STOPPED: Message.Status.STOPPED,
    Message.EndedReason.BUDGET: Message.Status.STOPPED,
}
ERROR_TEXTS: dict[str, tuple[str, ...]] = {
    Message.EndedReason.PROVIDER_ERROR: (
        "The provider is rate limiting requests (429). Try again in a minute.",
        "The provider had an error (500). Try again.",
        "The connection to the provider dropped.",
    ),
    Message.EndedReason.TIMEOUT: ("The model sent nothing for 60 s, so the reply was ended.",),
    Message.EndedReason.INTERRUPTED: ("The server restarted before this reply finished.",),
}

# Replies per conversation, 1 to 12: most chats are short.
SLOT_WEIGHTS = (26, 18, 13, 10, 8, 6, 5, 4, 3, 3, 2, 2)
# Monday first: quieter weekends.
WEEKDAY_FACTORS = (1.0, 1.04, 1.03, 1.0, 0.93, 0.66, 0.62)
# Conversations by local hour: a working day with an evening tail.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 11, 11, 10, 9, 8, 7, 7, 6, 5, 3, 2)

TOPICS = (
    "a Django migration", "sourdough starters", "a SQL index", "the French subjunctive",
    "a bash script", "tax on freelance income", "a cover letter", "the Krebs cycle",
    "a React hook", "interval training", "a wedding toast", "PostgreSQL vacuum",
    "a birthday poem", "unit tests for a parser", "the Treaty of Westphalia", "a budget sheet",
)  # fmt: skip
ASKS = (
    "Can you explain {topic} briefly?", "What is wrong with {topic} here?",
    "Give me three ideas about {topic}.", "How would you improve {topic}?",
    "Summarise {topic} for a beginner.", "Compare two approaches to {topic}.",
)  # fmt: skip
ANSWERS = (
    "Here is a short overview of {topic}, with the main points first.",
    "The usual cause with {topic} is a small detail; check the steps below.",
    "Three ideas about {topic}: start simple, measure, then refine.",
    "For {topic}, the clearer approach is the second one, for two reasons.",
)
SYSTEM_PROMPTS = ("", "", "", "", "", "", "", "You are a concise assistant.", "Answer in French.")


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Micro-dollars per million tokens, as `price_reply` charges them (None: no price)."""

    input: int | None
    cached_input: int | None
    output: int | None
    version: str

    def cost(self, usage: Usage) -> int | None:
        if self.input is None or self.cached_input is None or self.output is None:
            return None
        scaled = (
            (usage.input_tokens - usage.cached_input_tokens) * self.input
            + usage.cached_input_tokens * self.cached_input
            + usage.output_tokens * self.output
        )
        # Whole micro-dollars, half up, as price_reply rounds.
        return (scaled + 500_000) // 1_000_000


class PriceBook:
    """Each model's unit prices, read from `price_reply` once (per day when staff have set an
    override for the model): pricing a million replies one by one takes minutes. Every so often
    a row is priced both ways, so a shortcut that stops matching fails the command loudly."""

    def __init__(self, *, check_every: int) -> None:
        self.check_every = check_every
        self.priced = 0
        self._overridden = set(PriceOverride.objects.values_list("provider", "model"))
        self._prices: dict[tuple[str, str, date | None], UnitPrices] = {}

    def cost(self, profile: ModelProfile, day: date, usage: Usage) -> tuple[int | None, str]:
        key = (profile.provider, profile.model)
        on = day if key in self._overridden else None
        prices = self._prices.get((*key, on))
        if prices is None:
            prices = self._prices[(*key, on)] = self._read(profile, day)
        cost = prices.cost(usage)
        self.priced += 1
        if self.priced % self.check_every == 0:
            self.check(profile, day, usage, (cost, prices.version))
        return cost, prices.version

    @staticmethod
    def check(profile: ModelProfile, day: date, usage: Usage, ours: tuple[int | None, str]) -> None:
        price = price_reply(provider=profile.provider, model=profile.model, usage=usage, on=day)
        if (price.cost_microusd, price.version) != ours:
            raise CommandError(
                f"{profile.provider}:{profile.model} {usage} on {day}: price_reply says "
                f"{price.cost_microusd} ({price.version}), the unit prices {ours[0]} "
                f"({ours[1]}): its prices are not linear over the seeded range."
            )

    @staticmethod
    def _read(profile: ModelProfile, day: date) -> UnitPrices:
        def probe(input_tokens: int, cached: int, output: int) -> Price:
            usage = Usage(
                input_tokens=input_tokens, output_tokens=output, cached_input_tokens=cached
            )
            return price_reply(provider=profile.provider, model=profile.model, usage=usage, on=day)

        rates: list[int | None] = []
        for tokens in ((1, 0, 0), (1, 1, 0), (0, 0, 1)):
            # A million tokens gives exact rates, unless a long-context tier starts below it:
            # then ten times the price of 100,000 is the rate for ordinary prompts.
            million = probe(*(t * 1_000_000 for t in tokens)).cost_microusd
            tenth = probe(*(t * 100_000 for t in tokens)).cost_microusd
            if million is None or tenth is None:
                rates.append(None)
            else:
                rates.append(million if million == tenth * 10 else tenth * 10)
        version = probe(1, 0, 1).version
        prices = UnitPrices(rates[0], rates[1], rates[2], version)
        for usage in (Usage(1, 1), Usage(2_345, 678, 1_280), Usage(MAX_INPUT_TOKENS, 4096)):
            PriceBook.check(profile, day, usage, (prices.cost(usage), prices.version))
        return prices


# What a message row holds unless the turn says otherwise.
MESSAGE_BLANK: dict[str, Any] = {
    "status": Message.Status.COMPLETE,
    "ended_reason": "",
    "superseded": False,
    # Seeded turns are not linked into a tree (their ids come from the database as they are
    # inserted): staff pages and analytics read them in id order, as they read every row.
    "parent": None,
    "kind": Message.Kind.CHAT,
    "deleted_at": None,
    "from_client": False,
    "max_output_tokens": None,
    "stream_seq": 0,
    "provider": "",
    "model": "",
    "input_tokens": None,
    "output_tokens": None,
    "cached_input_tokens": None,
    "usage_source": "",
    "cost_microusd": None,
    "price_version": "",
    "ttft_ms": None,
    "duration_ms": None,
    "tokens_per_second": None,
    "error_text": "",
    "client_key": "",
    "feedback": None,
    "feedback_comment": "",
    "feedback_at": None,
    "finished_at": None,
    "heartbeat_at": None,
}
# Some of what people say when they rate a reply.
FEEDBACK_COMMENTS = {
    Message.Feedback.UP: ["Exactly what I needed.", "Clear, thanks.", "Great example."],
    Message.Feedback.DOWN: [
        "It made up a function that does not exist.",
        "Too long; I asked for one line.",
        "Wrong answer: the year is off.",
        "It stopped halfway.",
    ],
}
API_SHARE = 0.15  # of signed-in users' conversations, started through the API


class RowInserter:
    """Inserts rows given as {field name: value}: one prepared statement on SQLite, COPY on
    PostgreSQL.

    `bulk_create` spends most of its time preparing each value through the field's layers (over
    two thirds of the seeding time in a profile); here only dates, datetimes and UUIDs need
    converting for the database, and the rest go as they are."""

    def __init__(self, model: type[models.Model]) -> None:
        ops, quote = connection.ops, connection.ops.quote_name
        self.fields = [
            f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)
        ]
        self.adapters: list[Callable[[Any], Any] | None] = []
        for field in self.fields:
            target = field.target_field if isinstance(field, models.ForeignKey) else field
            kind = target.get_internal_type()
            if kind == "DateTimeField":
                self.adapters.append(ops.adapt_datetimefield_value)
            elif kind == "DateField":
                self.adapters.append(ops.adapt_datefield_value)
            elif kind == "UUIDField" and not connection.features.has_native_uuid_field:
                self.adapters.append(lambda value: value.hex)
            else:
                self.adapters.append(None)
        table = quote(model._meta.db_table)
        columns = ", ".join(quote(str(f.column)) for f in self.fields)
        placeholders = ", ".join(["%s"] * len(self.fields))
        self.sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        self.copy_sql = f"COPY {table} ({columns}) FROM STDIN"

    def insert(self, rows: list[dict[str, Any]]) -> None:
        names = [f.name for f in self.fields]
        pairs = list(zip(names, self.adapters, strict=True))
        # A column the seed does not set gets its field's default (a field added since).
        defaults = {f.name: f.get_default() for f in self.fields}
        values = [
            tuple(
                value if adapt is None or value is None else adapt(value)
                for name, adapt in pairs
                for value in (row.get(name, defaults[name]),)
            )
            for row in rows
        ]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # COPY: several times faster than INSERT, even pipelined.
                with cursor.copy(self.copy_sql) as copy:
                    for row in values:
                        copy.write_row(row)
            else:
                cursor.executemany(self.sql, values)


@dataclass(slots=True)
class Plan:
    """One conversation to write; the details come from its own random stream, so a plan is
    small enough to hold a million replies' worth in memory and sort by time."""

    day_index: int
    start_second: int
    replies: int
    owner: int  # a user index, or -1 - a visitor index
    model_index: int
    seed: int


class Seeder:
    def __init__(
        self,
        *,
        replies: int,
        days: int,
        users: int,
        anonymous_share: float,
        seed: int,
        batch_size: int,
        write: Callable[[str], Any],
    ) -> None:
        self.replies = replies
        self.users = users
        self.anonymous_share = anonymous_share
        self.batch_size = batch_size
        self.write = write
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
        self.today = timezone.localdate()
        self.first_day = self.today - timedelta(days=days - 1)
        self.days = [self.first_day + timedelta(days=i) for i in range(days)]
        self.now = timezone.localtime()
        self.zone = timezone.get_current_timezone()
        self.prices = PriceBook(check_every=max(1, replies // 1000))
        self.written_replies = 0
        self.written_messages = 0
        self.written_conversations = 0
        self.anonymous_conversations = 0

    def run(self) -> None:
        started = time.perf_counter()
        plans = self._plans()
        if plans and Conversation.objects.filter(pk=self._conversation_id(plans[0])).exists():
            raise CommandError(
                "This seed's history is already in the database: add --clear, or pick another "
                "--seed to add more."
            )
        user_ids = self._users()
        visitors = self._visitors(sum(1 for plan in plans if plan.owner < 0))
        self.write(
            f"Seeding {self.replies:,} replies in {len(plans):,} conversations over "
            f"{len(self.days)} days ({self.first_day} to {self.today}), {len(user_ids):,} users "
            f"and {len(visitors):,} anonymous visitors."
        )
        conversation_rows, message_rows = RowInserter(Conversation), RowInserter(Message)
        next_report = 0.0
        for conversations, messages in self._batches(plans, user_ids, visitors):
            with transaction.atomic():
                conversation_rows.insert(conversations)
                message_rows.insert(messages)
            if self.written_replies / self.replies >= next_report or (
                self.written_replies == self.replies
            ):
                elapsed = time.perf_counter() - started
                self.write(
                    f"  {self.written_replies:>10,} replies "
                    f"({self.written_replies / self.replies:4.0%}) in {elapsed:6.1f} s"
                )
                next_report += 0.1
        with transaction.atomic():
            # The seeded days' roll-ups (if any were built) no longer count everything.
            UsageDay.objects.filter(day__gte=self.first_day).delete()
        elapsed = time.perf_counter() - started
        self.write(
            f"Wrote {self.written_conversations:,} conversations "
            f"({self.anonymous_conversations:,} anonymous), {self.written_messages:,} messages "
            f"({self.written_replies:,} replies) in {elapsed:.1f} s "
            f"({self.written_messages / max(elapsed, 1e-9):,.0f} messages/s)."
        )

    # --- Who and when ---------------------------------------------------------------------------

    def _users(self) -> list[int]:
        User = get_user_model()  # noqa: N806 - a class
        names = [f"{SEED_USER_PREFIX}{i:04d}" for i in range(1, self.users + 1)]
        seeded = User.objects.filter(username__startswith=SEED_USER_PREFIX)
        existing = dict(seeded.values_list("username", "pk"))
        joined = timezone.make_aware(datetime.combine(self.first_day, clock.min))
        missing = [
            User(
                username=name,
                email=f"{name}@example.invalid",
                password=make_password(None),  # unusable: nobody signs in as a seed user
                date_joined=joined,
            )
            for name in names
            if name not in existing
        ]
        User.objects.bulk_create(missing, batch_size=self.batch_size)
        if missing:
            existing = dict(seeded.values_list("username", "pk"))
        return [existing[name] for name in names]

    def _visitors(self, conversations: int) -> list[str]:
        # About two conversations per anonymous visitor.
        count = max(1, math.ceil(conversations / 2))
        return [f"{SEED_VISITOR_PREFIX}{self.rng.getrandbits(96):024x}" for _ in range(count)]

    def _plans(self) -> list[Plan]:
        rng = self.rng
        last = max(1, len(self.days) - 1)
        day_weights = [
            # Growth: the last day is about twice as busy as the first.
            (1 + i / last) * WEEKDAY_FACTORS[day.weekday()] * rng.uniform(0.9, 1.1)
            for i, day in enumerate(self.days)
        ]
        hour_cumulative = list(itertools.accumulate(HOUR_WEIGHTS))
        # Today is not over: it has had the share of its traffic that the hours so far bring.
        midnight = datetime.combine(self.today, clock.min, tzinfo=self.zone)
        elapsed = max(1, int((self.now - midnight).total_seconds()))
        hour, into_hour = divmod(min(elapsed, 86_399), 3600)
        so_far = hour_cumulative[hour] - HOUR_WEIGHTS[hour] * (1 - into_hour / 3600)
        day_weights[-1] *= so_far / hour_cumulative[-1]
        day_cumulative = list(itertools.accumulate(day_weights))
        # A few heavy users and a long tail.
        user_cumulative = list(itertools.accumulate(1 / (i + 1) ** 0.7 for i in range(self.users)))
        model_cumulative = list(itertools.accumulate(p.share for p in MODELS))
        slot_cumulative = list(itertools.accumulate(SLOT_WEIGHTS))

        def pick(cumulative: Sequence[float]) -> int:
            index = bisect.bisect(cumulative, rng.random() * cumulative[-1])
            return min(index, len(cumulative) - 1)

        plans: list[Plan] = []
        left = self.replies
        anonymous_index = itertools.count()
        while left > 0:
            replies = min(pick(slot_cumulative) + 1, left)
            left -= replies
            anonymous = rng.random() < self.anonymous_share
            day_index = pick(day_cumulative)
            if day_index == len(self.days) - 1:
                start = min(
                    elapsed - 1, pick(hour_cumulative[: hour + 1]) * 3600 + rng.randrange(3600)
                )
            else:
                start = pick(hour_cumulative) * 3600 + rng.randrange(3600)
            plans.append(
                Plan(
                    day_index=day_index,
                    start_second=start,
                    replies=replies,
                    owner=-1 - next(anonymous_index) if anonymous else pick(user_cumulative),
                    model_index=pick(model_cumulative),
                    seed=rng.getrandbits(64),
                )
            )
        plans.sort(key=lambda plan: (plan.day_index, plan.start_second))
        return plans

    # --- What was said ------------------------------------------------------------------------

    def _batches(
        self, plans: list[Plan], user_ids: list[int], visitors: list[str]
    ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        conversations: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for plan in plans:
            if plan.owner >= 0:
                user_id, visitor_id = user_ids[plan.owner], ""
            else:
                # Anonymous plans were numbered in the order drawn; visitors are reused.
                user_id, visitor_id = None, visitors[(-1 - plan.owner) % len(visitors)]
            conversation, conversation_messages = self._conversation(plan, user_id, visitor_id)
            conversations.append(conversation)
            messages.extend(conversation_messages)
            if len(messages) >= self.batch_size:
                yield conversations, messages
                conversations, messages = [], []
        if conversations:
            yield conversations, messages

    def _conversation(
        self, plan: Plan, user_id: int | None, visitor_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rng = random.Random(plan.seed)  # noqa: S311
        profile = MODELS[plan.model_index]
        day = self.days[plan.day_index]
        conversation_id = self._conversation_id(plan, rng)
        system_prompt = rng.choice(SYSTEM_PROMPTS)
        topic = rng.choice(TOPICS)

        # First the conversation as offsets in seconds from its start, then placed in its day.
        turns: list[dict[str, Any]] = []
        offset = 0.0
        context_tokens = 12 + len(system_prompt) // 4
        previous_input = 0
        slots = plan.replies
        while slots > 0:
            ask = rng.choice(ASKS).format(topic=topic)
            user_tokens = max(3, min(1500, round(rng.lognormvariate(math.log(40), 0.8))))
            context_tokens += user_tokens
            turns.append({"role": "user", "offset": offset, "content": ask})
            offset += rng.uniform(0.03, 0.2)
            attempt_retried = False
            while True:
                reply = self._reply(rng, profile, context_tokens, previous_input)
                reply["offset"] = offset
                turns.append(reply)
                slots -= 1
                offset += reply["duration_ms"] / 1000
                failed = reply["ended_reason"] != Message.EndedReason.COMPLETED
                # Retry after a failure (often), or Regenerate a finished reply (rarely): the
                # earlier reply stays, superseded, and still counts in the totals.
                retry = rng.random() < (0.5 if failed else 0.01)
                if slots == 0 or attempt_retried or not retry:
                    break
                reply["superseded"] = True
                attempt_retried = True
                offset += rng.lognormvariate(math.log(6), 0.6)
            previous_input = reply["input_tokens"]
            context_tokens += reply["output_tokens"]
            offset += rng.lognormvariate(math.log(45), 0.9)  # reading, then typing
            topic = rng.choice(TOPICS) if rng.random() < 0.1 else topic

        start, span = self._place(day, plan.start_second, offset)
        day_start = datetime.combine(day, clock.min, tzinfo=self.zone)
        messages: list[dict[str, Any]] = []
        totals = {"input": 0, "output": 0, "cost": 0, "unpriced": 0}
        reasons: set[str] = set()
        for turn in turns:
            created = day_start + timedelta(seconds=start + turn["offset"] * span)
            message = {**MESSAGE_BLANK, "conversation": conversation_id, "created_at": created}
            message["day"] = day
            messages.append(message)
            if turn["role"] == "user":
                message.update(role=Message.Role.USER, content=turn["content"])
                continue
            usage = Usage(
                input_tokens=turn["input_tokens"],
                output_tokens=turn["output_tokens"],
                cached_input_tokens=turn["cached_input_tokens"],
            )
            cost, price_version = self.prices.cost(profile, day, usage)
            self.written_replies += 1
            ended = turn["ended_reason"]
            reasons.add(ended)
            totals["input"] += usage.input_tokens
            totals["output"] += usage.output_tokens
            if cost is None:
                totals["unpriced"] += 1
            else:
                totals["cost"] += cost
            # A conversation squeezed to fit (today, just after midnight) is squeezed throughout.
            duration = max(1, round(turn["duration_ms"] * span))
            message.update(
                role=Message.Role.ASSISTANT,
                content=turn["content"],
                status=STATUS_FOR_ENDING.get(ended, Message.Status.ERROR),
                ended_reason=ended,
                superseded=turn.get("superseded", False),
                stream_seq=usage.output_tokens,
                provider=profile.provider,
                model=profile.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                usage_source=(
                    Message.UsageSource.PROVIDER
                    if ended == Message.EndedReason.COMPLETED
                    else Message.UsageSource.ESTIMATED
                ),
                cost_microusd=cost,
                price_version=price_version,
                ttft_ms=None if turn["ttft_ms"] is None else round(turn["ttft_ms"] * span),
                duration_ms=duration,
                tokens_per_second=turn["tokens_per_second"],
                error_text=turn["error_text"],
                finished_at=created + timedelta(milliseconds=duration),
                heartbeat_at=created,
            )
        # Drawn from a stream of their own, so the history above stays what it was for a seed.
        extra = random.Random(plan.seed ^ 0x5EED)  # noqa: S311
        feedback = self._feedback(extra, messages)
        last = messages[-1]
        flagged = rng.random() < 0.002
        conversation = {
            "id": conversation_id,
            "user": user_id,
            "visitor_id": visitor_id,
            "title": turns[0]["content"][:60],
            "provider": profile.provider,
            "model": profile.model,
            "system_prompt": system_prompt,
            "created_at": messages[0]["created_at"],
            "updated_at": last["finished_at"] or last["created_at"],
            "flagged": flagged,
            "review_note": "Seeded: flagged for review." if flagged else "",
            "current_leaf": None,
            "deleted_at": None,
            "message_count": len(messages),
            "input_tokens": totals["input"],
            "output_tokens": totals["output"],
            "cost_microusd": totals["cost"],
            "unpriced_replies": totals["unpriced"],
            "ended_reasons": ",".join(sorted(reasons)),
            "source": (
                Conversation.Source.API
                if user_id is not None and extra.random() < API_SHARE
                else Conversation.Source.PAGE
            ),
            **feedback,
        }
        self.written_conversations += 1
        self.written_messages += len(messages)
        self.anonymous_conversations += user_id is None
        return conversation, messages

    @staticmethod
    def _feedback(rng: random.Random, messages: list[dict[str, Any]]) -> dict[str, int]:
        """Rate a few replies as people do: rarely, mostly the good ones, more often the bad
        (a failed reply far more often), sometimes with a comment. Returns the counts."""
        counts = {"feedback_up": 0, "feedback_down": 0, "feedback_comments": 0}
        for message in messages:
            if message["role"] != Message.Role.ASSISTANT or message["superseded"]:
                continue
            completed = message["ended_reason"] == Message.EndedReason.COMPLETED
            if rng.random() >= (0.04 if completed else 0.15):
                continue
            good = rng.random() < (0.8 if completed else 0.1)
            rating = Message.Feedback.UP if good else Message.Feedback.DOWN
            comment = rng.choice(FEEDBACK_COMMENTS[rating]) if rng.random() < 0.3 else ""
            message.update(
                feedback=rating,
                feedback_comment=comment,
                feedback_at=message["finished_at"] + timedelta(seconds=rng.uniform(5, 600)),
            )
            counts["feedback_up" if good else "feedback_down"] += 1
            counts["feedback_comments"] += bool(comment)
        return counts

    @staticmethod
    def _conversation_id(plan: Plan, rng: random.Random | None = None) -> uuid.UUID:
        # The first draw of the conversation's own stream.
        rng = rng or random.Random(plan.seed)  # noqa: S311
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    def _place(self, day: date, start_second: int, length: float) -> tuple[float, float]:
        """Where a conversation of `length` seconds starts in its day, and by how much it must
        be squeezed to fit: it must not cross midnight, nor end in the future today."""
        limit = 86_399.0
        if day == self.today:
            midnight = datetime.combine(day, clock.min, tzinfo=self.zone)
            limit = min(limit, (self.now - midnight).total_seconds() - 1)
        limit = max(limit, 1.0)
        span = min(1.0, limit / max(length, 1e-9))
        start = min(float(start_second), limit - length * span)
        return max(0.0, start), span

    def _reply(
        self, rng: random.Random, profile: ModelProfile, context_tokens: int, previous_input: int
    ) -> dict[str, Any]:
        ended: str = Message.EndedReason.COMPLETED
        draw = rng.random()
        for reason, share in ENDINGS:
            if draw < share:
                ended = reason
                break
            draw -= share

        input_tokens = min(MAX_INPUT_TOKENS, context_tokens + 8)
        cached = 0
        if previous_input >= 1024 and rng.random() < profile.cache_hit_rate:
            # The previous turn's prompt is this one's prefix; OpenAI caches in 128-token steps.
            cached = min(input_tokens, previous_input // 128 * 128)
        full_output = max(5, min(MAX_OUTPUT_TOKENS, round(rng.lognormvariate(math.log(320), 0.75))))
        ttft: float | None = rng.lognormvariate(math.log(profile.ttft_p50_ms), 0.5)
        if rng.random() < 0.02:
            ttft = (ttft or 0) * rng.uniform(3, 10)  # the long tail: queues, cold starts
        speed = rng.lognormvariate(math.log(profile.tokens_per_second), 0.2)

        output = full_output
        waited_ms = 0.0
        if ended in (Message.EndedReason.STOPPED, Message.EndedReason.BUDGET):
            output = max(1, round(full_output * rng.uniform(0.05, 0.7)))
            waited_ms = rng.uniform(50, 400)
        elif ended == Message.EndedReason.PROVIDER_ERROR:
            output = 0 if rng.random() < 0.7 else round(full_output * rng.uniform(0.1, 0.8))
        elif ended == Message.EndedReason.TIMEOUT:
            output = 0 if rng.random() < 0.5 else round(full_output * rng.uniform(0.1, 0.8))
            waited_ms = 60_000
        elif ended == Message.EndedReason.INTERRUPTED:
            output = round(full_output * rng.uniform(0.0, 0.8))
            waited_ms = rng.uniform(0, 30_000)
        if output == 0:
            # Nothing arrived: no first token, no speed.
            ttft = None
            duration_ms = waited_ms or rng.uniform(200, 3000)
            tokens_per_second = None
        else:
            streaming_ms = (output - 1) / speed * 1000
            duration_ms = (ttft or 0) + streaming_ms + waited_ms + rng.uniform(5, 40)
            tokens_per_second = round(speed, 1) if output >= 2 and streaming_ms >= 250 else None

        answer = rng.choice(ANSWERS).format(topic=rng.choice(TOPICS))
        return {
            "role": "assistant",
            "ended_reason": ended,
            "input_tokens": input_tokens,
            "cached_input_tokens": cached,
            "output_tokens": output,
            "ttft_ms": None if ttft is None else round(ttft),
            "tokens_per_second": tokens_per_second,
            "duration_ms": duration_ms,
            "content": "" if output == 0 else answer,
            "error_text": rng.choice(ERROR_TEXTS[ended]) if ended in ERROR_TEXTS else "",
        }
