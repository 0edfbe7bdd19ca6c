from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from chat.conversations import errors
from chat.conversations.reads import Visitor
from chat.costs.budgets import allowance_for, spending_cap_for
from chat.models import Conversation, Message, PriceOverride, SpendingCap
from chat.providers.demo import demo_reply
from chat.replies import generation
from chat.replies import start as services

HTMX = {"HX-Request": "true"}

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 11, 18, 12, 0, tzinfo=ZoneInfo("UTC"))


def cap(scope=SpendingCap.Scope.EVERYONE, user=None, daily=None, monthly=None) -> SpendingCap:
    return SpendingCap.objects.create(scope=scope, user=user, daily_cap=daily, monthly_cap=monthly)


def spend(visitor: Visitor, microusd: int | None, *, days_ago: int = 0) -> Message:
    """A finished reply of this visitor's that cost `microusd`, `days_ago` days ago."""
    conversation = Conversation.objects.create(
        user=visitor.user if visitor.is_authenticated else None,
        visitor_id="" if visitor.is_authenticated else visitor.visitor_id,
        provider="openai",
        model="gpt-4.1-mini",
    )
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.COMPLETE,
        ended_reason=Message.EndedReason.COMPLETED,
        content="Paid for.",
        cost_microusd=microusd,
        day=timezone.localdate() - timedelta(days=days_ago),
    )


@pytest.fixture
def billed_demo():
    """The offline demo model at a price, so it spends caps."""
    return PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=1_000_000, output_per_mtok=1_000_000
    )


def start(visitor: Visitor, text="Hello", model="demo:demo", conversation_id=None):
    return services.reply_start(
        visitor=visitor, conversation_id=conversation_id, text=text, model_choice=model
    )


# --- Which cap applies --------------------------------------------------------------------------


def test_a_users_own_cap_replaces_the_default():
    ada = User.objects.create_user("ada")
    bob = User.objects.create_user("bob")
    everyone = cap(daily=1_000_000)
    anonymous = cap(SpendingCap.Scope.ANONYMOUS, daily=100_000)
    own = cap(SpendingCap.Scope.USER, user=ada, monthly=50_000_000)

    assert spending_cap_for(user_id=ada.pk) == own
    assert spending_cap_for(user_id=bob.pk) == everyone
    assert spending_cap_for(user_id=None) == anonymous
    anonymous.delete()
    assert spending_cap_for(user_id=None) == everyone


def test_no_cap_means_no_allowance(visitor):
    assert allowance_for(user_id=None, visitor_id=visitor.visitor_id) is None
    cap(SpendingCap.Scope.ANONYMOUS)  # both amounts blank
    assert allowance_for(user_id=None, visitor_id=visitor.visitor_id) is None


@time_machine.travel(NOON, tick=False)
def test_the_tightest_cap_counts_todays_and_this_months_spending(visitor, other_visitor):
    cap(SpendingCap.Scope.ANONYMOUS, daily=1_000_000, monthly=3_000_000)
    spend(visitor, 400_000)
    spend(visitor, None)  # no price: cannot count
    spend(visitor, 2_000_000, days_ago=5)
    spend(visitor, 9_000_000, days_ago=30)  # October
    spend(other_visitor, 5_000_000)

    allowance = allowance_for(user_id=None, visitor_id=visitor.visitor_id)

    # Daily: $1 - $0.40 = $0.60 left; monthly: $3 - $2.40 = $0.60 left too; the daily wins ties.
    assert allowance is not None
    assert allowance.remaining_microusd == 600_000
    spend(visitor, 100_000, days_ago=1)
    allowance = allowance_for(user_id=None, visitor_id=visitor.visitor_id)
    assert allowance is not None
    assert (allowance.period, allowance.remaining_microusd) == ("monthly", 500_000)
    assert allowance.refusal() == (
        "You have reached your monthly spending limit of $3.00. It resets on 1 December."
    )


# --- Refused before the provider ---------------------------------------------------------------


@time_machine.travel(NOON, tick=True)
async def test_an_over_budget_send_is_refused_before_the_provider_is_called(
    async_client, openai_upstream, apage_visitor
):
    visitor = await apage_visitor(async_client)
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=10_000)
    await sync_to_async(spend)(visitor, 10_000)

    response = await async_client.post(
        "/streaming-demo/messages",
        {"action": "send", "message": "One more?", "model": "openai:gpt-4.1-mini"},
        headers=HTMX,
    )

    # 429 like a rate limit: nothing is wrong with the message, it can be sent once the cap
    # resets (at midnight: twelve hours after NOON).
    assert response.status_code == 429
    assert 12 * 3600 - 60 <= int(response["Retry-After"]) <= 12 * 3600 + 1
    assert (
        "You have reached your daily spending limit of $0.01. It resets at midnight (UTC)."
        in response.content.decode()
    )
    assert openai_upstream.requests == []
    assert await Message.objects.filter(role=Message.Role.USER).acount() == 0


def test_regenerate_is_refused_over_budget_too(visitor, billed_demo):
    started = start(visitor)
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status=Message.Status.COMPLETE, ended_reason="completed", cost_microusd=50_000
    )
    cap(SpendingCap.Scope.ANONYMOUS, daily=50_000)

    with pytest.raises(errors.ChatInputError, match="daily spending limit of \\$0.05"):
        services.reply_regenerate(visitor=visitor, message_id=started.assistant_message.pk)

    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


@time_machine.travel(NOON, tick=False)  # not the wall clock: near midnight "yesterday" moves
def test_yesterdays_spending_does_not_count_against_today(visitor, billed_demo):
    cap(daily=10_000)
    spend(visitor, 50_000, days_ago=1)

    assert start(visitor).assistant_message.status == Message.Status.STREAMING


def test_signed_in_users_are_capped_by_their_own_spending(billed_demo):
    ada = User.objects.create_user("ada")
    cap(SpendingCap.Scope.USER, user=ada, daily=10_000)
    ada_visitor = Visitor(user=ada, visitor_id="")
    spend(ada_visitor, 10_000)

    with pytest.raises(errors.ChatInputError, match="daily spending limit"):
        start(ada_visitor)
    bob = Visitor(user=User.objects.create_user("bob"), visitor_id="")
    assert start(bob).assistant_message.status == Message.Status.STREAMING


# --- Stopped mid-stream -------------------------------------------------------------------------


async def test_a_reply_crossing_the_cap_mid_stream_ends_with_budget_and_keeps_its_text(visitor):
    # The demo model at $1 per thousand output tokens: a $0.05 cap allows about 50 tokens.
    await PriceOverride.objects.acreate(
        provider="demo", model="demo", input_per_mtok=0, output_per_mtok=1_000_000_000
    )
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=50_000)
    started = await sync_to_async(start)(visitor, text="Tell me a long story")

    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    full = demo_reply("Tell me a long story")
    assert message.ended_reason == Message.EndedReason.BUDGET
    assert message.status == Message.Status.STOPPED
    assert message.content and full.startswith(message.content) and message.content != full
    assert message.usage_source == Message.UsageSource.ESTIMATED
    assert 50_000 <= message.cost_microusd < 60_000
    assert message.error_text == (
        "This reply was stopped because it reached your daily spending limit of $0.05."
    )
    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert "budget" in conversation.ended_reasons
    with pytest.raises(errors.ChatInputError, match="daily spending limit"):
        await sync_to_async(start)(
            visitor, text="More", conversation_id=str(started.conversation.pk)
        )


async def test_the_budget_uses_the_exact_input_count_anthropic_sends_first(
    visitor, settings, fake_upstream
):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    # A short prompt, but the provider reports 100,000 input tokens ($0.10 at $1/M).
    fake_upstream.script(text="A long answer in many pieces.", chunks=6, input_tokens=100_000)
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=50_000)
    started = await sync_to_async(start)(visitor, text="Hi", model="anthropic:claude-haiku-4-5")

    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.BUDGET
    assert message.input_tokens == 100_000
    assert message.usage_source == Message.UsageSource.ESTIMATED
    # Stopped at the first piece: the input alone was over what was left.
    assert "A long answer in many pieces.".startswith(message.content)
    assert 0 < len(message.content) < len("A long answer in many pieces.")


async def test_replies_under_the_cap_complete(visitor, openai_upstream):
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=1_000_000)
    started = await sync_to_async(start)(visitor, model="openai:gpt-4.1-mini")

    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.COMPLETED


# --- Set in the admin --------------------------------------------------------------------------


def test_staff_set_caps_in_dollars_in_the_admin(admin_client):
    ada = User.objects.create_user("ada")

    response = admin_client.post(
        "/admin/chat/spendingcap/add/",
        {"scope": "user", "user": ada.pk, "daily_cap": "0.50", "monthly_cap": ""},
    )

    assert response.status_code == 302
    saved = SpendingCap.objects.get()
    assert (saved.user, saved.daily_cap, saved.monthly_cap) == (ada, 500_000, None)
    listing = admin_client.get("/admin/chat/spendingcap/").content.decode()
    assert "Cap for ada" in listing and "$0.50" in listing and "no cap" in listing


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"scope": "user", "user": ""}, "Pick the user this cap is for."),
        ({"scope": "everyone", "user": "ADA"}, "Leave the user empty for a default cap."),
        ({"scope": "anonymous", "user": ""}, "There is already a cap with this scope"),
        ({"scope": "everyone", "user": "", "daily_cap": "-1"}, "greater than or equal to 0"),
    ],
)
def test_bad_caps_get_a_clear_error(admin_client, fields, error):
    ada = User.objects.create_user("ada")
    cap(SpendingCap.Scope.ANONYMOUS, daily=1)
    data = {"daily_cap": "1", "monthly_cap": "", **fields}
    data["user"] = ada.pk if data["user"] == "ADA" else data["user"]

    response = admin_client.post("/admin/chat/spendingcap/add/", data)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert SpendingCap.objects.count() == 1


def test_free_and_unpriced_models_are_not_refused_when_the_cap_is_used(visitor, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODELS = ["gpt-4.1-mini", "llama3.2"]
    cap(SpendingCap.Scope.ANONYMOUS, daily=10_000)
    spend(visitor, 10_000)

    with pytest.raises(errors.ChatInputError, match="daily spending limit"):
        start(visitor, model="openai:gpt-4.1-mini")
    assert start(visitor, model="demo:demo").assistant_message.is_streaming  # free
    assert start(visitor, model="openai:llama3.2").assistant_message.is_streaming  # no price


async def test_a_prompt_that_alone_costs_what_is_left_never_reaches_the_provider(
    visitor, openai_upstream
):
    # $1,000 per million input tokens: a 100-token prompt costs $0.10; $0.05 is left.
    await PriceOverride.objects.acreate(
        provider="openai", model="gpt-4.1-mini", input_per_mtok=1_000_000_000, output_per_mtok=0
    )
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=50_000)
    started = await sync_to_async(start)(visitor, text="x" * 400, model="openai:gpt-4.1-mini")

    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.BUDGET
    assert message.content == ""
    assert openai_upstream.requests == []


async def test_the_output_cap_sent_to_the_provider_is_what_the_budget_pays_for(
    visitor, openai_upstream
):
    # Input free, output $1 per thousand tokens: $0.05 left pays for 50 output tokens.
    await PriceOverride.objects.acreate(
        provider="openai", model="gpt-4.1-mini", input_per_mtok=0, output_per_mtok=1_000_000_000
    )
    await sync_to_async(cap)(SpendingCap.Scope.ANONYMOUS, daily=50_000)
    started = await sync_to_async(start)(visitor, model="openai:gpt-4.1-mini")

    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    assert openai_upstream.requests[0].body["max_completion_tokens"] == 50
