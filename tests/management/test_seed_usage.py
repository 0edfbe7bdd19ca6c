from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, Q
from django.utils import timezone

from chat.costs.pricing import override_version, price_reply
from chat.management.seeding import ENDINGS
from chat.models import Conversation, Message, PriceOverride, UsageDay
from chat.providers.base import Usage

pytestmark = pytest.mark.django_db

# Mid-afternoon, so today's seeded conversations have hours to spread over.
NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


def seed(replies: int = 300, **options) -> str:
    out = StringIO()
    call_command("seed_usage", replies=replies, stdout=out, **{"days": 30, "seed": 3, **options})
    return out.getvalue()


def replies():
    return Message.objects.filter(role=Message.Role.ASSISTANT)


def fingerprint() -> list[tuple]:
    return list(
        Message.objects.order_by("conversation__created_at", "created_at", "role").values_list(
            "conversation_id",
            "conversation__user__username",
            "conversation__visitor_id",
            "role",
            "content",
            "model",
            "ended_reason",
            "superseded",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cost_microusd",
            "ttft_ms",
            "created_at",
        )
    )


@time_machine.travel(NOW, tick=False)
def test_seeds_the_replies_users_and_anonymous_visitors_asked_for():
    output = seed()

    assert replies().count() == 300
    # Users default to max(20, replies // 200).
    assert get_user_model().objects.filter(username__startswith="seed-user-").count() == 20
    conversations = Conversation.objects.count()
    anonymous = Conversation.objects.filter(user__isnull=True).count()
    assert 0.15 < anonymous / conversations < 0.45
    assert not Conversation.objects.filter(user__isnull=True).exclude(
        visitor_id__startswith="seed-"
    )
    # Each exchange is a question and a reply; a retried reply adds one more reply.
    assert Message.objects.filter(role=Message.Role.USER).count() == 300 - (
        replies().filter(superseded=True).count()
    )
    assert "Wrote" in output and "300 replies" in output


@time_machine.travel(NOW, tick=False)
def test_seed_users_cannot_sign_in():
    seed()

    user = get_user_model().objects.get(username="seed-user-0001")

    assert not user.has_usable_password()


@time_machine.travel(NOW, tick=False)
def test_every_message_falls_on_its_day_within_the_range():
    seed()
    today = timezone.localdate()

    for message in Message.objects.select_related("conversation"):
        assert today - timedelta(days=29) <= message.day <= today
        assert timezone.localdate(message.created_at) == message.day
        assert timezone.localdate(message.conversation.created_at) == message.day
        if message.role == Message.Role.ASSISTANT:
            assert message.finished_at > message.created_at
            assert timezone.localdate(message.finished_at) == message.day
            assert message.finished_at <= timezone.now()
            assert message.conversation.updated_at >= message.finished_at


def test_conversations_seeded_just_after_midnight_do_not_end_in_the_future():
    with time_machine.travel(datetime(2026, 3, 18, 0, 4, tzinfo=UTC), tick=False):
        seed(days=1, replies=400)
        now = timezone.now()

        todays = Message.objects.filter(day=timezone.localdate())
        assert todays.exists()
        assert not todays.filter(Q(created_at__gt=now) | Q(finished_at__gt=now))


def test_today_has_the_traffic_of_the_hours_so_far():
    # 08:00 on a Wednesday: about a tenth of a working day's conversations have happened.
    with time_machine.travel(datetime(2026, 3, 18, 8, 0, tzinfo=UTC), tick=False):
        seed(days=8, replies=3000)
        today = timezone.localdate()

        by_day = dict(replies().values_list("day").annotate(n=Count("id")))
        assert 0 < by_day[today] < 0.3 * by_day[today - timedelta(days=1)]
        assert not Message.objects.filter(created_at__gt=timezone.now())


@time_machine.travel(NOW, tick=False)
def test_replies_mix_models_and_endings_with_consistent_statuses():
    seed(replies=2000)

    by_model = dict(replies().values_list("model").annotate(n=Count("id")))
    assert set(by_model) == {
        "demo",
        "gpt-4o-mini",
        "gpt-4o",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "llama3.1-local",
    }
    by_reason = dict(replies().values_list("ended_reason").annotate(n=Count("id")))
    assert 0.85 < by_reason["completed"] / 2000 < 0.95
    # Every ending the seeder draws (the rare too_long and service_error are not seeded).
    assert set(by_reason) == {"completed"} | {reason for reason, _ in ENDINGS}
    assert replies().filter(superseded=True).exists()
    expected_status = {
        "completed": "complete",
        "stopped": "stopped",
        "budget": "stopped",
        "provider_error": "error",
        "timeout": "error",
        "interrupted": "error",
    }
    for reason, status in expected_status.items():
        assert not replies().filter(ended_reason=reason).exclude(status=status)
    assert not replies().filter(ended_reason="completed").exclude(usage_source="provider")
    assert not replies().exclude(ended_reason="completed").exclude(usage_source="estimated")
    assert not replies().filter(status="error", error_text="")
    # Caching only on follow-ups of providers that cache, and never more than the prompt.
    assert replies().filter(cached_input_tokens__gt=0, provider="anthropic").exists()
    assert not replies().filter(cached_input_tokens__gt=0, model__in=["demo", "llama3.1-local"])
    for message in replies().filter(cached_input_tokens__gt=0):
        assert message.cached_input_tokens <= message.input_tokens


@time_machine.travel(NOW, tick=False)
def test_costs_are_what_price_reply_charges():
    seed()

    for message in replies():
        price = price_reply(
            provider=message.provider,
            model=message.model,
            usage=Usage(message.input_tokens, message.output_tokens, message.cached_input_tokens),
            on=message.day,
        )
        assert (message.cost_microusd, message.price_version) == (
            price.cost_microusd,
            price.version,
        )


@time_machine.travel(NOW, tick=False)
def test_a_model_without_a_price_is_seeded_without_cost():
    seed(replies=2000)

    unknown = replies().filter(model="llama3.1-local")
    assert unknown.exists()
    assert not unknown.exclude(cost_microusd=None)
    assert not replies().exclude(model="llama3.1-local").filter(cost_microusd=None)
    assert not replies().filter(model="demo").exclude(cost_microusd=0)


@time_machine.travel(NOW, tick=False)
def test_a_price_override_applies_from_its_day_on():
    switch = timezone.localdate() - timedelta(days=10)
    entry = PriceOverride.objects.create(
        provider="openai",
        model="gpt-4o-mini",
        input_per_mtok=1_000_000,
        output_per_mtok=2_000_000,
        valid_from=switch,
    )

    seed(replies=1000)

    mini = replies().filter(model="gpt-4o-mini")
    assert not mini.filter(day__gte=switch).exclude(price_version=override_version(entry))
    assert not mini.filter(day__lt=switch, price_version__startswith="override")
    # A dollar per million input tokens (cached ones too), two per million output tokens.
    for message in mini.filter(day__gte=switch)[:20]:
        assert message.cost_microusd == message.input_tokens + 2 * message.output_tokens


@time_machine.travel(NOW, tick=False)
def test_conversation_totals_are_the_sums_of_their_messages():
    seed()

    for conversation in Conversation.objects.prefetch_related("messages"):
        messages = list(conversation.messages.all())
        assert conversation.message_count == len(messages)
        assert conversation.input_tokens == sum(m.input_tokens or 0 for m in messages)
        assert conversation.output_tokens == sum(m.output_tokens or 0 for m in messages)
        assert conversation.cost_microusd == sum(m.cost_microusd or 0 for m in messages)
        assert conversation.unpriced_replies == sum(
            1 for m in messages if m.role == "assistant" and m.cost_microusd is None
        )
        assert conversation.ended_reasons == ",".join(
            sorted({m.ended_reason for m in messages if m.ended_reason})
        )


@time_machine.travel(NOW, tick=False)
def test_conversation_totals_are_those_refresh_totals_computes():
    seed(replies=2000)
    fields = ["message_count", "input_tokens", "output_tokens", "cost_microusd"]
    fields += ["unpriced_replies", "ended_reasons"]
    sample = Conversation.objects.filter(
        Q(message_count__gte=20) | Q(unpriced_replies__gt=0) | Q(ended_reasons__contains=",")
    ).order_by("id")[:30]
    stored = {row["id"]: row for row in sample.values("id", *fields)}

    for conversation in Conversation.objects.filter(id__in=stored):
        conversation.refresh_totals()

    refreshed = Conversation.objects.filter(id__in=stored).values("id", *fields)
    assert {row["id"]: row for row in refreshed} == stored


@time_machine.travel(NOW, tick=False)
def test_same_seed_writes_the_same_history():
    seed()
    first = fingerprint()

    seed(clear=True)
    assert fingerprint() == first

    seed(clear=True, seed=4)
    assert fingerprint() != first


@time_machine.travel(NOW, tick=False)
def test_clear_removes_only_seeded_data():
    owner = get_user_model().objects.create_user("ada")
    kept = [
        Conversation.objects.create(user=owner, provider="demo", model="demo"),
        Conversation.objects.create(visitor_id="f" * 32, provider="demo", model="demo"),
    ]
    for conversation in kept:
        Message.objects.create(conversation=conversation, role="user", content="Hello")
    seed()
    assert UsageDay.objects.exists()

    output = seed(replies=0, clear=True)

    assert "Cleared seeded data: " in output and " 20 users" in output
    assert set(Conversation.objects.all()) == set(kept)
    assert Message.objects.count() == 2
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["ada"]
    # The seeded days' roll-ups counted seeded replies: they go too, to be rebuilt.
    assert not UsageDay.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_seeding_again_with_another_seed_adds_to_the_same_seed_users():
    seed()
    seed(seed=5)

    assert replies().count() == 600
    assert get_user_model().objects.filter(username__startswith="seed-user-").count() == 20


@time_machine.travel(NOW, tick=False)
def test_seeding_the_same_seed_twice_asks_for_clear():
    seed()

    with pytest.raises(CommandError, match="--clear"):
        seed()
    assert replies().count() == 300


@time_machine.travel(NOW, tick=False)
def test_seeded_history_has_api_conversations_and_feedback_that_adds_up():
    seed(replies=2000)

    api = Conversation.objects.filter(source=Conversation.Source.API)
    assert api.exists() and not api.filter(user__isnull=True).exists()  # the API needs an account
    rated = replies().filter(feedback__isnull=False)
    assert 0.02 < rated.count() / 2000 < 0.1
    assert not rated.filter(superseded=True).exists()
    assert rated.filter(feedback=Message.Feedback.DOWN).exists()
    assert rated.exclude(feedback_comment="").exists()
    # The conversations' counts are those of their replies.
    for conversation in Conversation.objects.filter(feedback_up__gt=0)[:20]:
        assert conversation.feedback_up == conversation.messages.filter(feedback=1).count()
    assert (
        sum(Conversation.objects.values_list("feedback_down", flat=True))
        == rated.filter(feedback=Message.Feedback.DOWN).count()
    )
