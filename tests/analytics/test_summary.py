from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.analytics import summary as analytics
from chat.analytics.histograms import Histogram, bucket_of, bucket_value
from chat.analytics.report import Period
from chat.analytics.summary import usage_summary
from chat.models import Conversation, Message, UsageDay
from chat.replies import reaper, workers

pytestmark = pytest.mark.django_db

UTC = ZoneInfo("UTC")
# The moment the `history` fixture (tests/analytics/conftest.py) is built at, and its day.
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 15)


def about(*values: float) -> tuple[object, ...]:
    """Percentiles are exact to within 1 % (histogram buckets are 2 % wide)."""
    return tuple(pytest.approx(value, rel=0.01) for value in values)


@time_machine.travel(NOW, tick=False)
def test_the_summary_matches_the_hand_computed_figures(history):
    summary = usage_summary(period=Period.last(7))

    assert (summary.start, summary.end) == (date(2026, 3, 9), TODAY)
    assert summary.replies == 6
    assert summary.cost_microusd == 15_500 and summary.unpriced_replies == 1
    assert (summary.input_tokens, summary.output_tokens, summary.cached_input_tokens) == (
        3810,
        765,
        100,
    )
    assert summary.active_owners == 2
    assert summary.error_rate == pytest.approx(1 / 6)
    assert summary.stop_rate == pytest.approx(1 / 6)
    assert summary.estimated_share == pytest.approx(2 / 6)

    by_day = {row.day: row for row in summary.days}
    assert len(summary.days) == 7
    assert (by_day[TODAY].ttft_p50_ms, by_day[TODAY].ttft_p95_ms) == about(120, 300)
    assert (by_day[date(2026, 3, 14)].ttft_p50_ms, by_day[date(2026, 3, 14)].ttft_p95_ms) == (
        about(450, 800)
    )
    assert by_day[date(2026, 3, 12)].replies == 0 and by_day[date(2026, 3, 12)].ttft_p50_ms is None
    assert dict(by_day[date(2026, 3, 14)].replies_by_reason) == {
        "provider_error": 1,
        "completed": 1,
    }
    assert dict(by_day[date(2026, 3, 10)].cost_by_model) == {"openai:gpt-4o": 9000, "demo:demo": 0}

    gpt, demo, claude = summary.models
    assert (gpt.label, gpt.replies, gpt.cost_microusd, gpt.cost_per_reply_microusd) == (
        "openai:gpt-4o",
        3,
        15_500,
        5_167,
    )
    assert (gpt.ttft_p50_ms, gpt.ttft_p95_ms, gpt.median_tokens_per_second) == about(800, 1000, 40)
    assert (demo.label, demo.replies, demo.priced_cost_microusd) == ("demo:demo", 2, 0)
    assert demo.ttft_p50_ms == pytest.approx(120, rel=0.01)
    assert (claude.label, claude.priced_cost_microusd, claude.cost_per_reply_microusd) == (
        "anthropic:claude-x",
        None,  # "no price", not free
        None,
    )

    assert [(o.label, o.replies, o.cost_microusd) for o in summary.top_owners] == [
        ("anonymous · v1000000", 3, 9000),
        ("ada", 3, 6500),
    ]
    assert [c.title for c in summary.top_conversations] == ["Ada's", "Visitor's"]


@time_machine.travel(NOW, tick=False)
def test_rolled_up_days_give_the_same_figures_as_the_messages(history, monkeypatch, figures):
    rolled_up = figures(usage_summary(period=Period.last(30)))
    # The 30 days and the 30 before them (the cards compare with those).
    assert set(UsageDay.objects.values_list("day", flat=True)) == {
        TODAY - timedelta(days=offset) for offset in range(1, 60)
    }

    UsageDay.objects.all().delete()
    monkeypatch.setattr(analytics, "rollups_build", lambda **kwargs: 0)
    live = figures(usage_summary(period=Period.last(30)))

    assert rolled_up == live
    assert rolled_up["cards"][1] == 115_500  # 8 March is inside 30 days


def test_a_day_is_rolled_up_only_once_no_reply_of_it_can_still_run(history):
    with time_machine.travel(datetime(2026, 3, 15, 0, 3, tzinfo=UTC), tick=False):
        usage_summary(period=Period.last(7))
        assert not UsageDay.objects.filter(day=date(2026, 3, 14)).exists()
    with time_machine.travel(datetime(2026, 3, 15, 0, 10, tzinfo=UTC), tick=False):
        usage_summary(period=Period.last(7))
        assert UsageDay.objects.filter(day=date(2026, 3, 14)).exists()


@time_machine.travel(NOW, tick=False)
def test_a_late_ending_reply_of_a_rolled_up_day_is_counted(history, settings):
    usage_summary(period=Period.last(7))
    conversation = history["ada_chat"]
    late = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        provider="openai",
        model="gpt-4o",
        content="cut short",
        day=date(2026, 3, 13),
        heartbeat_at=timezone.now() - timedelta(hours=30),
    )

    assert reaper.reply_reap_stale(message_ids=[late.pk]) == 1

    assert UsageDay.objects.get(day=date(2026, 3, 13)).stale
    summary = usage_summary(period=Period.last(7))
    assert summary.replies == 7
    assert dict(summary.days[4].replies_by_reason) == {"interrupted": 1}


def test_a_day_with_a_reply_still_streaming_is_not_rolled_up(history):
    with time_machine.travel(NOW, tick=False):
        Message.objects.create(
            conversation=history["ada_chat"], role="assistant", status="streaming",
            provider="openai", model="gpt-4o", day=date(2026, 3, 12),
        )  # fmt: skip
        usage_summary(period=Period.last(7))

    assert not UsageDay.objects.filter(day=date(2026, 3, 12)).exists()
    assert UsageDay.objects.filter(day=date(2026, 3, 11), stale=False).exists()


@pytest.mark.parametrize("value", [0.37, 1, 7, 42.5, 99, 100, 101, 999, 1234, 98_765, 300_000])
def test_histogram_buckets_keep_values_within_one_percent(value):
    assert bucket_value(bucket_of(value)) == pytest.approx(value, rel=0.01)
    assert bucket_value(bucket_of(0)) == 0


def test_percentiles_are_nearest_rank():
    histogram = Histogram.of([100] * 5 + [200] * 3 + [1000] * 2)
    assert histogram.percentile(50) == pytest.approx(100, rel=0.01)
    assert histogram.percentile(51) == pytest.approx(200, rel=0.01)
    assert histogram.percentile(80) == pytest.approx(200, rel=0.01)
    assert histogram.percentile(95) == pytest.approx(1000, rel=0.01)
    assert Histogram().percentile(50) is None
    assert Histogram.of([0, 0, 0, 5]).percentile(50) == 0


# --- The admin page ----------------------------------------------------------------------------

URL = "/admin/chat/usagereport/"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("sam", password="pw-for-tests-123", is_staff=True)
    client.force_login(user)
    return user


@time_machine.travel(NOW, tick=True)
def test_staff_with_the_permission_see_the_analytics(client, staff, history):
    assert client.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_usagereport"))

    page = client.get(URL + "?days=7").content.decode()

    assert 'data-figure="cost">$0.02<' in page
    assert 'data-figure="replies">6<' in page
    assert 'data-figure="error-rate">16.7 %<' in page
    assert "Cost leaves out 1 reply with no price" in page
    assert 'id="usage-chart-data"' in page and "chart.umd.min.js" in page
    # A top user links to their own page, for the same period.
    assert f"/admin/chat/usagereport/?owner=user%3A{history['ada'].pk}&amp;days=7" in page
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/chat/usagereport/"' in index


def test_non_staff_are_sent_to_the_admin_login(client):
    assert client.get(URL)["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("nope"))
    assert client.get(URL)["Location"].startswith("/admin/login/")
    assert client.get(URL + "daily.csv")["Location"].startswith("/admin/login/")


@time_machine.travel(NOW, tick=True)
def test_the_daily_table_downloads_as_csv(admin_client, history):
    response = admin_client.get(URL + "daily.csv?days=7")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="usage-daily-2026-03-09-to-2026-03-15.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["day"] for row in rows] == [f"2026-03-{day:02}" for day in range(9, 16)]
    assert rows[-1] == {
        "day": "2026-03-15", "replies": "2", "input_tokens": "1100", "output_tokens": "250",
        "cached_input_tokens": "100", "cost_usd": "0.005000", "unpriced_replies": "0",
        "estimated_replies": "1", "errors": "0", "stops": "1", "budget_stops": "0",
        "ttft_p50_ms": "121", "ttft_p95_ms": "300",  # 120 and 300 to within 1 %
        "ttft_p99_ms": "300", "duration_p50_ms": "", "duration_p95_ms": "",
        "duration_p99_ms": "", "rated_good": "0", "rated_bad": "0",
    }  # fmt: skip
    assert rows[5]["errors"] == "1" and rows[5]["unpriced_replies"] == "1"


@time_machine.travel(NOW, tick=True)
def test_an_unknown_period_falls_back_to_30_days_with_a_message(admin_client, history):
    page = admin_client.get(URL + "?days=365").content.decode()
    assert "is not a period this page offers" in page
    assert 'aria-current="page">30 days' in page


@time_machine.travel(NOW, tick=True)
def test_the_page_reads_a_fixed_number_of_queries_however_many_replies(
    admin_client, history, reply
):
    def queries() -> int:
        admin_client.get(URL + "?days=90")  # builds any missing roll-ups
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(URL + "?days=90").status_code == 200
        return len(captured)

    before = queries()
    conversation = history["visitor_chat"]
    for offset in range(40):
        reply(conversation, TODAY, cost=10, ttft=100 + offset)
    assert queries() == before
    assert usage_summary(period=Period.last(90)).replies == 47


@time_machine.travel(NOW, tick=True)
def test_rollup_usage_command_builds_and_rebuilds(history):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("rollup_usage", stdout=out)
    assert out.getvalue().startswith("Rolled up 7 days")  # 8 to 14 March
    call_command("rollup_usage", stdout=out)
    assert "Rolled up 0 days" in out.getvalue()
    call_command("rollup_usage", "--rebuild", stdout=out)
    assert UsageDay.objects.count() == 7


@time_machine.travel(NOW, tick=False)
def test_workers_roll_up_yesterday_in_the_background(history):
    workers._rollup_yesterday()

    assert list(UsageDay.objects.values_list("day", flat=True)) == [date(2026, 3, 14)]


def test_conversation_totals_count_each_ended_reason_once(history):
    conversation = Conversation.objects.get(pk=history["visitor_chat"].pk)

    assert conversation.ended_reasons == "completed,stopped"
    assert (conversation.message_count, conversation.input_tokens) == (7, 2110)
