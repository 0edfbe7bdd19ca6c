"""The analytics page over any period and narrowed by provider, model, source and owner: every
figure against hand-computed ones, roll-ups against the messages, the comparison with the
previous period, satisfaction, latency percentiles, and the period's validation."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from chat.analytics import summary as analytics
from chat.analytics.filters import UsageFilter
from chat.analytics.report import Period
from chat.analytics.summary import usage_summary
from chat.conversations.feedback import message_feedback_set
from chat.conversations.reads import Visitor
from chat.models import Message, UsageDay

pytestmark = pytest.mark.django_db

# The moment the `history` fixture (tests/analytics/conftest.py) is built at, its day, its week.
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
TODAY = date(2026, 3, 15)
WEEK = Period(date(2026, 3, 9), TODAY)
URL = "/admin/chat/usagereport/"


@pytest.mark.parametrize(
    ("filters", "replies", "cost", "errors", "active", "top"),
    [
        ({}, 7, 17_500, 1, 2, ["anonymous · v1000000", "ada"]),
        ({"model": "gpt-4o"}, 3, 15_500, 1, 2, ["anonymous · v1000000", "ada"]),
        ({"provider": "openai"}, 4, 17_500, 1, 2, ["anonymous · v1000000", "ada"]),
        ({"source": "api"}, 1, 2_000, 0, 1, ["ada"]),
        ({"source": "page"}, 6, 15_500, 1, 2, ["anonymous · v1000000", "ada"]),
        ({"owner": "anonymous"}, 3, 9_000, 0, 1, ["anonymous · v1000000"]),
        ({"owner": "signed-in"}, 4, 8_500, 1, 1, ["ada"]),
        ({"owner": "anonymous", "model": "gpt-4o"}, 1, 9_000, 0, 1, ["anonymous · v1000000"]),
        ({"model": "nothing-like-it"}, 0, 0, 0, 0, []),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_filters_narrow_every_figure(rated, filters, replies, cost, errors, active, top, week):
    summary = week(**filters)

    assert (summary.replies, summary.cost_microusd, summary.errors) == (replies, cost, errors)
    assert summary.active_owners == active
    assert [owner.label for owner in summary.top_owners] == top
    assert sum(row.replies for row in summary.days) == replies
    assert sum(model.replies for model in summary.models) == replies
    if "model" in filters:
        assert {model.model for model in summary.models} <= {filters["model"]}


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        ({}, ["Ada's", "Visitor's", "Ada's API"]),
        ({"model": "gpt-4o"}, ["Ada's"]),
        ({"provider": "openai"}, ["Ada's", "Ada's API"]),
        ({"source": "api"}, ["Ada's API"]),
        ({"owner": "anonymous"}, ["Visitor's"]),
        ({"owner": "signed-in"}, ["Ada's", "Ada's API"]),
        ({"owner": "signed-in", "source": "page"}, ["Ada's"]),
        ({"model": "nothing-like-it"}, []),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_the_costliest_conversations_follow_the_filters(rated, filters, titles, week):
    assert [c.title for c in week(**filters).top_conversations] == titles
    # Not active in the period: none.
    earlier = usage_summary(
        period=Period(date(2026, 3, 1), date(2026, 3, 7)), usage_filter=UsageFilter(**filters)
    )
    assert earlier.top_conversations == []


@time_machine.travel(NOW, tick=False)
def test_one_owner_is_read_from_their_own_replies(rated, week):
    ada = rated["ada"]
    summary = week(owner=f"user:{ada.pk}")

    assert (summary.replies, summary.cost_microusd, summary.unpriced_replies) == (4, 8_500, 1)
    assert summary.active_owners == 1
    assert [c.title for c in summary.top_conversations] == ["Ada's", "Ada's API"]
    assert {m.label: m.replies for m in summary.models} == {
        "openai:gpt-4o": 2,
        "anthropic:claude-x": 1,
        "openai:gpt-4o-mini": 1,
    }
    visitor = week(owner=f"visitor:{rated['visitor_chat'].visitor_id}")
    assert (visitor.replies, visitor.cost_microusd) == (3, 9_000)
    assert week(owner="user:999999").replies == 0


@time_machine.travel(NOW, tick=False)
def test_one_owners_page_compares_with_their_own_previous_period(rated, week):
    ada = week(owner=f"user:{rated['ada'].pk}")

    # 2–8 March: Ada's one gpt-4o reply on 8 March, $0.10; this week $0.0085 in four.
    assert ada.previous.period == Period(date(2026, 3, 2), date(2026, 3, 8))
    previous = ada.previous
    assert (previous.replies, previous.cost_microusd, previous.active_owners) == (1, 100_000, 1)
    assert ada.changes()["cost"].text == "−91.5 %"
    assert ada.changes()["replies"].text == "+300.0 %"
    visitor = week(owner=f"visitor:{rated['visitor_chat'].visitor_id}")
    assert (visitor.previous.replies, visitor.previous.active_owners) == (0, 0)
    assert visitor.replies == 3


@pytest.mark.parametrize(
    "filters",
    [{}, {"model": "gpt-4o"}, {"source": "api"}, {"owner": "anonymous"}, {"provider": "openai"}],
)
@time_machine.travel(NOW, tick=False)
def test_rolled_up_days_give_the_same_filtered_figures_as_the_messages(
    rated, monkeypatch, filters, figures, week
):
    rolled_up = figures(week(**filters))
    assert UsageDay.objects.filter(day=date(2026, 3, 14)).exists()

    UsageDay.objects.all().delete()
    monkeypatch.setattr(analytics, "rollups_build", lambda **kwargs: 0)
    assert figures(week(**filters)) == rolled_up


@time_machine.travel(NOW, tick=False)
def test_cards_compare_with_the_previous_period_of_the_same_length(rated, week):
    summary = week()

    # 2–8 March: Ada's one gpt-4o reply on 8 March, $0.10.
    assert summary.previous.period == Period(date(2026, 3, 2), date(2026, 3, 8))
    assert (summary.previous.replies, summary.previous.cost_microusd) == (1, 100_000)
    changes = summary.changes()
    assert changes["cost"].text == "−82.5 %" and changes["cost"].direction == "down"
    assert changes["replies"].text == "+600.0 %"
    assert changes["active_users"].text == "+100.0 %"
    assert changes["error_rate"].text == "+14.3 pts"  # 1 of 7 against 0 of 1
    assert changes["error_rate"].meaning == "bad"
    assert changes["satisfaction"] is None  # nothing was rated before

    custom = usage_summary(period=Period(date(2026, 3, 10), date(2026, 3, 14)))
    assert custom.replies == 5 and custom.previous.period.end == date(2026, 3, 9)
    assert custom.previous.replies == 1


@time_machine.travel(NOW, tick=False)
def test_satisfaction_per_model_and_per_day(rated, week):
    summary = week()

    assert (summary.feedback_up, summary.feedback_down) == (2, 1)
    assert summary.satisfaction == pytest.approx(2 / 3)
    by_model = {model.label: model.satisfaction for model in summary.models}
    assert by_model["openai:gpt-4o"] == 0.5
    assert by_model["anthropic:claude-x"] == 1.0
    assert by_model["demo:demo"] is None
    by_day = {row.day.day: (row.feedback_up, row.feedback_down) for row in summary.days}
    assert by_day[15] == (1, 0) and by_day[14] == (1, 0) and by_day[10] == (0, 1)
    assert week(owner="anonymous").satisfaction == 0.0
    assert week(source="api").ratings == 0
    # Taking a rating back takes it out of the figures.
    ada = Visitor(user=rated["ada"], visitor_id="")
    claude = Message.objects.get(model="claude-x")
    message_feedback_set(visitor=ada, message_id=claude.pk, rating="none")
    assert week().feedback_up == 1


@pytest.mark.parametrize(
    ("filters", "ratings"),
    [
        ({}, (2, 1)),
        ({"model": "gpt-4o"}, (1, 1)),
        ({"provider": "anthropic"}, (1, 0)),
        ({"source": "page"}, (2, 1)),
        ({"source": "api"}, (0, 0)),
        ({"owner": "signed-in"}, (2, 0)),
        ({"owner": "anonymous"}, (0, 1)),
        ({"owner": "anonymous", "source": "page", "model": "gpt-4o"}, (0, 1)),
        ({"owner": "ada"}, (2, 0)),
        ({"owner": "v1"}, (0, 1)),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_ratings_are_counted_with_every_filter(rated, filters, ratings, week):
    owners = {
        "ada": f"user:{rated['ada'].pk}",
        "v1": f"visitor:{rated['visitor_chat'].visitor_id}",
    }
    if "owner" in filters:
        filters = {**filters, "owner": owners.get(filters["owner"], filters["owner"])}
    summary = week(**filters)

    assert (summary.feedback_up, summary.feedback_down) == ratings
    assert sum(row.feedback_up for row in summary.days) == ratings[0]
    assert sum(model.feedback_down for model in summary.models) == ratings[1]
    # Before the period: nothing rated.
    assert summary.previous.ratings == 0
    assert usage_summary(
        period=Period(date(2026, 3, 11), TODAY), usage_filter=UsageFilter(**filters)
    ).ratings == sum(ratings) - (1 if ratings[1] else 0)  # 10 March's bad rating is left out


@time_machine.travel(NOW, tick=False)
def test_latency_percentiles_of_first_token_and_duration_per_model_and_day(rated, week):
    summary = week()
    gpt_4o = next(model for model in summary.models if model.label == "openai:gpt-4o")

    # Nearest rank over [300, 800, 1000] ms and [2000, 4000, 10000] ms.
    assert (gpt_4o.ttft_p50_ms, gpt_4o.ttft_p95_ms, gpt_4o.ttft_p99_ms) == pytest.approx(
        (800, 1000, 1000), rel=0.01
    )
    assert (
        gpt_4o.duration_p50_ms,
        gpt_4o.duration_p95_ms,
        gpt_4o.duration_p99_ms,
    ) == pytest.approx((4000, 10000, 10000), rel=0.01)
    fourteenth = next(row for row in summary.days if row.day == date(2026, 3, 14))
    # 14 March: ttft 800, 450, 500; one duration, 4000.
    assert fourteenth.ttft_p50_ms == pytest.approx(500, rel=0.01)
    assert fourteenth.ttft_p99_ms == pytest.approx(800, rel=0.01)
    assert fourteenth.duration_p50_ms == pytest.approx(4000, rel=0.01)
    chart = summary.chart_data()
    assert chart["duration"]["p99"][-1] == pytest.approx(2000, rel=0.01)  # 15 March


@time_machine.travel(NOW, tick=False)
def test_speed_distribution_per_model_in_shares_of_its_replies(rated, week):
    speed = week().chart_data()["speed"]

    # The fastest model's p99 is 80 tok/s: twelve bins 10 wide, the last open-ended.
    assert speed["bins"][0] == "0–10" and speed["bins"][-1] == "≥ 110"
    series = {model["label"]: model["data"] for model in speed["models"]}
    assert set(series) == {"openai:gpt-4o", "anthropic:claude-x", "demo:demo"}
    assert sorted(share for share in series["openai:gpt-4o"] if share) == [50.0, 50.0]
    assert sum(series["anthropic:claude-x"]) == 100.0


# --- The page ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("start=2026-03-10&end=2026-03-01", "The start date (2026-03-10) is after the end date"),
        ("start=2026-03-10&end=2026-03-20", "The end date (2026-03-20) is in the future"),
        ("start=2024-01-01&end=2026-03-15", "The range is 805 days long; the longest this page"),
        ("start=2026-13-01&end=2026-03-15", "The start date is not a date. Enter a date as"),
        ("start=2026-03-01&end=yesterday", "The end date is not a date."),
        ("days=365", "is not a period this page offers"),
    ],
)
@time_machine.travel(NOW, tick=True)
def test_a_bad_period_is_named_and_the_last_30_days_shown(admin_client, history, query, error):
    page = admin_client.get(f"{URL}?{query}").content.decode()

    assert error in page
    assert "Showing the last 30 days." in page
    assert "14 Feb 2026 – 15 Mar 2026" in page


@time_machine.travel(NOW, tick=True)
def test_a_date_range_shows_those_days_and_keeps_the_filters(admin_client, rated):
    page = admin_client.get(f"{URL}?start=2026-03-10&end=2026-03-14&model=gpt-4o").content.decode()

    assert "10 Mar 2026 – 14 Mar 2026" in page and "(5 days)" in page
    assert 'data-figure="replies">2<' in page  # 14 March's error, 10 March's reply
    data = json.loads(re.search(r'id="usage-chart-data"[^>]*>(.*?)</script>', page).group(1))
    assert data["days"][0] == "2026-03-10" and len(data["days"]) == 5
    assert data["drill"] == {
        "url": "/admin/chat/conversation/",
        "query": {"model__exact": "gpt-4o"},
    }
    # The presets keep the filters; the CSV has the same period and filters.
    assert 'href="?days=7&amp;model=gpt-4o"' in page
    assert "daily.csv?model=gpt-4o&amp;start=2026-03-10&amp;end=2026-03-14" in page


@time_machine.travel(NOW, tick=True)
def test_a_bad_filter_is_named_and_dropped(admin_client, history):
    page = admin_client.get(f"{URL}?days=7&source=fax&owner=robot").content.decode()

    assert "“fax” is not a source (page or api)." in page
    assert "“robot” is not an owner this page knows." in page
    assert 'data-figure="replies">6<' in page


@time_machine.travel(NOW, tick=True)
def test_a_users_page_shows_their_usage_caps_and_conversations(admin_client, rated):
    ada = rated["ada"]
    from chat.models import SpendingCap

    SpendingCap.objects.create(scope="everyone", daily_cap=1_000_000)
    page = admin_client.get(f"{URL}?owner=user:{ada.pk}&days=7").content.decode()

    assert "<title>Usage of ada |" in page
    assert 'data-figure="replies">4<' in page
    assert "$0.0050 of $1.00 today" in page and "default for everyone" in page
    assert "Give them a cap of their own" in page
    assert f"/admin/chat/conversation/{rated['api_chat'].pk}/change/" in page
    assert f"/admin/chat/conversation/?owner=user:{ada.pk}" in page


@time_machine.travel(NOW, tick=True)
def test_models_without_a_price_link_to_a_prefilled_override(admin_client, rated):
    page = admin_client.get(f"{URL}?days=7").content.decode()

    assert "/admin/chat/priceoverride/add/?provider=anthropic&amp;model=claude-x" in page
    form = admin_client.get("/admin/chat/priceoverride/add/?provider=anthropic&model=claude-x")
    html = form.content.decode()
    assert 'name="provider" value="anthropic"' in html
    assert 'name="model" value="claude-x"' in html


@time_machine.travel(NOW, tick=True)
def test_the_price_form_suggests_the_providers_and_models_replies_used(admin_client, rated, week):
    week()  # rolls up the days

    html = admin_client.get("/admin/chat/priceoverride/add/").content.decode()

    assert 'name="provider"' in html and 'list="seen-providers"' in html
    assert '<datalist id="seen-providers">' in html and '<option value="anthropic">' in html
    assert '<option value="claude-x" label="anthropic">' in html
    assert '<option value="gpt-4o-mini" label="openai">' in html
    # Free text is still a price: a model no reply used yet.
    response = admin_client.post(
        "/admin/chat/priceoverride/add/",
        {
            "provider": "ollama-box",
            "model": "llama-next",
            "input_per_mtok": "0",
            "output_per_mtok": "0",
            "valid_from": "2026-03-15",
        },
    )
    assert response.status_code == 302
    from chat.models import PriceOverride

    assert PriceOverride.objects.filter(provider="ollama-box", model="llama-next").exists()


@time_machine.travel(NOW, tick=True)
def test_the_price_list_names_the_models_without_a_price(admin_client, rated):
    from chat.models import PriceOverride

    Message.objects.create(
        conversation=rated["ada_chat"], role="assistant", status="error", ended_reason="timeout",
        provider="ollama", model="qwen-local", cost_microusd=None, day=TODAY,
    )  # fmt: skip
    html = admin_client.get("/admin/chat/priceoverride/").content.decode()

    section = html[html.index('id="unpriced-heading"') : html.index("</section>")]
    # claude-x: one rolled-up reply on 14 March; qwen-local: one of today, read live.
    assert 'anthropic:claude-x</td><td class="num">1<' in section
    assert 'ollama:qwen-local</td><td class="num">1<' in section
    assert "/admin/chat/priceoverride/add/?provider=ollama&amp;model=qwen-local" in section

    PriceOverride.objects.create(
        provider="anthropic", model="claude-x", input_per_mtok=1, output_per_mtok=2,
        valid_from=TODAY,
    )  # fmt: skip
    html = admin_client.get("/admin/chat/priceoverride/").content.decode()
    section = html[html.index('id="unpriced-heading"') : html.index("</section>")]
    assert "priced from 2026-03-15" in section  # the replies before keep no price
