"""Generated titles (CHAT_TITLE_MODEL) through the real OpenAI SDK against the fake upstream."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.analytics.report import Period
from chat.analytics.summary import usage_summary
from chat.conversations import writes
from chat.conversations.reads import conversation_messages
from chat.models import Conversation, Message
from chat.replies import start as services
from chat.replies.titles import TITLE_SYSTEM_PROMPT, clean_title

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai:gpt-4.1-mini"


@pytest.fixture
def first_reply(run_job):
    async def first_reply(visitor, text="How long should I boil an egg for a soft yolk?"):
        started = await sync_to_async(services.reply_start)(
            visitor=visitor, conversation_id=None, text=text, model_choice=MODEL
        )
        await run_job(started.assistant_message.pk)
        return started

    return first_reply


async def test_a_cheap_model_names_the_conversation_after_its_first_reply(
    visitor, openai_upstream, settings, first_reply
):
    settings.CHAT_TITLE_MODEL = "openai:gpt-4.1-nano"
    openai_upstream.script(text='"Soft-boiled eggs."', input_tokens=40, output_tokens=5)

    started = await first_reply(visitor)

    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert conversation.title == "Soft-boiled eggs"
    request = openai_upstream.requests[-1].body
    assert request["model"] == "gpt-4.1-nano"
    assert request["messages"][0] == {"role": "system", "content": TITLE_SYSTEM_PROMPT}
    assert "soft yolk" in request["messages"][1]["content"]
    assert request["max_completion_tokens"] <= 24

    # Recorded as usage like any reply: counted in the totals, never shown in the chat.
    title_job = await Message.objects.aget(kind=Message.Kind.TITLE)
    assert (title_job.input_tokens, title_job.output_tokens) == (40, 5)
    assert title_job.usage_source == Message.UsageSource.PROVIDER
    assert title_job.cost_microusd and title_job.cost_microusd > 0
    reply = await Message.objects.aget(pk=started.assistant_message.pk)
    assert conversation.input_tokens == reply.input_tokens + 40
    assert conversation.cost_microusd == reply.cost_microusd + title_job.cost_microusd
    assert conversation.message_count == 2
    shown = await sync_to_async(conversation_messages)(conversation)
    assert [m.pk for m in shown] == [started.user_message.pk, reply.pk]
    # The analytics count it as a reply of the title model, with its cost.
    summary = await sync_to_async(usage_summary)(period=Period.last(1))
    assert summary.replies == 2
    assert summary.cost_microusd == conversation.cost_microusd
    assert summary.input_tokens == conversation.input_tokens


async def test_titles_are_off_by_default(visitor, openai_upstream, first_reply):
    started = await first_reply(visitor, text="Keep my words as the title")

    assert len(openai_upstream.requests) == 1
    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert conversation.title == "Keep my words as the title"
    assert not await Message.objects.filter(kind=Message.Kind.TITLE).aexists()


async def test_only_the_first_reply_names_the_conversation(
    visitor, openai_upstream, settings, run_job, first_reply
):
    settings.CHAT_TITLE_MODEL = MODEL
    started = await first_reply(visitor)
    requests = len(openai_upstream.requests)

    again = await sync_to_async(services.reply_start)(
        visitor=visitor,
        conversation_id=str(started.conversation.pk),
        text="And a hard one?",
        model_choice=MODEL,
    )
    await run_job(again.assistant_message.pk)

    assert len(openai_upstream.requests) == requests + 1  # the reply only
    assert await Message.objects.filter(kind=Message.Kind.TITLE).acount() == 1


async def test_a_refused_title_keeps_the_first_message_and_costs_nothing(
    visitor, openai_upstream, settings, run_job
):
    settings.CHAT_TITLE_MODEL = "openai:gpt-4.1-nano"
    openai_upstream.script(status=403)  # only the title goes upstream: the reply is the demo's
    started = await sync_to_async(services.reply_start)(
        visitor=visitor,
        conversation_id=None,
        text="Question stays the title",
        model_choice="demo:demo",
    )
    await run_job(started.assistant_message.pk)

    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert conversation.title == "Question stays the title"
    assert len(openai_upstream.requests) == 1
    failed = await Message.objects.aget(kind=Message.Kind.TITLE)
    assert failed.status == Message.Status.ERROR and "403" in failed.error_text
    assert failed.usage_source == Message.UsageSource.NONE and failed.cost_microusd == 0


async def test_a_name_given_meanwhile_is_not_overwritten(
    visitor, openai_upstream, settings, run_job
):
    settings.CHAT_TITLE_MODEL = "openai:gpt-4.1-nano"
    openai_upstream.script(text="Generated name")
    started = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="Original", model_choice="demo:demo"
    )
    await sync_to_async(writes.conversation_rename)(
        visitor=visitor, conversation_id=started.conversation.pk, title="My own name"
    )
    await run_job(started.assistant_message.pk)

    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert conversation.title == "My own name"
    # Nothing to name, so nothing is spent.
    assert not openai_upstream.requests
    assert not await Message.objects.filter(kind=Message.Kind.TITLE).aexists()


def test_clean_title_strips_decoration():
    assert clean_title('Title: "Boiling eggs."\nmore') == "Boiling eggs"
    assert len(clean_title("word " * 40)) <= 60
