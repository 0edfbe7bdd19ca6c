"""Reads for the admin's analytics page: what the chat cost, how it performed and how people rated
it, per day, model and owner, over any period, narrowed by provider, model, source and owner, and
compared with the period of the same length before it.

It reads the daily roll-ups (`chat.analytics.rollups`) of the period's finished days, summing the
per-owner rows in the database (`chat.analytics.top`), plus the replies of days not rolled up yet
(today), so a 90-day view of a million replies reads a few thousand rows. One owner's figures come
from their own replies. What it returns, and how the page words and charts it, is
`chat.analytics.report`.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    Q,
    Sum,
)
from django.utils import timezone

from chat.analytics.figures import (
    DayFigures,
    figures_from_messages,
    figures_from_rollups,
)
from chat.analytics.filters import NO_FILTER, UsageFilter
from chat.analytics.report import DayRow, ModelRow, Period, UsageSummary, UsageTotals
from chat.analytics.rollup_ratings import ratings_refresh
from chat.analytics.rollups import rollups_build
from chat.analytics.top import top_conversations, top_owners
from chat.models import Message, UsageDay, UsageDayRating


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
        # `chat.analytics.figures`): once for both periods rather than once each, and their
        # ratings too.
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

    summary.top_owners, summary.active_owners = top_owners(
        rolled_up, live_days, live.owners, usage_filter
    )
    summary.models = sorted(
        by_model.values(), key=lambda m: (-m.cost_microusd, -m.replies, m.label)
    )
    summary.top_conversations = top_conversations(period, usage_filter)
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
    _, totals.active_owners = top_owners(rolled_up, live_days, live.owners, usage_filter, top=0)
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
