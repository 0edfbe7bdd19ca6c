"""What the daily roll-ups store and which of their rows a page reads: latency histograms per
source and kind of owner and merged over them, a stale day rebuilt, the per-owner rows summed
with today's replies into the top owners and the count of active ones, and ratings counted again
when one changes after its day was rolled up."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.analytics import summary as analytics
from chat.analytics.figures import owner_key
from chat.analytics.filters import UsageFilter
from chat.analytics.histograms import Histogram
from chat.analytics.report import Period
from chat.analytics.rollups import rollup_invalidate
from chat.analytics.summary import usage_summary
from chat.conversations.feedback import message_feedback_set
from chat.conversations.reads import Visitor
from chat.models import (
    Conversation,
    Message,
    UsageDay,
    UsageDayLatency,
    UsageDayLatencyTotal,
    UsageDayModel,
    UsageDayRating,
)

pytestmark = pytest.mark.django_db

# The moment the `history` fixture (tests/analytics/conftest.py) is built at, its day, its week.
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
TODAY = date(2026, 3, 15)
WEEK = Period(date(2026, 3, 9), TODAY)

HISTOGRAMS = ("ttft_histogram", "duration_histogram", "speed_histogram")


@time_machine.travel(NOW, tick=False)
def test_merged_latency_rows_are_the_sums_of_the_rows_per_source_and_owner(rated, week):
    week()  # rolls up 9–14 March
    merged: dict[tuple[object, ...], dict[str, Histogram]] = {}
    for row in UsageDayLatency.objects.all():
        into = merged.setdefault(
            (row.usage_day_id, row.provider, row.model), {name: Histogram() for name in HISTOGRAMS}
        )
        for name in HISTOGRAMS:
            into[name].merge(Histogram.from_json(getattr(row, name)))

    totals = {
        (row.usage_day_id, row.provider, row.model): {
            name: Histogram.from_json(getattr(row, name)) for name in HISTOGRAMS
        }
        for row in UsageDayLatencyTotal.objects.all()
    }
    assert totals == merged
    # 14 March, gpt-4o: Ada's page reply (800 ms) only; gpt-4o-mini: her API reply (500 ms).
    fourteenth = date(2026, 3, 14)
    assert set(totals) >= {
        (fourteenth, "openai", "gpt-4o"),
        (fourteenth, "openai", "gpt-4o-mini"),
        (fourteenth, "anthropic", "claude-x"),
    }
    assert totals[fourteenth, "openai", "gpt-4o"]["ttft_histogram"] == Histogram.of([800])
    assert totals[fourteenth, "openai", "gpt-4o"]["duration_histogram"] == Histogram.of([4000])
    # 10 March's two replies were a visitor's on the page: one row each way.
    tenth = UsageDayLatency.objects.filter(usage_day=date(2026, 3, 10))
    assert {(row.source, row.anonymous) for row in tenth} == {("page", True)}


@pytest.mark.parametrize(
    ("filters", "reads"),
    [
        ({}, "chat_usagedaylatencytotal"),
        ({"model": "gpt-4o"}, "chat_usagedaylatencytotal"),
        ({"provider": "openai"}, "chat_usagedaylatencytotal"),
        ({"source": "api"}, "chat_usagedaylatency"),
        ({"owner": "anonymous"}, "chat_usagedaylatency"),
        ({"owner": "signed-in", "model": "gpt-4o"}, "chat_usagedaylatency"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_pages_read_merged_latencies_unless_filtered_by_source_or_owner(
    rated, filters, reads, figures, week
):
    week(**filters)  # rolls up
    with CaptureQueriesContext(connection) as captured:
        rolled_up = figures(week(**filters))
    tables = {
        table
        for query in captured.captured_queries
        for table in ("chat_usagedaylatencytotal", "chat_usagedaylatency")
        if f'FROM "{table}"' in query["sql"]
    }
    assert tables == {reads}

    # And they give what the replies themselves give.
    UsageDay.objects.all().delete()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analytics, "rollups_build", lambda **kwargs: 0)
        assert figures(week(**filters)) == rolled_up


@time_machine.travel(NOW, tick=False)
def test_a_stale_day_is_rebuilt_with_its_merged_latencies(rated, reply, week):
    fourteenth = date(2026, 3, 14)
    assert next(row for row in week().days if row.day == fourteenth).ttft_p99_ms == (
        pytest.approx(800, rel=0.01)
    )
    # A reply of 14 March that ended late (found after downtime), slower than the others.
    reply(rated["ada_chat"], fourteenth, cost=10, ttft=9000)
    rollup_invalidate(fourteenth)
    assert UsageDay.objects.get(day=fourteenth).stale

    summary = week()
    assert not UsageDay.objects.get(day=fourteenth).stale
    day = next(row for row in summary.days if row.day == fourteenth)
    assert day.ttft_p99_ms == pytest.approx(9000, rel=0.01)
    total = UsageDayLatencyTotal.objects.get(usage_day=fourteenth, model="gpt-4o")
    assert Histogram.from_json(total.ttft_histogram) == Histogram.of([800, 9000])
    assert UsageDayLatencyTotal.objects.filter(usage_day=fourteenth).count() == 3


@pytest.fixture
def many_owners(db, reply):
    """Twelve users who spent on 13 or 14 March, four of them tied at $0.0004 with one reply
    each; one who spent little then and most today; one who did both, two replies at the same
    cost as the tie; and a visitor seen only today (cost in micro-dollars)."""
    with time_machine.travel(NOW, tick=False):
        spends = {f"user-{i:02d}": [(date(2026, 3, 14), cost)] for i, cost in enumerate(
            [100, 200, 300, 400, 400, 400, 400, 800, 900, 1000, 1100, 1200]
        )}  # fmt: skip
        spends["late"] = [(date(2026, 3, 13), 50), (TODAY, 5000)]
        spends["both"] = [(date(2026, 3, 9), 150), (TODAY, 250)]
        for name, replies in spends.items():
            user = User.objects.create_user(name)
            chat = Conversation.objects.create(user=user, provider="openai", model="gpt-4o")
            for day, cost in replies:
                reply(chat, day, cost=cost)
        visitor = Conversation.objects.create(
            visitor_id="v-live" + "0" * 26, provider="openai", model="gpt-4o"
        )
        reply(visitor, TODAY, cost=1)


def _ranked_by_hand(period: Period) -> list[tuple[str, int, int]]:
    owners: dict[str, list[int]] = {}
    for reply_ in Message.objects.filter(
        role="assistant", day__gte=period.start, day__lte=period.end
    ).select_related("conversation"):
        key = owner_key(reply_.conversation.user_id, reply_.conversation.visitor_id)
        sums = owners.setdefault(key, [0, 0])
        sums[0] += reply_.cost_microusd or 0
        sums[1] += 1
    ranked = sorted(owners.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    return [(owner, cost, replies) for owner, (cost, replies) in ranked]


@time_machine.travel(NOW, tick=False)
def test_top_owners_sum_rolled_up_days_with_today_and_count_each_owner_once(many_owners):
    summary = usage_summary(period=WEEK)
    assert UsageDay.objects.filter(day=date(2026, 3, 14), stale=False).exists()

    top = [(owner.owner, owner.cost_microusd, owner.replies) for owner in summary.top_owners]
    by_hand = _ranked_by_hand(WEEK)
    assert top == by_hand[:10]
    names = [owner.label for owner in summary.top_owners]
    # "late" spent 50 on a rolled-up day and 5,000 today; "both" 150 + 250 = 400 in two replies,
    # ahead of the four tied at 400 in one; of those, the lowest owner names come first.
    assert names[:2] == ["late", "user-11"]
    assert names.index("both") == names.index("user-07") + 1
    assert sum(1 for name in names if name in {"user-03", "user-04", "user-05", "user-06"}) == 3
    # 14 users (12 + "late" + "both") and the visitor seen only today.
    assert summary.active_owners == 15 == len(by_hand)

    signed_in = usage_summary(period=WEEK, usage_filter=UsageFilter(owner="signed-in"))
    assert signed_in.active_owners == 14
    anonymous = usage_summary(period=WEEK, usage_filter=UsageFilter(owner="anonymous"))
    assert [o.label for o in anonymous.top_owners] == ["anonymous · v-live00"]
    assert anonymous.active_owners == 1


@time_machine.travel(NOW, tick=False)
def test_the_previous_period_counts_the_owners_of_its_days(many_owners):
    summary = usage_summary(period=Period(date(2026, 3, 14), TODAY))

    # 12–13 March: "late" alone.
    assert summary.previous.period == Period(date(2026, 3, 12), date(2026, 3, 13))
    assert summary.previous.active_owners == 1
    # 14–15 March: the twelve, "late", "both" and the visitor.
    assert summary.active_owners == 15


@time_machine.travel(NOW, tick=False)
def test_rating_rows_count_each_rolled_up_days_rated_replies(rated, week):
    week()  # rolls up 9–14 March
    rows = {
        (row.usage_day_id, row.provider, row.model, row.source, row.anonymous, row.rating): (
            row.replies
        )
        for row in UsageDayRating.objects.all()
    }
    # 14 March: Ada's claude-x reply, rated good; 10 March: the visitor's gpt-4o one, bad. The
    # good rating of 15 March is today's, not rolled up.
    assert rows == {
        (date(2026, 3, 14), "anthropic", "claude-x", "page", False, 1): 1,
        (date(2026, 3, 10), "openai", "gpt-4o", "page", True, -1): 1,
    }


@time_machine.travel(NOW, tick=False)
def test_a_rating_changed_after_its_day_was_rolled_up_recounts_that_days_ratings_only(rated, week):
    week()
    tenth = date(2026, 3, 10)
    built_at = UsageDay.objects.get(day=tenth).built_at
    models_before = list(UsageDayModel.objects.filter(usage_day=tenth).values_list("pk", flat=True))
    reply_10 = Message.objects.get(day=tenth, role="assistant", superseded=False)
    visitor = Visitor(user=None, visitor_id=rated["visitor_chat"].visitor_id)

    message_feedback_set(visitor=visitor, message_id=reply_10.pk, rating="up")

    day = UsageDay.objects.get(day=tenth)
    assert day.ratings_stale and not day.stale
    summary = week()
    assert (summary.feedback_up, summary.feedback_down) == (3, 0)
    assert next(row for row in summary.days if row.day == tenth).feedback_up == 1
    day = UsageDay.objects.get(day=tenth)
    assert not day.ratings_stale and day.built_at == built_at
    assert list(UsageDayModel.objects.filter(usage_day=tenth).values_list("pk", flat=True)) == (
        models_before
    )
    assert list(
        UsageDayRating.objects.filter(usage_day=tenth).values_list("rating", "replies")
    ) == [(1, 1)]
    assert week(owner="anonymous").satisfaction == 1.0

    message_feedback_set(visitor=visitor, message_id=reply_10.pk, rating="none")
    assert week().ratings == 2
    assert not UsageDayRating.objects.filter(usage_day=tenth).exists()


@time_machine.travel(NOW, tick=False)
def test_a_rating_of_a_day_not_rolled_up_yet_leaves_it_to_be_rolled_up(rated):
    eighth = date(2026, 3, 8)
    reply_8 = Message.objects.get(day=eighth, role="assistant")
    ada = Visitor(user=rated["ada"], visitor_id="")

    message_feedback_set(visitor=ada, message_id=reply_8.pk, rating="down")

    assert UsageDay.objects.get(day=eighth).stale
    summary = usage_summary(period=Period(eighth, eighth))
    assert UsageDay.objects.filter(day=eighth, stale=False, ratings_stale=False).exists()
    assert (summary.replies, summary.feedback_down) == (1, 1)
    assert list(UsageDayRating.objects.filter(usage_day=eighth).values_list("model", "rating")) == [
        ("gpt-4o", -1)
    ]
