"""Daily roll-ups of usage: what the analytics page reads instead of the message table.

A day is rolled up once it is over (and no reply of it still streams) into per-model, per-model
latency and per-owner rows (`UsageDay*`). Figures for days not rolled up yet are computed from the
messages the same way, which the `day` column and its index keep cheap. Latencies are kept as
histograms (`chat.analytics.histograms`), so percentiles merge across days and models exact to
within 1 %:
per source and kind of owner for the pages filtered by those, and merged over them
(`UsageDayLatencyTotal`) for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min, Q, Sum
from django.utils import timezone

from chat.analytics.histograms import Histogram
from chat.analytics.rollup_ratings import ratings_rows
from chat.models import (
    Message,
    UsageDay,
    UsageDayLatency,
    UsageDayLatencyTotal,
    UsageDayModel,
    UsageDayOwner,
    UsageDayRating,
)

# --- Filters -------------------------------------------------------------------------------

SIGNED_IN = "signed-in"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class UsageFilter:
    """What the analytics page is narrowed to: a provider, a model, a source (`page` or `api`)
    and an owner (`signed-in`, `anonymous`, or one `user:<id>` / `visitor:<id>`). Empty means
    any. Roll-ups carry every dimension but one owner's, so only that reads the messages."""

    provider: str = ""
    model: str = ""
    source: str = ""
    owner: str = ""

    @property
    def one_owner(self) -> bool:
        return self.owner.startswith(("user:", "visitor:"))

    @property
    def anonymous(self) -> bool | None:
        return {SIGNED_IN: False, ANONYMOUS: True}.get(self.owner)

    @property
    def splits_latencies(self) -> bool:
        """Whether the latency roll-ups must be read per source and kind of owner, rather than
        merged over them (`UsageDayLatencyTotal`)."""
        return bool(self.source or self.owner)

    def model_q(self) -> Q:
        """For `UsageDayLatencyTotal` rows."""
        condition = Q()
        if self.provider:
            condition &= Q(provider=self.provider)
        if self.model:
            condition &= Q(model=self.model)
        return condition

    def _dimensions(self) -> Q:
        condition = self.model_q()
        if self.source:
            condition &= Q(source=self.source)
        return condition

    def rollup_q(self) -> Q:
        """For `UsageDayModel` and `UsageDayLatency` rows."""
        condition = self._dimensions()
        if self.anonymous is not None:
            condition &= Q(anonymous=self.anonymous)
        return condition

    def owner_rollup_q(self) -> Q:
        """For `UsageDayOwner` rows."""
        condition = self._dimensions()
        # Ranges rather than `startswith`: SQLite's LIKE is case-insensitive and cannot use the
        # (day, owner) index, and ";" is the character after ":".
        if self.owner == SIGNED_IN:
            condition &= Q(owner__gte="user:", owner__lt="user;")
        elif self.owner == ANONYMOUS:
            condition &= Q(owner__gte="visitor:", owner__lt="visitor;")
        elif self.one_owner:
            condition &= Q(owner=self.owner)
        return condition

    def conversation_q(self) -> Q:
        """For conversations (their own provider, model, source and owner)."""
        condition = self._dimensions()
        if self.anonymous is not None:
            condition &= Q(user__isnull=self.anonymous)
        if self.one_owner:
            kind, _, ident = self.owner.partition(":")
            if kind == "user":
                condition &= Q(user_id=int(ident)) if ident.isdigit() else Q(pk__in=[])
            else:
                condition &= Q(user__isnull=True, visitor_id=ident)
        return condition

    def one_owner_message_q(self) -> Q:
        """For the replies of the one owner's conversations (joined to them, which SQLite and
        PostgreSQL serve from the conversations' owner index and then each one's replies)."""
        kind, _, ident = self.owner.partition(":")
        if kind == "user":
            return Q(conversation__user_id=int(ident)) if ident.isdigit() else Q(pk__in=[])
        return Q(conversation__user__isnull=True, conversation__visitor_id=ident)

    def message_q(self) -> Q:
        """For replies, whose provider and model are their own (a conversation can change model)
        and whose source and owner are their conversation's."""
        condition = Q()
        if self.provider:
            condition &= Q(provider=self.provider)
        if self.model:
            condition &= Q(model=self.model)
        if self.source:
            condition &= Q(conversation__source=self.source)
        if self.anonymous is not None:
            condition &= Q(conversation__user__isnull=self.anonymous)
        return condition


NO_FILTER = UsageFilter()


# --- Figures for a set of days -----------------------------------------------------------------


@dataclass
class ModelDayFigures:
    """Replies of one day, provider, model, source, kind of owner and ended reason (a
    `UsageDayModel` row, or its live equivalent)."""

    day: date
    provider: str
    model: str
    source: str
    anonymous: bool
    ended_reason: str
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_microusd: int = 0
    unpriced_replies: int = 0
    estimated_replies: int = 0


@dataclass
class LatencyFigures:
    """How fast one model answered on one day for one source and kind of owner (a
    `UsageDayLatency` row, or its live equivalent)."""

    day: date
    provider: str
    model: str
    source: str
    anonymous: bool
    ttft_histogram: Histogram = field(default_factory=Histogram)
    duration_histogram: Histogram = field(default_factory=Histogram)
    speed_histogram: Histogram = field(default_factory=Histogram)

    def merge(self, other: LatencyFigures) -> None:
        self.ttft_histogram.merge(other.ttft_histogram)
        self.duration_histogram.merge(other.duration_histogram)
        self.speed_histogram.merge(other.speed_histogram)


@dataclass
class OwnerFigures:
    owner: str  # "user:<id>" or "visitor:<visitor id>"
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_microusd: int = 0
    day: date | None = None
    provider: str = ""
    model: str = ""
    source: str = ""
    label: str = ""

    def add(self, other: OwnerFigures) -> None:
        self.replies += other.replies
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_microusd += other.cost_microusd


@dataclass
class DayFigures:
    models: list[ModelDayFigures]
    latencies: list[LatencyFigures]
    owners: list[OwnerFigures]  # one per day, owner, provider, model and source

    def of_days(self, days: Iterable[date]) -> DayFigures:
        wanted = set(days)
        return DayFigures(
            [figures for figures in self.models if figures.day in wanted],
            [figures for figures in self.latencies if figures.day in wanted],
            [figures for figures in self.owners if figures.day in wanted],
        )


def ended_replies(days: Iterable[date]) -> Any:
    """The replies of `days` that count in analytics."""
    # Replaced replies count: they were generated and paid for. Streaming ones have not ended.
    # order_by(): PostgreSQL would walk the primary key to serve a cursor in id order.
    return (
        Message.objects.replies()
        .filter(day__in=list(days))
        .exclude(status=Message.Status.STREAMING)
        .order_by()
    )


def _replies_of(days: list[date], usage_filter: UsageFilter) -> Iterator[Any]:
    replies = ended_replies(days).filter(usage_filter.message_q())
    columns = (
        "day",
        "provider",
        "model",
        "conversation__source",
        "conversation__user_id",
        "conversation__visitor_id",
        "ended_reason",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cost_microusd",
        "usage_source",
        "ttft_ms",
        "duration_ms",
        "tokens_per_second",
    )
    if not usage_filter.one_owner:
        yield from replies.values_list(*columns).iterator(chunk_size=5000)
        return
    # One owner's replies through their conversations, all of them, keeping the period's in
    # Python: with the days in the query too, SQLite reads the whole period by the day index
    # (32 s for a heavy user's 30 days at a million replies).
    wanted = set(days)
    every_day = (
        Message.objects.filter(role=Message.Role.ASSISTANT)
        .exclude(status=Message.Status.STREAMING)
        .filter(usage_filter.message_q(), usage_filter.one_owner_message_q())
        .order_by()
    )
    for row in every_day.values_list(*columns).iterator(chunk_size=5000):
        if row[0] in wanted:
            yield row


def figures_from_messages(
    days: Iterable[date], usage_filter: UsageFilter = NO_FILTER, *, with_owners: bool = True
) -> DayFigures:
    """The figures of `days` (narrowed by `usage_filter`), read from the replies themselves in
    one pass; the per-owner figures only `with_owners`."""
    days = list(days)
    figures = DayFigures([], [], [])
    if not days:
        return figures
    groups: dict[tuple[Any, ...], ModelDayFigures] = {}
    latencies: dict[tuple[Any, ...], LatencyFigures] = {}
    owners: dict[tuple[Any, ...], OwnerFigures] = {}
    for (
        day,
        provider,
        model,
        source,
        user_id,
        visitor_id,
        reason,
        tokens_in,
        tokens_out,
        cached,
        cost,
        usage,
        ttft,
        duration,
        speed,
    ) in _replies_of(days, usage_filter):
        anonymous = user_id is None
        key = (day, provider, model, source, anonymous, reason)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ModelDayFigures(*key)
        group.replies += 1
        group.input_tokens += tokens_in or 0
        group.output_tokens += tokens_out or 0
        group.cached_input_tokens += cached or 0
        if cost is None:
            group.unpriced_replies += 1
        else:
            group.cost_microusd += cost
        if usage == Message.UsageSource.ESTIMATED:
            group.estimated_replies += 1
        latency = latencies.get(key[:5])
        if latency is None:
            latency = latencies[key[:5]] = LatencyFigures(*key[:5])
        if ttft is not None:
            latency.ttft_histogram.add_value(ttft)
        if duration is not None:
            latency.duration_histogram.add_value(duration)
        if speed:
            latency.speed_histogram.add_value(speed)
        if not with_owners:
            continue
        owner = owner_key(user_id, visitor_id)
        owner_group = owners.get((day, owner, provider, model, source))
        if owner_group is None:
            owner_group = owners[day, owner, provider, model, source] = OwnerFigures(
                owner, day=day, provider=provider, model=model, source=source
            )
        owner_group.replies += 1
        owner_group.input_tokens += tokens_in or 0
        owner_group.output_tokens += tokens_out or 0
        owner_group.cost_microusd += cost or 0
    figures.models = list(groups.values())
    figures.latencies = list(latencies.values())
    figures.owners = list(owners.values())
    return figures


def owner_key(user_id: int | None, visitor_id: str) -> str:
    return f"user:{user_id}" if user_id is not None else f"visitor:{visitor_id}"


MODEL_COLUMNS = (
    "usage_day_id",
    "provider",
    "model",
    "source",
    "anonymous",
    "ended_reason",
    "replies",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_microusd",
    "unpriced_replies",
    "estimated_replies",
)


def figures_from_rollups(
    days: Iterable[date], usage_filter: UsageFilter = NO_FILTER, *, latencies: bool = True
) -> DayFigures:
    """The rolled-up days' models and latencies (owners are summed in the database instead: see
    `chat.analytics.summary`). Without a source or owner filter both are merged over sources and
    kinds of owner, which are left empty."""
    days = list(days)
    if not days:
        return DayFigures([], [], [])
    condition = usage_filter.rollup_q()
    rolled = UsageDayModel.objects.filter(condition, usage_day__in=days)
    if usage_filter.splits_latencies:
        models = [ModelDayFigures(*row) for row in rolled.values_list(*MODEL_COLUMNS)]
    else:
        # Summed over sources and kinds of owner in the database: a third of the rows to add up
        # here (8,500 rows for 90 days at a million replies). int(): PostgreSQL sums bigints as
        # numeric.
        sums = {f"summed_{name}": Sum(name) for name in MODEL_COLUMNS[6:]}
        summed = rolled.values("usage_day_id", "provider", "model", "ended_reason").annotate(**sums)
        models = [
            ModelDayFigures(
                day, provider, model, "", False, reason, *(int(total) for total in totals)
            )
            for day, provider, model, reason, *totals in summed.values_list(
                "usage_day_id", "provider", "model", "ended_reason", *sums
            )
        ]
    if not latencies:
        return DayFigures(models, [], [])
    histograms = ("ttft_histogram", "duration_histogram", "speed_histogram")
    from_json = Histogram.from_json
    if usage_filter.splits_latencies:
        split = UsageDayLatency.objects.filter(condition, usage_day__in=days).values_list(
            "usage_day_id", "provider", "model", "source", "anonymous", *histograms
        )
        latency_rows = [
            LatencyFigures(day, provider, model, source, anonymous, *map(from_json, stored))
            for day, provider, model, source, anonymous, *stored in split
        ]
    else:
        merged = UsageDayLatencyTotal.objects.filter(
            usage_filter.model_q(), usage_day__in=days
        ).values_list("usage_day_id", "provider", "model", *histograms)
        latency_rows = [
            LatencyFigures(day, provider, model, "", False, *map(from_json, stored))
            for day, provider, model, *stored in merged
        ]
    return DayFigures(models, latency_rows, [])


def latency_totals(latencies: Iterable[LatencyFigures]) -> list[LatencyFigures]:
    """Latencies merged over sources and kinds of owner, per day and model (those left empty)."""
    totals: dict[tuple[date, str, str], LatencyFigures] = {}
    for latency in latencies:
        key = (latency.day, latency.provider, latency.model)
        total = totals.get(key)
        if total is None:
            total = totals[key] = LatencyFigures(*key, source="", anonymous=False)
        total.merge(latency)
    return list(totals.values())


# --- Roll-ups --------------------------------------------------------------------------------


def _day_closed_at(day: date) -> datetime:
    """When no reply of `day` can still be running: the next midnight plus the longest a reply may
    run and the time a dead worker's reply takes to be reaped."""
    grace = settings.CHAT_REPLY_TIMEOUT + 2 * settings.CHAT_WORKER_DEAD_AFTER_SECONDS
    midnight = datetime.combine(day + timedelta(days=1), time.min)
    return timezone.make_aware(midnight) + timedelta(seconds=grace)


def rollups_build(*, today: date | None = None, days: Iterable[date] | None = None) -> int:
    """Roll up every finished day (or those of `days`) that is not rolled up yet. Returns how many
    days it rolled up."""
    now = timezone.now()
    today = today or timezone.localdate(now)
    if days is None:
        first = Message.objects.aggregate(first=Min("day"))["first"]
        if first is None:
            return 0
        days = (first + timedelta(days=offset) for offset in range((today - first).days + 1))
    candidates = [day for day in days if day <= today and _day_closed_at(day) <= now]
    if not candidates:
        return 0
    done = set(
        UsageDay.objects.filter(
            day__gte=min(candidates), day__lte=max(candidates), stale=False
        ).values_list("day", flat=True)
    )
    built = 0
    for day in candidates:
        if day not in done and _rollup_day(day):
            built += 1
    return built


def _rollup_day(day: date) -> bool:
    try:
        with transaction.atomic():
            if Message.objects.streaming().filter(day=day).exists():
                return False  # a reply of the day is still running (or waits to be reaped)
            UsageDay.objects.filter(day=day, stale=True).delete()
            # Created before reading: a concurrent builder of the day fails here and leaves it,
            # and a concurrent `rollup_invalidate` waits for this one and then marks it stale.
            usage_day = UsageDay.objects.create(day=day)
            figures = figures_from_messages([day])
            UsageDayModel.objects.bulk_create(
                UsageDayModel(usage_day=usage_day, **_columns(group)) for group in figures.models
            )
            UsageDayLatency.objects.bulk_create(
                UsageDayLatency(usage_day=usage_day, **_columns(latency))
                for latency in figures.latencies
            )
            UsageDayLatencyTotal.objects.bulk_create(
                UsageDayLatencyTotal(usage_day=usage_day, **_columns(total, "source", "anonymous"))
                for total in latency_totals(figures.latencies)
            )
            UsageDayRating.objects.bulk_create(ratings_rows(usage_day))
            UsageDayOwner.objects.bulk_create(
                (
                    UsageDayOwner(usage_day=usage_day, **_columns(owner, "label"))
                    for owner in figures.owners
                ),
                batch_size=2000,
            )
    except IntegrityError:
        return False
    return True


def _columns(figures: Any, *leave_out: str) -> dict[str, Any]:
    """A figures dataclass as the fields of its roll-up row (the day is the row's `usage_day`)."""
    columns = {}
    for column in fields(figures):
        if column.name != "day" and column.name not in leave_out:
            value = getattr(figures, column.name)
            columns[column.name] = value.to_json() if isinstance(value, Histogram) else value
    return columns


def rollup_invalidate(day: date) -> None:
    """A reply of `day` changed after the day was over (a reaped reply, found after downtime): the
    next analytics view rolls the day up again. An upsert, not a delete: see `UsageDay.stale`."""
    if day < timezone.localdate():
        UsageDay.objects.bulk_create(
            [UsageDay(day=day, stale=True)],
            update_conflicts=True,
            unique_fields=["day"],
            update_fields=["stale"],
        )
