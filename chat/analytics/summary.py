"""Reads for the admin's analytics page: what the chat cost, how it performed and how people rated
it, per day, model and owner, over any period, narrowed by provider, model, source and owner, and
compared with the period of the same length before it.

It reads the daily roll-ups (`chat.analytics.rollups`) of the period's finished days, summing the
per-owner
rows in the database, plus the replies of days not rolled up yet (today), so a 90-day view of a
million replies reads a few thousand rows. One owner's figures come from their own replies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    Func,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone
from django.utils.text import capfirst

from chat.analytics.histograms import Histogram
from chat.analytics.rollup_ratings import ratings_refresh
from chat.analytics.rollups import (
    NO_FILTER,
    DayFigures,
    ModelDayFigures,
    OwnerFigures,
    UsageFilter,
    ended_replies,
    figures_from_messages,
    figures_from_rollups,
    rollups_build,
)
from chat.models import Conversation, Message, UsageDay, UsageDayOwner, UsageDayRating

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
TOP_COUNT = 10
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


# --- The page --------------------------------------------------------------------------------


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


def usage_summary(
    *,
    period: Period,
    usage_filter: UsageFilter = NO_FILTER,
    today: date | None = None,
    compare: bool = True,
) -> UsageSummary:
    """Everything the analytics page shows for `period`, narrowed by `usage_filter`, and the
    previous period's totals to compare with."""
    today = today or timezone.localdate()
    period_days = [day for day in period.days if day <= today]
    rolled_up, live_days = _split(period_days, usage_filter, today)
    rolled = figures_from_rollups(rolled_up, usage_filter)
    previous_live = previous_ratings = None
    if usage_filter.one_owner and compare:
        # One owner's replies are read all at once, whatever their day (see
        # `chat.analytics.rollups`):
        # once for both periods rather than once each, and their ratings too.
        previous = period.previous()
        previous_days = [day for day in previous.days if day <= today]
        both = figures_from_messages([*live_days, *previous_days], usage_filter)
        live, previous_live = both.of_days(live_days), both.of_days(previous_days)
        both_ratings = _ratings(Period(previous.start, period.end), usage_filter)
        ratings = [rating for rating in both_ratings if rating[0] >= period.start]
        previous_ratings = [rating for rating in both_ratings if rating[0] < period.start]
    else:
        # With days rolled up, the owners are ranked in the database, today's replies included.
        live = figures_from_messages(live_days, usage_filter, with_owners=not rolled_up)
        ratings = _ratings(period, usage_filter, rolled_up)

    by_day = {day: DayRow(day=day) for day in period.days}
    by_model: dict[tuple[str, str], ModelRow] = {}
    summary = UsageSummary(period=period, usage_filter=usage_filter, days=list(by_day.values()))

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
        model, row = model_row(latency.provider, latency.model), by_day[latency.day]
        # Histograms merge by adding counts bucket by bucket.
        row.ttft_histogram.merge(latency.ttft_histogram)
        row.duration_histogram.merge(latency.duration_histogram)
        model.ttft_histogram.merge(latency.ttft_histogram)
        model.duration_histogram.merge(latency.duration_histogram)
        model.speed_histogram.merge(latency.speed_histogram)
    for day, provider, model_name, rating, count in ratings:
        for totals in (summary, by_day[day], model_row(provider, model_name)):
            totals.add_feedback(rating, count)

    summary.top_owners, summary.active_owners = _owners(
        rolled_up, live_days, live.owners, usage_filter
    )
    summary.models = sorted(
        by_model.values(), key=lambda m: (-m.cost_microusd, -m.replies, m.label)
    )
    summary.top_conversations = _top_conversations(period, usage_filter)
    if compare:
        summary.previous = usage_totals(
            period=period.previous(),
            usage_filter=usage_filter,
            today=today,
            live=previous_live,
            ratings=previous_ratings,
        )
    return summary


def usage_totals(
    *,
    period: Period,
    usage_filter: UsageFilter,
    today: date,
    live: DayFigures | None = None,
    ratings: list[tuple[date, str, str, int, int]] | None = None,
) -> UsageTotals:
    """The cards' figures alone (no latencies, tables or charts): for the previous period.
    `live` and `ratings`: one owner's figures and ratings of the period, already read."""
    period_days = [day for day in period.days if day <= today]
    rolled_up: list[date]
    if live is not None and usage_filter.one_owner:
        rolled_up, live_days = [], period_days
    else:
        rolled_up, live_days = _split(period_days, usage_filter, today)
        live = figures_from_messages(live_days, usage_filter, with_owners=not rolled_up)
    rolled = figures_from_rollups(rolled_up, usage_filter, latencies=False)
    totals = UsageTotals(period=period)
    for figures in (*rolled.models, *live.models):
        totals.add(figures)
    if ratings is None:
        ratings = _ratings(period, usage_filter, rolled_up)
    for *_, rating, count in ratings:
        totals.add_feedback(rating, count)
    _, totals.active_owners = _owners(rolled_up, live_days, live.owners, usage_filter, top=0)
    return totals


def _split(
    period_days: list[date], usage_filter: UsageFilter, today: date
) -> tuple[list[date], list[date]]:
    """The period's days that are rolled up (after rolling up what can be), and the rest. One
    owner's figures are read from their replies: roll-ups do not keep each owner's models."""
    if usage_filter.one_owner:
        return [], period_days
    rollups_build(today=today, days=period_days)
    done, stale_ratings = set(), []
    rolled = UsageDay.objects.filter(day__in=period_days, stale=False)
    for day, ratings_stale in rolled.values_list("day", "ratings_stale"):
        done.add(day)
        if ratings_stale:
            stale_ratings.append(day)
    ratings_refresh(stale_ratings)
    return sorted(done), [day for day in period_days if day not in done]


def _ratings(
    period: Period, usage_filter: UsageFilter, rolled_up: list[date] | None = None
) -> list[tuple[date, str, str, int, int]]:
    """Rated replies by day, provider, model and rating: the rolled-up days' from their rating
    roll-ups (`chat.analytics.rollup_ratings`, counted again when a rating changed), the other days'
    counted from the replies through a partial index that holds all those columns. The
    conversations are joined only for a source or kind-of-owner filter, and counted by those,
    checked here rather than in the query: with them in the query, SQLite starts from the
    conversations (1.8 s for anonymous visitors at a million replies) instead of the rated
    replies. One owner's are found through their conversations."""
    counts: Counter[tuple[date, str, str, int]] = Counter()
    rolled = set(rolled_up or ())
    if rolled:
        summed = (
            UsageDayRating.objects.filter(usage_filter.rollup_q(), usage_day__in=sorted(rolled))
            .values_list("usage_day_id", "provider", "model", "rating")
            .annotate(total=Sum("replies"))
        )
        for day, provider, model, rating, total in summed:
            counts[day, provider, model, rating] += int(total)  # numeric on PostgreSQL
        if all(day in rolled for day in period.days if day <= timezone.localdate()):
            return [(*key, count) for key, count in counts.items()]
    rated = Message.objects.filter(feedback__isnull=False, role=Message.Role.ASSISTANT).order_by()
    if usage_filter.provider:
        rated = rated.filter(provider=usage_filter.provider)
    if usage_filter.model:
        rated = rated.filter(model=usage_filter.model)
    columns = ["day", "provider", "model", "feedback"]
    expressions: dict[str, Any] = {}
    if usage_filter.source:
        columns.append("conversation__source")
    if usage_filter.anonymous is not None:
        expressions["anonymous_owner"] = ExpressionWrapper(
            Q(conversation__user__isnull=True), output_field=BooleanField()
        )
    if usage_filter.one_owner:
        # The day is checked here: in the query, SQLite would read the period by the day index.
        rated = rated.filter(usage_filter.one_owner_message_q())
    elif rolled:
        rated = rated.filter(day__in=[day for day in period.days if day not in rolled])
    else:
        rated = rated.filter(day__gte=period.start, day__lte=period.end)
    for row in rated.values(*columns, **expressions).annotate(count=Count("*")):
        if usage_filter.source and row["conversation__source"] != usage_filter.source:
            continue
        anonymous = usage_filter.anonymous
        if anonymous is not None and bool(row["anonymous_owner"]) != anonymous:
            continue
        if not period.start <= row["day"] <= period.end or row["day"] in rolled:
            continue
        counts[row["day"], row["provider"], row["model"], row["feedback"]] += row["count"]
    return [(*key, count) for key, count in counts.items()]


def _live_by_owner(live_figures: list[OwnerFigures]) -> dict[str, OwnerFigures]:
    live: dict[str, OwnerFigures] = {}
    for figures in live_figures:
        live.setdefault(figures.owner, OwnerFigures(figures.owner)).add(figures)
    return live


# "user:<id>" or "visitor:<visitor id>", as `chat.analytics.rollups.owner_key` writes it in
# roll-ups.
REPLY_OWNER = Case(
    When(
        conversation__user__isnull=True,
        then=Concat(Value("visitor:"), "conversation__visitor_id", output_field=CharField()),
    ),
    default=Concat(
        Value("user:"), Cast("conversation__user_id", CharField()), output_field=CharField()
    ),
    output_field=CharField(),
)

# The owner's name compared byte by byte on PostgreSQL too, as SQLite and Python compare it, so a
# tie in cost and replies at the tenth place goes to the same owner on both.
OWNER_RANKING = """
WITH owner_rows (owner, replies, input_tokens, output_tokens, cost_microusd) AS ({rows})
SELECT owner, SUM(replies), SUM(input_tokens), SUM(output_tokens), SUM(cost_microusd),
    COUNT(*) OVER ()
FROM owner_rows GROUP BY owner
ORDER BY SUM(cost_microusd) DESC, SUM(replies) DESC, owner{collation} LIMIT %s
"""
# The count alone (the previous period's card), a third cheaper than ranking.
OWNER_COUNT = """
WITH owner_rows (owner, replies, input_tokens, output_tokens, cost_microusd) AS ({rows})
SELECT COUNT(DISTINCT owner) FROM owner_rows
"""


def _owners(
    rolled_up: list[date],
    live_days: list[date],
    live_figures: list[OwnerFigures],
    usage_filter: UsageFilter,
    *,
    top: int = TOP_COUNT,
) -> tuple[list[OwnerFigures], int]:
    """The `top` owners by cost and how many owners were active, in one query over the rolled-up
    days' per-owner rows and the live days' replies: a period can hold two hundred thousand
    owner-days. Summing per owner, ranking and counting the owners is one pass in the database,
    rather than a top ten, a distinct count and the sums of each owner with replies today."""
    if not rolled_up:
        live = _live_by_owner(live_figures)
        ranked = sorted(live.values(), key=_owner_order)
        return _labelled(ranked[:top]), len(live)
    parts = [
        UsageDayOwner.objects.filter(usage_filter.owner_rollup_q(), usage_day__in=rolled_up)
        .order_by()
        .values_list("owner", "replies", "input_tokens", "output_tokens", "cost_microusd")
    ]
    if live_days:
        parts.append(
            ended_replies(live_days)
            .filter(usage_filter.message_q())
            .annotate(
                reply_owner=REPLY_OWNER,
                one_reply=Value(1),
                tokens_in=Coalesce("input_tokens", 0),
                tokens_out=Coalesce("output_tokens", 0),
                cost=Coalesce("cost_microusd", 0),
            )
            .values_list("reply_owner", "one_reply", "tokens_in", "tokens_out", "cost")
        )
    rows_sql: list[str] = []
    params: list[Any] = []
    for part in parts:
        sql, part_params = part.query.sql_with_params()
        rows_sql.append(sql)
        params.extend(part_params)
    if not top:
        with connection.cursor() as cursor:
            cursor.execute(OWNER_COUNT.format(rows=" UNION ALL ".join(rows_sql)), params)
            return [], int(cursor.fetchone()[0])
    collation = ' COLLATE "C"' if connection.vendor == "postgresql" else ""
    sql = OWNER_RANKING.format(rows=" UNION ALL ".join(rows_sql), collation=collation)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, top])
        rows = cursor.fetchall()
    # int(): PostgreSQL sums bigints as numeric.
    ranked = [
        OwnerFigures(owner, int(replies), int(tokens_in), int(tokens_out), int(cost))
        for owner, replies, tokens_in, tokens_out, cost, _ in rows
    ]
    return _labelled(ranked[:top]), int(rows[0][-1]) if rows else 0


def _owner_order(owner: OwnerFigures) -> tuple[int, int, str]:
    return (-owner.cost_microusd, -owner.replies, owner.owner)


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


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class _NotIndexed(Func):
    """A column as SQLite will not look it up in an index (a unary plus); as is elsewhere."""

    template = "%(expressions)s"

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template="+%(expressions)s", **extra_context)


def _top_conversations(period: Period, usage_filter: UsageFilter) -> list[Conversation]:
    """The costliest conversations active in the period (their whole cost)."""
    if usage_filter.one_owner:
        conversations = Conversation.objects.filter(
            usage_filter.conversation_q(),
            updated_at__gte=_midnight(period.start),
            updated_at__lt=_midnight(period.end + timedelta(days=1)),
        )
    else:
        # Walked by the cost index, stopping at the tenth conversation that passes, rather than
        # sorting every conversation of the period (or of the model, or of anonymous visitors)
        # by cost, which SQLite chooses when it may read those from their own index: 150 ms for
        # 90 days at a million replies, against well under 1 ms.
        conversations = Conversation.objects.alias(
            active_at=_NotIndexed("updated_at"),
            chat_model=_NotIndexed("model"),
            owner_id=_NotIndexed("user_id"),
        ).filter(
            active_at__gte=_midnight(period.start),
            active_at__lt=_midnight(period.end + timedelta(days=1)),
        )
        if usage_filter.provider:
            conversations = conversations.filter(provider=usage_filter.provider)
        if usage_filter.model:
            conversations = conversations.filter(chat_model=usage_filter.model)
        if usage_filter.source:
            conversations = conversations.filter(source=usage_filter.source)
        if usage_filter.anonymous is not None:
            conversations = conversations.filter(owner_id__isnull=usage_filter.anonymous)
    return list(
        conversations.filter(cost_microusd__gt=0)
        .select_related("user")
        .order_by("-cost_microusd")[:TOP_COUNT]
    )
