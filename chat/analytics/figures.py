"""A set of days' usage figures per model, latency and owner: the shape the daily roll-ups store
(`chat.analytics.rollups`) and the analytics page adds up (`chat.analytics.summary`), read either
from the replies themselves or from the roll-ups' rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db.models import Sum

from chat.analytics.filters import NO_FILTER, UsageFilter
from chat.analytics.histograms import Histogram
from chat.models import Message, UsageDayLatency, UsageDayLatencyTotal, UsageDayModel


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
        "author_id",
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
        author_id,
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
        # A reply is the person's who asked for it (a member, in a shared conversation).
        owner = owner_key(author_id or user_id, visitor_id)
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
    `chat.analytics.top`). Without a source or owner filter both are merged over sources and
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
