"""What the admin's analytics page shows: the period and the one before it, the cards' totals,
the rows per day and per model, the changes against the previous period and the charts' data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

from django.utils import timezone
from django.utils.text import capfirst

from chat.analytics.figures import (
    ModelDayFigures,
    OwnerFigures,
)
from chat.analytics.filters import UsageFilter
from chat.analytics.histograms import Histogram
from chat.models import Conversation, Message

PRESETS = (7, 30, 90)
MAX_PERIOD_DAYS = 366
ERROR_REASONS = frozenset(
    {
        Message.EndedReason.PROVIDER_ERROR,
        Message.EndedReason.TIMEOUT,
        Message.EndedReason.INTERRUPTED,
        Message.EndedReason.SERVICE_ERROR,
    }
)
SPEED_BINS = 12


@dataclass(frozen=True)
class Period:
    """Days from `start` to `end`, both included."""

    start: date
    end: date

    @classmethod
    def last(cls, days: int, today: date | None = None) -> Period:
        end = today or timezone.localdate()
        return cls(end - timedelta(days=days - 1), end)

    @property
    def length(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range(self.length)]

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.start - timedelta(days=self.length), self.start - timedelta(days=1))


def _percentile_of(histogram: str, percent: int) -> cached_property[float | None]:
    # Cached: read once the figures are complete, by the page, its charts and the CSV.
    return cached_property(lambda self: getattr(self, histogram).percentile(percent))


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
    feedback_up: int = 0
    feedback_down: int = 0

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

    def add_feedback(self, rating: int, count: int) -> None:
        if rating == Message.Feedback.UP:
            self.feedback_up += count
        else:
            self.feedback_down += count

    @property
    def ratings(self) -> int:
        return self.feedback_up + self.feedback_down

    @property
    def satisfaction(self) -> float | None:
        """The share of rated replies rated good."""
        return self.feedback_up / self.ratings if self.ratings else None

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


@dataclass(kw_only=True)
class _Latencies(_Counts):
    ttft_histogram: Histogram = field(default_factory=Histogram)
    duration_histogram: Histogram = field(default_factory=Histogram)

    ttft_p50_ms = _percentile_of("ttft_histogram", 50)
    ttft_p95_ms = _percentile_of("ttft_histogram", 95)
    ttft_p99_ms = _percentile_of("ttft_histogram", 99)
    duration_p50_ms = _percentile_of("duration_histogram", 50)
    duration_p95_ms = _percentile_of("duration_histogram", 95)
    duration_p99_ms = _percentile_of("duration_histogram", 99)


@dataclass
class DayRow(_Latencies):
    day: date
    cost_by_model: Counter[str] = field(default_factory=Counter)
    replies_by_reason: Counter[str] = field(default_factory=Counter)


@dataclass
class ModelRow(_Latencies):
    provider: str
    model: str
    speed_histogram: Histogram = field(default_factory=Histogram)

    median_tokens_per_second = _percentile_of("speed_histogram", 50)

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


@dataclass(frozen=True)
class Change:
    """A card's figure against the previous period: a relative change for amounts, a change in
    percentage points for rates."""

    text: str
    direction: str  # "up", "down" or "same"
    # Whether up is good news ("good"), bad news ("bad") or neither ("neutral").
    meaning: str


@dataclass(kw_only=True)
class UsageTotals(_Counts):
    period: Period
    active_owners: int = 0


@dataclass(kw_only=True)
class UsageSummary(UsageTotals):
    usage_filter: UsageFilter
    days: list[DayRow]
    models: list[ModelRow] = field(default_factory=list)
    top_owners: list[OwnerFigures] = field(default_factory=list)
    top_conversations: list[Conversation] = field(default_factory=list)
    previous: UsageTotals | None = None

    @property
    def start(self) -> date:
        return self.period.start

    @property
    def end(self) -> date:
        return self.period.end

    @property
    def unpriced_models(self) -> list[ModelRow]:
        return [model for model in self.models if model.unpriced_replies]

    def changes(self) -> dict[str, Change | None]:
        """Each card's change against the previous period of the same length."""
        previous = self.previous
        if previous is None:
            return {}
        amounts = {
            "cost": (self.cost_microusd, previous.cost_microusd, "neutral"),
            "replies": (self.replies, previous.replies, "good"),
            "input_tokens": (self.input_tokens, previous.input_tokens, "neutral"),
            "output_tokens": (self.output_tokens, previous.output_tokens, "neutral"),
            "active_users": (self.active_owners, previous.active_owners, "good"),
        }
        rates = {
            "error_rate": (self.error_rate, previous.error_rate, "bad"),
            "stop_rate": (self.stop_rate, previous.stop_rate, "bad"),
            "estimated_share": (self.estimated_share, previous.estimated_share, "bad"),
            "satisfaction": (self.satisfaction, previous.satisfaction, "good"),
        }
        changes: dict[str, Change | None] = {
            name: _amount_change(now, before, meaning)
            for name, (now, before, meaning) in amounts.items()
        }
        for name, (rate, before_rate, meaning) in rates.items():
            changes[name] = _rate_change(rate, before_rate, meaning)
        return changes

    def chart_data(self) -> dict[str, Any]:
        """What the charts draw, for `json_script` (dollars and milliseconds)."""
        labels = [row.day.isoformat() for row in self.days]
        reasons = [reason for reason in Message.EndedReason.values if self._any_reason(reason)]
        return {
            "days": labels,
            "cost_by_model": [
                {
                    "label": model.label,
                    "provider": model.provider,
                    "model": model.model,
                    "data": [row.cost_by_model.get(model.label, 0) / 1e6 for row in self.days],
                }
                for model in self.models
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
                f"p{p}": [_rounded(getattr(row, f"ttft_p{p}_ms")) for row in self.days]
                for p in (50, 95, 99)
            },
            "duration": {
                f"p{p}": [_rounded(getattr(row, f"duration_p{p}_ms")) for row in self.days]
                for p in (50, 95, 99)
            },
            "feedback": {
                "up": [row.feedback_up for row in self.days],
                "down": [row.feedback_down for row in self.days],
            },
            "speed": speed_distribution(self.models),
        }

    def _any_reason(self, reason: str) -> bool:
        return any(row.replies_by_reason.get(reason) for row in self.days)


def _amount_change(now: int, before: int, meaning: str) -> Change | None:
    if not now and not before:
        return None
    if not before:
        return Change("new in this period", "up", meaning)
    ratio = now / before - 1
    if abs(ratio) < 0.0005:
        return Change("no change", "same", meaning)
    sign = "+" if ratio > 0 else "−"
    return Change(f"{sign}{abs(ratio) * 100:.1f} %", "up" if ratio > 0 else "down", meaning)


def _rate_change(now: float | None, before: float | None, meaning: str) -> Change | None:
    if now is None or before is None:
        return None
    points = (now - before) * 100
    if abs(points) < 0.05:
        return Change("no change", "same", meaning)
    sign = "+" if points > 0 else "−"
    return Change(f"{sign}{abs(points):.1f} pts", "up" if points > 0 else "down", meaning)


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def speed_distribution(models: Iterable[ModelRow]) -> dict[str, Any]:
    """Tokens per second per model as shares of its replies in equal-width bins up to the
    fastest model's 99th percentile (the rest fall in the last bin)."""
    measured = [model for model in models if model.speed_histogram]
    tops = [model.speed_histogram.percentile(99) or 0 for model in measured]
    if not measured or not max(tops):
        return {"bins": [], "models": []}
    width = _nice_width(max(tops) / SPEED_BINS)
    bins = [f"{i * width:g}–{(i + 1) * width:g}" for i in range(SPEED_BINS)]
    bins[-1] = f"≥ {(SPEED_BINS - 1) * width:g}"
    series = []
    for model in measured:
        counts = [0] * SPEED_BINS
        for value, count in model.speed_histogram.items():
            counts[min(int(value // width), SPEED_BINS - 1)] += count
        total = sum(counts)
        series.append(
            {
                "label": model.label,
                "data": [round(count / total * 100, 1) for count in counts],
            }
        )
    return {"bins": bins, "models": series}


def _nice_width(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    power = 10 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= raw)
