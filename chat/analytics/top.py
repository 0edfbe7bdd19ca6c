"""Who and what cost most in a period: the top owners (and how many were active), ranked in the
database over the roll-ups' per-owner rows and the live days' replies, and the costliest
conversations.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Func,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone

from chat.analytics.figures import (
    OwnerFigures,
    ended_replies,
)
from chat.analytics.filters import UsageFilter
from chat.analytics.report import Period
from chat.models import Conversation, UsageDayOwner

TOP_COUNT = 10


def _live_by_owner(live_figures: list[OwnerFigures]) -> dict[str, OwnerFigures]:
    live: dict[str, OwnerFigures] = {}
    for figures in live_figures:
        live.setdefault(figures.owner, OwnerFigures(figures.owner)).add(figures)
    return live


# "user:<id>" or "visitor:<visitor id>", as `chat.analytics.figures.owner_key` writes it in
# roll-ups.
REPLY_OWNER = Case(
    # The person who asked, in a shared conversation not always its owner.
    When(
        author__isnull=False,
        then=Concat(Value("user:"), Cast("author_id", CharField()), output_field=CharField()),
    ),
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


def top_owners(
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


def top_conversations(period: Period, usage_filter: UsageFilter) -> list[Conversation]:
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
