"""A small usage history written by hand, for the analytics tests to check figures against
(tests/analytics/conftest.py makes fixtures of it)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import time_machine
from django.contrib.auth.models import User

from chat.analytics.filters import UsageFilter
from chat.analytics.summary import Period, usage_summary
from chat.conversations.feedback import message_feedback_set
from chat.conversations.reads import Visitor
from chat.models import Conversation, Message

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
TODAY = date(2026, 3, 15)
WEEK = Period(date(2026, 3, 9), TODAY)


def reply(conversation, day, *, reason="completed", cost=0, tokens=(0, 0, 0), ttft=None, tps=None,
          source="provider", model=None, superseded=False):  # fmt: skip
    provider, model = (model or f"{conversation.provider}:{conversation.model}").split(":")
    status = {"completed": "complete", "stopped": "stopped", "budget": "stopped"}.get(
        reason, "error"
    )
    Message.objects.create(conversation=conversation, role="user", content="Q", day=day)
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="A",
        status=status,
        ended_reason=reason,
        provider=provider,
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cached_input_tokens=tokens[2],
        cost_microusd=cost,
        usage_source=source,
        ttft_ms=ttft,
        tokens_per_second=tps,
        superseded=superseded,
        day=day,
    )
    conversation.refresh_totals()


def history_create():
    """A small history, by hand (today is 15 March 2026; cost in micro-dollars):

    | day    | owner | model                | ended         | in/out/cache | cost   | ttft | tok/s |
    | 15 Mar | ada   | openai:gpt-4o        | completed     | 1000/200/100 | 5000   | 300  | 50    |
    | 15 Mar | v1    | demo:demo            | stopped, est. | 100/50/0     | 0      | 120  | 30    |
    | 14 Mar | ada   | openai:gpt-4o        | error, est.   | 500/10/0     | 1500   | 800  | –     |
    | 14 Mar | ada   | anthropic:claude-x   | completed     | 200/100/0    | none   | 450  | 80    |
    | 10 Mar | v1    | openai:gpt-4o        | completed     | 2000/400/0   | 9000   | 1000 | 40    |
    | 10 Mar | v1    | demo:demo (replaced) | completed     | 10/5/0       | 0      | 200  | –     |
    |  8 Mar | ada   | openai:gpt-4o        | completed     | 10/10/0      | 100000 | 100  | 10    |
    plus a reply still streaming today, which does not count yet.
    """
    with time_machine.travel(NOW, tick=False):
        ada = User.objects.create_user("ada")
        ada_chat = Conversation.objects.create(
            user=ada, provider="openai", model="gpt-4o", title="Ada's"
        )
        visitor_chat = Conversation.objects.create(
            visitor_id="v1" + "0" * 30, provider="demo", model="demo", title="Visitor's"
        )
        reply(ada_chat, TODAY, cost=5000, tokens=(1000, 200, 100), ttft=300, tps=50.0)
        reply(visitor_chat, TODAY, reason="stopped", tokens=(100, 50, 0), ttft=120, tps=30.0,
              source="estimated")  # fmt: skip
        reply(ada_chat, date(2026, 3, 14), reason="provider_error", cost=1500,
              tokens=(500, 10, 0), ttft=800, source="estimated")  # fmt: skip
        reply(ada_chat, date(2026, 3, 14), cost=None, tokens=(200, 100, 0), ttft=450, tps=80.0,
              model="anthropic:claude-x")  # fmt: skip
        reply(visitor_chat, date(2026, 3, 10), cost=9000, tokens=(2000, 400, 0), ttft=1000,
              tps=40.0, model="openai:gpt-4o")  # fmt: skip
        reply(visitor_chat, date(2026, 3, 10), tokens=(10, 5, 0), ttft=200, superseded=True)
        reply(ada_chat, date(2026, 3, 8), cost=100_000, tokens=(10, 10, 0), ttft=100, tps=10.0)
        Message.objects.create(
            conversation=visitor_chat, role="assistant", status="streaming", provider="demo",
            model="demo", day=TODAY, cost_microusd=777,
        )  # fmt: skip
        visitor_chat.refresh_totals()
    return {"ada": ada, "ada_chat": ada_chat, "visitor_chat": visitor_chat}


def figures(summary):
    """The page's figures as plain data, to compare two ways of computing them."""
    return {
        "cards": (
            summary.replies, summary.cost_microusd, summary.unpriced_replies,
            summary.input_tokens, summary.output_tokens, summary.cached_input_tokens,
            summary.active_owners, summary.error_rate, summary.stop_rate, summary.estimated_share,
        ),
        "days": [
            (row.day, row.replies, row.cost_microusd, row.ttft_p50_ms, row.ttft_p95_ms,
             dict(row.replies_by_reason), dict(row.cost_by_model))
            for row in summary.days
        ],
        "models": [
            (m.label, m.replies, m.priced_cost_microusd, m.cost_per_reply_microusd, m.ttft_p50_ms,
             m.ttft_p95_ms, m.median_tokens_per_second)
            for m in summary.models
        ],
        "owners": [(o.label, o.replies, o.cost_microusd) for o in summary.top_owners],
    }  # fmt: skip


def rated_create(history):
    """The history, plus Ada's API conversation with one gpt-4o-mini reply on 14 March (cost
    2000, 300/60 tokens, ttft 500), durations on the gpt-4o replies, and three ratings:

    | reply                       | duration | rating          |
    | 15 Mar ada gpt-4o completed | 2000     | good            |
    | 14 Mar ada gpt-4o error     | 4000     |                 |
    | 14 Mar ada claude-x         |          | good, commented |
    | 10 Mar v1  gpt-4o completed | 10000    | bad             |
    """
    with time_machine.travel(NOW, tick=False):
        ada = history["ada"]
        api_chat = Conversation.objects.create(
            user=ada, provider="openai", model="gpt-4o-mini", title="Ada's API", source="api"
        )
        reply(api_chat, date(2026, 3, 14), cost=2000, tokens=(300, 60, 0), ttft=500)
        replies = Message.objects.filter(role="assistant", superseded=False)
        ada_15 = replies.get(day=TODAY, model="gpt-4o")
        ada_error = replies.get(ended_reason="provider_error")
        claude = replies.get(model="claude-x")
        v1_10 = replies.get(day=date(2026, 3, 10), model="gpt-4o")
        for message, duration in ((ada_15, 2000), (ada_error, 4000), (v1_10, 10000)):
            Message.objects.filter(pk=message.pk).update(duration_ms=duration)
        ada_visitor = Visitor(user=ada, visitor_id="")
        visitor = Visitor(user=None, visitor_id=history["visitor_chat"].visitor_id)
        message_feedback_set(visitor=ada_visitor, message_id=ada_15.pk, rating="up")
        message_feedback_set(
            visitor=ada_visitor, message_id=claude.pk, rating="up", comment="Spot on."
        )
        message_feedback_set(visitor=visitor, message_id=v1_10.pk, rating="down")
    return {**history, "api_chat": api_chat}


def week(**filters: str):
    return usage_summary(period=WEEK, usage_filter=UsageFilter(**filters))
