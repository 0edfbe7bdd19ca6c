"""Sends in a shared conversation: each is the sender's (author, caps, limits, stop rights), and
the model is told who wrote what when more than one person writes."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from chat.conversations.errors import NotAllowed, RateLimited, SpendingCapReached
from chat.costs.budgets import spent_microusd
from chat.costs.staff_config import staff_config_forget
from chat.models import Conversation, ConversationMember, Message, SpendingCap
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


def _visitor(name: str):
    from chat.conversations.reads import Visitor

    return Visitor(user=User.objects.create_user(name), visitor_id="")


@pytest.fixture
def room():
    """Ana's conversation with one finished turn of hers; Ben and Cy are members."""
    ana, ben, cy = _visitor("ana"), _visitor("ben.k@x"), _visitor("cy")
    started = services.reply_start(
        visitor=ana, conversation_id=None, text="Plan a trip", model_choice="demo:demo"
    )
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="Lisbon."
    )
    conversation = started.conversation
    for member in (ben, cy):
        ConversationMember.objects.create(conversation=conversation, user=member.user)
    return conversation, ana, ben, cy


def _send(visitor, conversation, text="And then?", model="demo:demo"):
    return services.reply_start(
        visitor=visitor, conversation_id=str(conversation.pk), text=text, model_choice=model
    )


def _finish(started, cost=0):
    Message.objects.filter(pk=started.assistant_message.pk).update(
        status="complete", ended_reason="completed", content="Ok.", cost_microusd=cost
    )


def test_a_members_message_and_its_reply_are_theirs_and_charged_to_them(room):
    conversation, ana, ben, _ = room

    started = _send(ben, conversation)
    _finish(started, cost=250_000)

    assert started.user_message.author == ben.user
    assert Message.objects.get(pk=started.assistant_message.pk).author == ben.user
    today = timezone.localdate()
    assert spent_microusd(user_id=ben.user.pk, visitor_id="", today=today) == (250_000, 250_000)
    assert spent_microusd(user_id=ana.user.pk, visitor_id="", today=today) == (0, 0)
    assert Conversation.objects.get(pk=conversation.pk).user == ana.user  # still Ana's


def test_a_members_spending_cap_refuses_them_not_the_owner(room, openai_upstream):
    conversation, ana, ben, _ = room
    paid = "openai:gpt-4.1-mini"  # the demo model is free: no cap refuses it
    _finish(_send(ben, conversation, model=paid), cost=1_000_000)
    SpendingCap.objects.create(scope="user", user=ben.user, daily_cap=500_000)
    SpendingCap.objects.create(scope="user", user=ana.user, daily_cap=500_000)
    staff_config_forget()

    with pytest.raises(SpendingCapReached):
        _send(ben, conversation, model=paid)
    _send(ana, conversation, model=paid)  # her own allowance is untouched


def test_the_streaming_limit_counts_the_sender_in_a_shared_conversation(room, settings):
    settings.CHAT_MAX_STREAMING_PER_PERSON = 1
    conversation, ana, ben, _ = room
    _send(ben, conversation)  # streaming, in Ana's conversation

    with pytest.raises(RateLimited):
        services.reply_start(
            visitor=ben, conversation_id=None, text="Mine", model_choice="demo:demo"
        )
    # Ana has nothing streaming of her own: her other conversation may start.
    services.reply_start(visitor=ana, conversation_id=None, text="Mine", model_choice="demo:demo")


def test_one_reply_streams_at_a_time_in_a_shared_conversation(room):
    conversation, _, ben, cy = room
    _send(ben, conversation)

    with pytest.raises(services.ChatInputError, match="still streaming"):
        _send(cy, conversation)


async def test_a_member_cannot_stop_another_members_reply_and_the_owner_can(room):
    conversation, ana, ben, cy = room
    started = await sync_to_async(_send)(ben, conversation)

    with pytest.raises(NotAllowed):
        await services.reply_stop(visitor=cy, conversation_id=str(conversation.pk))
    with pytest.raises(NotAllowed):
        await services.reply_stop(visitor=cy, message_id=started.assistant_message.pk)
    stopped = await services.reply_stop(visitor=ana, conversation_id=str(conversation.pk))

    assert stopped.pk == started.assistant_message.pk


async def test_a_member_stops_their_own_reply(room):
    conversation, _, ben, _ = room
    started = await sync_to_async(_send)(ben, conversation)

    stopped = await services.reply_stop(visitor=ben, message_id=started.assistant_message.pk)

    assert stopped.pk == started.assistant_message.pk


def test_members_regenerate_and_edit_only_their_own_turns(room):
    conversation, ana, ben, cy = room
    started = _send(ben, conversation)
    _finish(started)

    with pytest.raises(NotAllowed):
        services.reply_regenerate(visitor=cy, message_id=started.assistant_message.pk)
    with pytest.raises(NotAllowed):
        services.message_edit(visitor=cy, message_id=started.user_message.pk, text="No")
    regenerated = services.reply_regenerate(visitor=ben, message_id=started.assistant_message.pk)
    _finish(regenerated)
    services.reply_regenerate(visitor=ana, message_id=regenerated.assistant_message.pk)


# --- What the model sees ------------------------------------------------------------------------


async def test_openai_is_sent_each_authors_name_when_several_people_write(
    room, openai_upstream, run_job
):
    conversation, _, ben, _ = room
    started = await sync_to_async(_send)(ben, conversation, model="openai:gpt-4.1-mini")
    await run_job(started.assistant_message.pk)

    sent = openai_upstream.requests[-1].body["messages"]
    assert sent == [
        {"role": "user", "name": "ana", "content": "Plan a trip"},
        {"role": "assistant", "content": "Lisbon."},
        # "ben.k@x" as OpenAI's name field accepts it.
        {"role": "user", "name": "ben_k_x", "content": "And then?"},
    ]


async def test_anthropic_is_sent_each_authors_name_in_front_of_the_text(
    room, settings, fake_upstream, run_job
):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    conversation, _, ben, _ = room
    started = await sync_to_async(_send)(ben, conversation, model="anthropic:claude-haiku-4-5")
    await run_job(started.assistant_message.pk)

    sent = fake_upstream.requests[-1].body["messages"]
    assert sent == [
        {"role": "user", "content": "[ana]: Plan a trip"},
        {"role": "assistant", "content": "Lisbon."},
        {"role": "user", "content": "[ben.k@x]: And then?"},
    ]


async def test_one_person_alone_is_sent_no_names(room, openai_upstream, run_job):
    conversation, ana, _, _ = room
    started = await sync_to_async(_send)(ana, conversation, model="openai:gpt-4.1-mini")
    await run_job(started.assistant_message.pk)

    sent = openai_upstream.requests[-1].body["messages"]
    assert all("name" not in turn for turn in sent)
