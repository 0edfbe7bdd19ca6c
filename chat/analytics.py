"""Reads for the admin's analytics page: what the chat cost and how it performed, per day, model
and owner, over the last 7, 30 or 90 days.

It reads the daily roll-ups (`chat.rollups`) of the period's finished days, summing the per-owner
rows in the database, plus today's replies, so a 90-day view of a million replies reads a few
thousand rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone
from django.utils.text import capfirst

from chat.models import (
    Conversation,
    Message,
    UsageDay,
    UsageDayOwner,
)
from chat.rollups import (
    OWNER_SUMS,
    ModelDayFigures,
    OwnerFigures,
    figures_from_messages,
    figures_from_rollups,
    percentile,
    rollups_build,
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


# --- The page --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _Counts:
    """What the period, its days and its models all add up."""

    replies: int = 0
    cost_microusd: int = 0
    unpriced_replies: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    estimated_replies: int = 0
    errors: int = 0
    stops: int = 0
    budget_stops: int = 0

    def add(self, figures: ModelDayFigures) -> None:
        self.replies += figures.replies
        self.cost_microusd += figures.cost_microusd
        self.unpriced_replies += figures.unpriced_replies
        self.input_tokens += figures.input_tokens
        self.output_tokens += figures.output_tokens
        self.cached_input_tokens += figures.cached_input_tokens
        self.estimated_replies += figures.estimated_replies
        if figures.ended_reason in ERROR_REASONS:
            self.errors += figures.replies
        elif figures.ended_reason == Message.EndedReason.STOPPED:
            self.stops += figures.replies
        elif figures.ended_reason == Message.EndedReason.BUDGET:
            self.budget_stops += figures.replies


@dataclass(kw_only=True)
class _Totals(_Counts):
    ttft_histogram: Counter[str] = field(default_factory=Counter)

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


@dataclass(kw_only=True)
class UsageSummary(_Counts):
    start: date
    end: date
    days: list[DayRow]
    models: list[ModelRow] = field(default_factory=list)
    top_owners: list[OwnerFigures] = field(default_factory=list)
    top_conversations: list[Conversation] = field(default_factory=list)
    active_owners: int = 0

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
    summary = UsageSummary(start=period[0], end=today, days=list(by_day.values()))

    def model_row(provider: str, model: str) -> ModelRow:
        row = by_model.get((provider, model))
        if row is None:
            row = by_model[provider, model] = ModelRow(provider=provider, model=model)
        return row

    for figures in (*rolled.models, *live.models):
        row, model = by_day[figures.day], model_row(figures.provider, figures.model)
        for totals in (summary, row, model):
            totals.add(figures)
        row.cost_by_model[model.label] += figures.cost_microusd
        row.replies_by_reason[figures.ended_reason] += figures.replies
    for latency in (*rolled.latencies, *live.latencies):
        model = model_row(latency.provider, latency.model)
        # Histograms merge by adding counts bucket by bucket.
        by_day[latency.day].ttft_histogram.update(latency.ttft_histogram)
        model.ttft_histogram.update(latency.ttft_histogram)
        model.speed_histogram.update(latency.speed_histogram)

    summary.top_owners, summary.active_owners = _owners(rolled_up, live.owners)
    summary.models = sorted(
        by_model.values(), key=lambda m: (-m.cost_microusd, -m.replies, m.label)
    )
    summary.top_conversations = _top_conversations(period[0])
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
