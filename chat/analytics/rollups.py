"""Daily roll-ups of usage: what the analytics page reads instead of the message table.

A day is rolled up once it is over (and no reply of it still streams) into per-model, per-model
latency and per-owner rows (`UsageDay*`), its figures read from its replies
(`chat.analytics.figures`), which the `day` column and its index keep cheap; days not rolled up
yet are read the same way. Latencies are kept as histograms (`chat.analytics.histograms`), so
percentiles merge across days and models exact to within 1 %: per source and kind of owner for
the pages filtered by those, and merged over them (`UsageDayLatencyTotal`) for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from chat.analytics.figures import figures_from_messages, latency_totals
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
