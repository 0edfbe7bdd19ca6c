"""Daily roll-ups of usage: what the analytics page reads instead of the message table.

A day is rolled up once it is over (and no reply of it still streams) into per-model, per-model
latency and per-owner rows (`UsageDay*`). Figures for days not rolled up yet are computed from the
messages the same way, which the `day` column and its index keep cheap. Latencies are kept as
histograms with buckets 2 % wide on a log scale, so percentiles merge across days and models and
are exact to within 1 %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone

from chat.models import (
    Message,
    UsageDay,
    UsageDayLatency,
    UsageDayModel,
    UsageDayOwner,
)

# --- Histograms and percentiles -------------------------------------------------------------


# Buckets 2 % wide on a log scale: a bucket's middle is within 1 % of every value in it, and a
# day's replies of one model fit in a few hundred buckets whatever their spread.
BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(BUCKET_RATIO)
ZERO_BUCKET = "z"


def histogram_key(value: float) -> str:
    """The value's bucket, as a JSON object key."""
    if value <= 0:
        return ZERO_BUCKET
    return str(round(math.log(value) / _LOG_RATIO))


def bucket_value(key: str) -> float:
    return 0.0 if key == ZERO_BUCKET else BUCKET_RATIO ** int(key)


def _bucket_order(key: str) -> float:
    return -math.inf if key == ZERO_BUCKET else int(key)


def percentile(histogram: Mapping[str, int], percent: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `percent` % of the values at or
    below it (to within 1 %)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(percent / 100 * total))
    seen = 0
    for key in sorted(histogram, key=_bucket_order):
        seen += histogram[key]
        if seen >= rank:
            return bucket_value(key)
    return None  # pragma: no cover - unreachable: `seen` reaches `total`


# --- Figures for a set of days -----------------------------------------------------------------


@dataclass
class ModelDayFigures:
    """Replies of one day, provider, model and ended reason (a `UsageDayModel` row, or its live
    equivalent)."""

    day: date
    provider: str
    model: str
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
    """How fast one model answered on one day (a `UsageDayLatency` row, or its live equivalent)."""

    day: date
    provider: str
    model: str
    ttft_histogram: Counter[str] = field(default_factory=Counter)
    speed_histogram: Counter[str] = field(default_factory=Counter)


@dataclass
class OwnerFigures:
    owner: str  # "user:<id>" or "visitor:<visitor id>"
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_microusd: int = 0
    day: date | None = None
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
    owners: list[OwnerFigures]  # one per owner and day


def _ended_replies(days: Iterable[date]) -> Any:
    # Replaced replies count: they were generated and paid for. Streaming ones have not ended.
    # order_by(): PostgreSQL would walk the primary key to serve a cursor in id order.
    return (
        Message.objects.replies()
        .filter(day__in=list(days))
        .exclude(status=Message.Status.STREAMING)
        .order_by()
    )


OWNER_SUMS = {
    "replies": Sum("replies"),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost_microusd": Sum("cost_microusd"),
}


def figures_from_messages(days: Iterable[date]) -> DayFigures:
    days = list(days)
    figures = DayFigures([], [], [])
    if not days:
        return figures
    groups: dict[tuple[date, str, str, str], ModelDayFigures] = {}
    latencies: dict[tuple[date, str, str], LatencyFigures] = {}
    rows = _ended_replies(days).values_list(
        "day",
        "provider",
        "model",
        "ended_reason",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cost_microusd",
        "usage_source",
        "ttft_ms",
        "tokens_per_second",
    )
    for (
        day,
        provider,
        model,
        reason,
        tokens_in,
        tokens_out,
        cached,
        cost,
        source,
        ttft,
        speed,
    ) in rows.iterator(chunk_size=5000):
        group = groups.get((day, provider, model, reason))
        if group is None:
            group = groups[day, provider, model, reason] = ModelDayFigures(
                day, provider, model, reason
            )
        group.replies += 1
        group.input_tokens += tokens_in or 0
        group.output_tokens += tokens_out or 0
        group.cached_input_tokens += cached or 0
        if cost is None:
            group.unpriced_replies += 1
        else:
            group.cost_microusd += cost
        if source == Message.UsageSource.ESTIMATED:
            group.estimated_replies += 1
        latency = latencies.get((day, provider, model))
        if latency is None:
            latency = latencies[day, provider, model] = LatencyFigures(day, provider, model)
        if ttft is not None:
            latency.ttft_histogram[histogram_key(ttft)] += 1
        if speed:
            latency.speed_histogram[histogram_key(speed)] += 1
    figures.models = list(groups.values())
    figures.latencies = list(latencies.values())

    owners = (
        _ended_replies(days)
        .values("day", "conversation__user_id", "conversation__visitor_id")
        .annotate(
            replies=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_microusd=Sum("cost_microusd"),
        )
    )
    figures.owners = [
        OwnerFigures(
            owner=owner_key(row["conversation__user_id"], row["conversation__visitor_id"]),
            replies=row["replies"],
            input_tokens=row["input_tokens"] or 0,
            output_tokens=row["output_tokens"] or 0,
            cost_microusd=row["cost_microusd"] or 0,
            day=row["day"],
        )
        for row in owners
    ]
    return figures


def owner_key(user_id: int | None, visitor_id: str) -> str:
    return f"user:{user_id}" if user_id is not None else f"visitor:{visitor_id}"


def figures_from_rollups(days: Iterable[date]) -> DayFigures:
    """The rolled-up days' models and latencies (owners are summed in the database instead: see
    `_owners`)."""
    days = list(days)
    if not days:
        return DayFigures([], [], [])
    models = [
        ModelDayFigures(day, provider, model, reason, *counts)
        for day, provider, model, reason, *counts in UsageDayModel.objects.filter(
            usage_day__in=days
        ).values_list(
            "usage_day_id",
            "provider",
            "model",
            "ended_reason",
            "replies",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cost_microusd",
            "unpriced_replies",
            "estimated_replies",
        )
    ]
    latencies = [
        LatencyFigures(day, provider, model, Counter(ttft), Counter(speed))
        for day, provider, model, ttft, speed in UsageDayLatency.objects.filter(
            usage_day__in=days
        ).values_list("usage_day_id", "provider", "model", "ttft_histogram", "speed_histogram")
    ]
    return DayFigures(models, latencies, [])


# --- Roll-ups --------------------------------------------------------------------------------


def _day_closed_at(day: date) -> datetime:
    """When no reply of `day` can still be running: the next midnight plus the longest a reply may
    run and the time a dead worker's reply takes to be reaped."""
    grace = settings.CHAT_REPLY_TIMEOUT + 2 * settings.CHAT_STALE_AFTER_SECONDS
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
    # Not `asdict`: it would rebuild each Counter from its (key, count) pairs, counting those.
    return {
        column.name: getattr(figures, column.name)
        for column in fields(figures)
        if column.name != "day" and column.name not in leave_out
    }


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
