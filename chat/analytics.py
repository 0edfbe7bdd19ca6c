"""Reads for the admin's analytics page: what the chat cost and how it performed, per day, model
and owner.

The page reads daily roll-ups (`UsageDay*`), not the message table: a day is rolled up once it is
over, so a 90-day view with a million replies reads a few thousand rows (and sums the per-owner
rows in the database). Days not yet rolled up (today, or a day whose roll-up a late reply
invalidated) are computed from the messages, which the `day` column and its index keep cheap.
Percentiles come from histograms with buckets 2 % wide, so they merge across days and models and
are exact to within 1 %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone
from django.utils.text import capfirst

from chat.models import (
    Conversation,
    Message,
    UsageDay,
    UsageDayLatency,
    UsageDayModel,
    UsageDayOwner,
)

PERIODS = (7, 30, 90)
ERROR_REASONS = frozenset(
    {
        Message.EndedReason.PROVIDER_ERROR,
        Message.EndedReason.TIMEOUT,
        Message.EndedReason.INTERRUPTED,
    }
)
TOP_COUNT = 10


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


def histogram_merge(into: Counter[str], histogram: Mapping[str, int]) -> None:
    into.update(histogram)


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
        Message.objects.filter(role=Message.Role.ASSISTANT, day__in=list(days))
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
                UsageDayModel(
                    usage_day=usage_day,
                    provider=group.provider,
                    model=group.model,
                    ended_reason=group.ended_reason,
                    replies=group.replies,
                    input_tokens=group.input_tokens,
                    output_tokens=group.output_tokens,
                    cached_input_tokens=group.cached_input_tokens,
                    cost_microusd=group.cost_microusd,
                    unpriced_replies=group.unpriced_replies,
                    estimated_replies=group.estimated_replies,
                )
                for group in figures.models
            )
            UsageDayLatency.objects.bulk_create(
                UsageDayLatency(
                    usage_day=usage_day,
                    provider=latency.provider,
                    model=latency.model,
                    ttft_histogram=dict(latency.ttft_histogram),
                    speed_histogram=dict(latency.speed_histogram),
                )
                for latency in figures.latencies
            )
            UsageDayOwner.objects.bulk_create(
                (
                    UsageDayOwner(
                        usage_day=usage_day,
                        owner=owner.owner,
                        replies=owner.replies,
                        input_tokens=owner.input_tokens,
                        output_tokens=owner.output_tokens,
                        cost_microusd=owner.cost_microusd,
                    )
                    for owner in figures.owners
                ),
                batch_size=2000,
            )
    except IntegrityError:
        return False
    return True


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


# --- The page --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _Totals:
    """What days and models both add up."""

    replies: int = 0
    cost_microusd: int = 0
    unpriced_replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_histogram: Counter[str] = field(default_factory=Counter)

    def add(self, figures: ModelDayFigures) -> None:
        self.replies += figures.replies
        self.cost_microusd += figures.cost_microusd
        self.unpriced_replies += figures.unpriced_replies
        self.input_tokens += figures.input_tokens
        self.output_tokens += figures.output_tokens

    # Cached: read once the totals are complete, by the page, its charts and the CSV.
    @cached_property
    def ttft_p50_ms(self) -> float | None:
        return percentile(self.ttft_histogram, 50)

    @cached_property
    def ttft_p95_ms(self) -> float | None:
        return percentile(self.ttft_histogram, 95)


@dataclass
class DayRow(_Totals):
    day: date
    cached_input_tokens: int = 0
    estimated_replies: int = 0
    errors: int = 0
    stops: int = 0
    budget_stops: int = 0
    cost_by_model: Counter[str] = field(default_factory=Counter)
    replies_by_reason: Counter[str] = field(default_factory=Counter)


@dataclass
class ModelRow(_Totals):
    provider: str
    model: str
    speed_histogram: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def priced_cost_microusd(self) -> int | None:
        """The cost, or None when no reply of the model has a price (not the same as free)."""
        return (
            None if self.replies and self.unpriced_replies == self.replies else self.cost_microusd
        )

    @property
    def cost_per_reply_microusd(self) -> int | None:
        priced = self.replies - self.unpriced_replies
        return round(self.cost_microusd / priced) if priced else None

    @cached_property
    def median_tokens_per_second(self) -> float | None:
        return percentile(self.speed_histogram, 50)


@dataclass
class UsageSummary:
    start: date
    end: date
    days: list[DayRow]
    models: list[ModelRow]
    top_owners: list[OwnerFigures]
    top_conversations: list[Conversation]
    active_owners: int
    replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_microusd: int = 0
    unpriced_replies: int = 0
    estimated_replies: int = 0
    errors: int = 0
    stops: int = 0
    budget_stops: int = 0

    def _share(self, count: int) -> float | None:
        return count / self.replies if self.replies else None

    @property
    def error_rate(self) -> float | None:
        return self._share(self.errors)

    @property
    def stop_rate(self) -> float | None:
        return self._share(self.stops)

    @property
    def estimated_share(self) -> float | None:
        return self._share(self.estimated_replies)

    def chart_data(self) -> dict[str, Any]:
        """What the charts draw, for `json_script` (dollars and milliseconds)."""
        labels = [row.day.isoformat() for row in self.days]
        model_labels = [model.label for model in self.models]
        reasons = [reason for reason in Message.EndedReason.values if self._any_reason(reason)]
        return {
            "days": labels,
            "cost_by_model": [
                {
                    "label": label,
                    "data": [row.cost_by_model.get(label, 0) / 1_000_000 for row in self.days],
                }
                for label in model_labels
            ],
            "tokens": {
                "input": [row.input_tokens for row in self.days],
                "output": [row.output_tokens for row in self.days],
            },
            "replies_by_reason": [
                {
                    "reason": reason,
                    "label": capfirst(Message.EndedReason(reason).label),
                    "data": [row.replies_by_reason.get(reason, 0) for row in self.days],
                }
                for reason in reasons
            ],
            "ttft": {
                "p50": [_rounded(row.ttft_p50_ms) for row in self.days],
                "p95": [_rounded(row.ttft_p95_ms) for row in self.days],
            },
        }

    def _any_reason(self, reason: str) -> bool:
        return any(row.replies_by_reason.get(reason) for row in self.days)


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def _period_days(days: int, today: date) -> list[date]:
    start = today - timedelta(days=days - 1)
    return [start + timedelta(days=offset) for offset in range(days)]


def usage_summary(*, days: int, today: date | None = None) -> UsageSummary:
    """Everything the analytics page shows for the last `days` days, today included."""
    today = today or timezone.localdate()
    period = _period_days(days, today)
    rollups_build(today=today, days=period)
    rolled_up = sorted(
        UsageDay.objects.filter(day__in=period, stale=False).values_list("day", flat=True)
    )
    rolled = figures_from_rollups(rolled_up)
    live = figures_from_messages(day for day in period if day not in set(rolled_up))

    by_day = {day: DayRow(day=day) for day in period}
    by_model: dict[tuple[str, str], ModelRow] = {}

    def model_row(provider: str, model: str) -> ModelRow:
        row = by_model.get((provider, model))
        if row is None:
            row = by_model[provider, model] = ModelRow(provider=provider, model=model)
        return row

    for figures in (*rolled.models, *live.models):
        row, model = by_day[figures.day], model_row(figures.provider, figures.model)
        row.add(figures)
        model.add(figures)
        row.cached_input_tokens += figures.cached_input_tokens
        row.estimated_replies += figures.estimated_replies
        row.cost_by_model[model.label] += figures.cost_microusd
        row.replies_by_reason[figures.ended_reason] += figures.replies
        if figures.ended_reason in ERROR_REASONS:
            row.errors += figures.replies
        elif figures.ended_reason == Message.EndedReason.STOPPED:
            row.stops += figures.replies
        elif figures.ended_reason == Message.EndedReason.BUDGET:
            row.budget_stops += figures.replies
    for latency in (*rolled.latencies, *live.latencies):
        model = model_row(latency.provider, latency.model)
        histogram_merge(by_day[latency.day].ttft_histogram, latency.ttft_histogram)
        histogram_merge(model.ttft_histogram, latency.ttft_histogram)
        histogram_merge(model.speed_histogram, latency.speed_histogram)

    top_owners, active_owners = _owners(rolled_up, live.owners)
    day_rows = list(by_day.values())
    summary = UsageSummary(
        start=period[0],
        end=today,
        days=day_rows,
        models=sorted(by_model.values(), key=lambda m: (-m.cost_microusd, -m.replies, m.label)),
        top_owners=top_owners,
        top_conversations=_top_conversations(period[0]),
        active_owners=active_owners,
    )
    for row in day_rows:
        summary.replies += row.replies
        summary.input_tokens += row.input_tokens
        summary.output_tokens += row.output_tokens
        summary.cached_input_tokens += row.cached_input_tokens
        summary.cost_microusd += row.cost_microusd
        summary.unpriced_replies += row.unpriced_replies
        summary.estimated_replies += row.estimated_replies
        summary.errors += row.errors
        summary.stops += row.stops
        summary.budget_stops += row.budget_stops
    return summary


def _owners(
    rolled_up: list[date], live_figures: list[OwnerFigures]
) -> tuple[list[OwnerFigures], int]:
    """The top owners by cost and how many owners were active, summed in the database: a period
    can hold a hundred thousand owner-days. An owner in the top ten either is in the rolled-up
    days' top ten or spent on a live day, so those are the only candidates."""
    live: dict[str, OwnerFigures] = {}
    for figures in live_figures:
        live.setdefault(figures.owner, OwnerFigures(figures.owner)).add(figures)
    rolled = UsageDayOwner.objects.filter(usage_day__in=rolled_up)
    candidates: dict[str, OwnerFigures] = {}
    if rolled_up:
        top = rolled.values("owner").annotate(**OWNER_SUMS)
        top = top.order_by("-cost_microusd", "-replies", "owner")[:TOP_COUNT]
        for row in top:
            candidates[row["owner"]] = OwnerFigures(**row)
        live_owners = list(live)
        for start in range(0, len(live_owners), 500):  # bounded query parameters
            chunk = live_owners[start : start + 500]
            for row in rolled.filter(owner__in=chunk).values("owner").annotate(**OWNER_SUMS):
                candidates[row["owner"]] = OwnerFigures(**row)
        active = rolled.aggregate(owners=Count("owner", distinct=True))["owners"]
        active += sum(1 for owner in live if owner not in candidates)
    else:
        active = len(live)
    for owner, figures in live.items():
        candidates.setdefault(owner, OwnerFigures(owner)).add(figures)
    ranked = sorted(candidates.values(), key=lambda o: (-o.cost_microusd, -o.replies, o.owner))
    return _labelled(ranked[:TOP_COUNT]), active


def _labelled(rows: list[OwnerFigures]) -> list[OwnerFigures]:
    user_ids = [int(row.owner.split(":", 1)[1]) for row in rows if row.owner.startswith("user:")]
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    for row in rows:
        kind, _, ident = row.owner.partition(":")
        if kind == "user":
            row.label = names.get(int(ident), f"deleted user #{ident}")
        else:
            row.label = f"anonymous · {ident[:8]}"
    return rows


def _top_conversations(start: date) -> list[Conversation]:
    """The costliest conversations active in the period (their whole cost)."""
    since = timezone.make_aware(datetime.combine(start, time.min))
    return list(
        Conversation.objects.filter(updated_at__gte=since, cost_microusd__gt=0)
        .select_related("user")
        .order_by("-cost_microusd")[:TOP_COUNT]
    )
