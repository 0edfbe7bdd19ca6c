"""Ratings in the daily roll-ups: rated replies counted per day, provider, model, source, kind of
owner and rating (`UsageDayRating`), so the analytics page reads a few rows per day instead of
every rated reply of the period joined to its conversation (36,000 replies for 90 days at a
million replies: 0.2–0.3 s on both databases with a source or owner filter).

A rating can change any time after its day was rolled up: that marks the day's ratings stale
(`rollup_ratings_invalidate`, in the same transaction as the change), and the next view counts
that day's ratings again — only those, from their index — before reading them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db import transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone

from chat.models import Message, UsageDay, UsageDayRating


def ratings_from_messages(days: Iterable[date]) -> list[dict[str, Any]]:
    """The rated replies of `days` by day, provider, model, source, kind of owner and rating."""
    rated = Message.objects.filter(
        feedback__isnull=False, role=Message.Role.ASSISTANT, day__in=list(days)
    ).order_by()
    anonymous = ExpressionWrapper(Q(conversation__user__isnull=True), output_field=BooleanField())
    grouped = (
        rated.values("day", "provider", "model", "conversation__source", "feedback")
        .annotate(anonymous_owner=anonymous)
        .annotate(replies=Count("*"))
    )
    return [dict(row) for row in grouped]


def ratings_rows(usage_day: UsageDay) -> list[UsageDayRating]:
    return [
        UsageDayRating(
            usage_day=usage_day,
            provider=row["provider"],
            model=row["model"],
            source=row["conversation__source"],
            anonymous=bool(row["anonymous_owner"]),
            rating=row["feedback"],
            replies=row["replies"],
        )
        for row in ratings_from_messages([usage_day.day])
    ]


def ratings_refresh(days: Iterable[date]) -> None:
    """Count again the ratings of `days` (rolled-up days whose ratings are stale). The flag is
    cleared before the count, in one transaction: a rating changed meanwhile marks the day
    stale again (its upsert waits for this transaction on PostgreSQL), so none is missed."""
    for day in days:
        with transaction.atomic():
            if not UsageDay.objects.filter(day=day, stale=False, ratings_stale=True).update(
                ratings_stale=False
            ):
                continue  # another view counted them, or the whole day is being rebuilt
            usage_day = UsageDay(day=day)
            UsageDayRating.objects.filter(usage_day=usage_day).delete()
            UsageDayRating.objects.bulk_create(ratings_rows(usage_day))


def rollup_ratings_invalidate(day: date) -> None:
    """A rating of a reply of `day` changed: if the day is rolled up, its ratings are counted
    again by the next view. An upsert, as `chat.analytics.rollups.rollup_invalidate`; a day not
    rolled up yet is inserted stale (the next view rolls it up, as it would)."""
    if day < timezone.localdate():
        UsageDay.objects.bulk_create(
            [UsageDay(day=day, stale=True, ratings_stale=True)],
            update_conflicts=True,
            unique_fields=["day"],
            update_fields=["ratings_stale"],
        )
