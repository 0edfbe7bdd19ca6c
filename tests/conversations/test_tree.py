"""Edit and branch: the conversation tree, the history the model is sent (asserted through what
the fake upstream received), versions, failed turns, and the totals and usage figures."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.urls import reverse

from chat.conversations import errors, writes
from chat.conversations.reads import conversation_messages
from chat.conversations.tree import Tree, history_turns
from chat.models import Conversation, Message
from chat.providers.base import ChatTurn
from chat.replies import generation
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "openai:gpt-4.1-mini"


def sent(upstream, index: int = -1) -> list[dict[str, str]]:
    """The messages the upstream received in request `index`."""
    return upstream.requests[index].body["messages"]


@pytest.fixture
def say(run_job):
    async def say(visitor, text: str, conversation_id=None) -> services.ReplyStarted:
        started = await sync_to_async(services.reply_start)(
            visitor=visitor,
            conversation_id=str(conversation_id) if conversation_id else None,
            text=text,
            model_choice=MODEL,
        )
        await run_job(started.assistant_message.pk)
        return started

    return say


@sync_to_async
def shown(conversation_id) -> list[tuple[str, str]]:
    conversation = Conversation.objects.get(pk=conversation_id)
    return [(m.role, m.content) for m in conversation_messages(conversation)]


# --- History -----------------------------------------------------------------------------------


def _message(pk, role, content, parent=None, status=Message.Status.COMPLETE):
    return Message(pk=pk, role=role, content=content, parent_id=parent, status=status)


def test_history_leaves_out_a_turn_whose_reply_has_no_text():
    path = [
        _message(1, "user", "first question"),
        _message(2, "assistant", "", parent=1, status=Message.Status.ERROR),
        _message(3, "user", "second question", parent=2),
    ]
    assert history_turns(path) == [ChatTurn("user", "second question")]


def test_history_keeps_a_partial_reply_as_it_was_shown():
    path = [
        _message(1, "user", "q"),
        _message(2, "assistant", "half an ans", parent=1, status=Message.Status.STOPPED),
        _message(3, "user", "go on", parent=2),
    ]
    assert history_turns(path) == [
        ChatTurn("user", "q"),
        ChatTurn("assistant", "half an ans"),
        ChatTurn("user", "go on"),
    ]


def test_tree_numbers_versions_and_follows_the_newest_line():
    messages = [
        _message(1, "user", "q"),
        _message(2, "assistant", "a1", parent=1),
        _message(3, "user", "next", parent=2),
        _message(4, "assistant", "a2", parent=1),
    ]
    tree = Tree(messages)
    assert [m.pk for m in tree.branch(None)] == [1, 4]
    assert [m.pk for m in tree.branch(3)] == [1, 2, 3]
    assert tree.leaf_below(2) == 3
    first, second = tree.versions(messages[1]), tree.versions(messages[3])
    assert (first.index, first.count, first.previous_id, first.next_id) == (1, 2, None, 4)
    assert (second.index, second.count, second.previous_id, second.next_id) == (2, 2, 2, None)


# --- Through the fake upstream -------------------------------------------------------------------


async def test_a_failed_turn_is_never_merged_into_the_next_prompt(visitor, openai_upstream, say):
    openai_upstream.script(status=500)
    first = await say(visitor, "first question")
    assert (await Message.objects.aget(pk=first.assistant_message.pk)).failed

    openai_upstream.script(text="Answer.")
    await say(visitor, "second question", first.conversation.pk)

    assert sent(openai_upstream) == [{"role": "user", "content": "second question"}]


async def test_editing_a_message_sends_only_the_new_branch_and_keeps_the_old(
    visitor, openai_upstream, run_job, say
):
    openai_upstream.script(text="Paris.")
    first = await say(visitor, "Capital of France?")
    conversation_id = first.conversation.pk
    openai_upstream.script(text="Berlin.")
    second = await say(visitor, "And Germany?", conversation_id)

    openai_upstream.script(text="Rome.")
    edited = await sync_to_async(services.message_edit)(
        visitor=visitor, message_id=second.user_message.pk, text="And Italy?"
    )
    await run_job(edited.assistant_message.pk)

    assert sent(openai_upstream) == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Italy?"},
    ]
    assert await shown(conversation_id) == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And Italy?"),
        ("assistant", "Rome."),
    ]

    # ‹ : the original message, with the reply that followed it.
    await sync_to_async(writes.branch_switch)(visitor=visitor, message_id=second.user_message.pk)
    assert await shown(conversation_id) == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And Germany?"),
        ("assistant", "Berlin."),
    ]
    # The next message continues the branch shown, and only it is sent.
    openai_upstream.script(text="Vienna.")
    await say(visitor, "And Austria?", conversation_id)
    assert [m["content"] for m in sent(openai_upstream)] == [
        "Capital of France?",
        "Paris.",
        "And Germany?",
        "Berlin.",
        "And Austria?",
    ]


async def test_regenerate_keeps_every_version_and_switches_between_them(
    visitor, openai_upstream, run_job, say
):
    openai_upstream.script(text="First take.")
    first = await say(visitor, "Tell me a joke")
    conversation_id = first.conversation.pk
    openai_upstream.script(text="Second take.")
    again = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    await run_job(again.assistant_message.pk)

    assert sent(openai_upstream) == [{"role": "user", "content": "Tell me a joke"}]
    assert (await shown(conversation_id))[-1] == ("assistant", "Second take.")

    await sync_to_async(writes.branch_switch)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    assert (await shown(conversation_id))[-1] == ("assistant", "First take.")
    # Staff see which versions are off the visible branch.
    assert await Message.objects.filter(pk=again.assistant_message.pk, superseded=True).aexists()


async def test_a_finished_reply_is_numbered_among_its_versions_without_a_query(
    visitor, openai_upstream, monkeypatch, run_job
):
    """No version can be added beside a reply while it streams (a send, a regenerate and an
    edit need the conversation idle), so the job numbers the finished message it hands its
    readers (who render it) from what it knew at the start: 1 of 1 after a send, 2 of 2 after
    a regenerate, without reading the siblings again."""
    from chat.replies.stream import get_reply_stream
    from chat.web import rendering
    from chat.web.updates import final_html

    read: list[int] = []
    original = rendering.message_with_versions
    monkeypatch.setattr(
        rendering, "message_with_versions", lambda m: read.append(m.pk) or original(m)
    )

    async def finished_html(message_id: int) -> str:
        entries = await get_reply_stream().read(message_id, after=0, timeout=0)
        assert entries[-1].kind == "end"
        return await final_html(message_id, entries[-1].message)

    openai_upstream.script(text="First take.")
    first = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="Tell me a joke", model_choice=MODEL
    )
    # As a send launches it: with the context the send built.
    await asyncio.wait_for(
        generation.reply_generate(first.assistant_message.pk, first.job_context), 10
    )
    html = await finished_html(first.assistant_message.pk)
    assert "First take." in html and 'class="versions"' not in html

    openai_upstream.script(text="Second take.")
    again = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    await run_job(again.assistant_message.pk)  # its context read from the database
    html = await finished_html(again.assistant_message.pk)
    assert '<span class="version-count">2/2</span>' in html
    assert reverse("chat:show_version", args=[first.assistant_message.pk]) in html
    assert read == []


async def test_retry_works_on_an_earlier_failed_reply(visitor, openai_upstream, run_job, say):
    openai_upstream.script(status=503)
    first = await say(visitor, "one")
    conversation_id = first.conversation.pk
    openai_upstream.script(text="Two answered.")
    await say(visitor, "two", conversation_id)

    openai_upstream.script(text="One answered.")
    retry = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    await run_job(retry.assistant_message.pk)

    assert sent(openai_upstream) == [{"role": "user", "content": "one"}]
    assert await shown(conversation_id) == [("user", "one"), ("assistant", "One answered.")]


async def test_deleting_a_failed_turn_removes_it_and_its_question(visitor, openai_upstream, say):
    openai_upstream.script(text="Fine.")
    first = await say(visitor, "hello")
    conversation_id = first.conversation.pk
    openai_upstream.script(status=500)
    failed = await say(visitor, "this one fails", conversation_id)

    await sync_to_async(writes.turn_delete)(visitor=visitor, message_id=failed.assistant_message.pk)

    assert await shown(conversation_id) == [("user", "hello"), ("assistant", "Fine.")]
    openai_upstream.script(text="Again fine.")
    await say(visitor, "next", conversation_id)
    assert [m["content"] for m in sent(openai_upstream)] == ["hello", "Fine.", "next"]
    # Kept for staff, marked deleted.
    assert await Message.objects.filter(
        pk=failed.user_message.pk, deleted_at__isnull=False
    ).aexists()


async def test_deleting_a_failed_turn_in_the_middle_keeps_what_followed(
    visitor, openai_upstream, say
):
    openai_upstream.script(status=500)
    first = await say(visitor, "broken")
    conversation_id = first.conversation.pk
    openai_upstream.script(text="Later answer.")
    await say(visitor, "later", conversation_id)

    await sync_to_async(writes.turn_delete)(visitor=visitor, message_id=first.assistant_message.pk)

    assert await shown(conversation_id) == [("user", "later"), ("assistant", "Later answer.")]


async def test_only_a_failed_reply_can_be_deleted(visitor, openai_upstream, say):
    openai_upstream.script(text="Fine.")
    first = await say(visitor, "hello")
    with pytest.raises(errors.ChatInputError, match="Only a failed reply"):
        await sync_to_async(writes.turn_delete)(
            visitor=visitor, message_id=first.assistant_message.pk
        )


async def test_versions_of_another_visitor_are_not_found(
    visitor, other_visitor, openai_upstream, say
):
    first = await say(visitor, "mine")
    from django.http import Http404

    with pytest.raises(Http404):
        await sync_to_async(writes.branch_switch)(
            visitor=other_visitor, message_id=first.assistant_message.pk
        )
    with pytest.raises(Http404):
        await sync_to_async(services.message_edit)(
            visitor=other_visitor, message_id=first.user_message.pk, text="theirs"
        )


# --- Honest figures ------------------------------------------------------------------------------


async def test_page_total_and_staff_total_agree_and_count_every_version(
    visitor, openai_upstream, run_job, say
):
    openai_upstream.script(text="One.", input_tokens=10, output_tokens=3)
    first = await say(visitor, "count me")
    openai_upstream.script(text="Two.", input_tokens=11, output_tokens=4)
    again = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    await run_job(again.assistant_message.pk)

    conversation = await Conversation.objects.aget(pk=first.conversation.pk)
    # The replaced version was paid for: it counts on the page as for staff.
    assert conversation.totals()["input_tokens"] == 21
    assert conversation.totals()["output_tokens"] == 7
    await sync_to_async(conversation.refresh_totals)()
    await conversation.arefresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (21, 7)


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_a_refused_request_records_no_usage_and_no_cost(
    visitor, openai_upstream, status, say
):
    openai_upstream.script(status=status)
    started = await say(visitor, "refuse me")

    reply = await Message.objects.aget(pk=started.assistant_message.pk)
    assert reply.failed and reply.ended_reason == Message.EndedReason.PROVIDER_ERROR
    assert (reply.input_tokens, reply.output_tokens) == (0, 0)
    assert reply.cost_microusd == 0
    assert reply.usage_source == Message.UsageSource.NONE
    conversation = await Conversation.objects.aget(pk=started.conversation.pk)
    assert conversation.totals() == {"input_tokens": 0, "output_tokens": 0, "cost_microusd": 0}


async def test_an_anthropic_refusal_records_no_usage(visitor, settings, fake_upstream, run_job):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    fake_upstream.script(status=401)
    started = await sync_to_async(services.reply_start)(
        visitor=visitor,
        conversation_id=None,
        text="refuse me",
        model_choice="anthropic:claude-haiku-4-5",
    )
    reply = await run_job(started.assistant_message.pk, timeout=60)  # a cold SDK import is slow
    assert reply.usage_source == Message.UsageSource.NONE and reply.cost_microusd == 0


async def test_a_stream_dropped_midway_is_still_estimated(visitor, openai_upstream, say):
    openai_upstream.script(text="one two three four five six", chunks=6, drop_after=3)
    started = await say(visitor, "drop me")

    reply = await Message.objects.aget(pk=started.assistant_message.pk)
    assert reply.failed and reply.content
    assert reply.usage_source == Message.UsageSource.ESTIMATED
    assert reply.input_tokens and reply.output_tokens
    assert reply.cost_microusd and reply.cost_microusd > 0


# --- Migrating existing conversations --------------------------------------------------------


def test_migration_makes_replaced_replies_earlier_versions_of_their_replacement(visitor):
    conversation = Conversation.objects.create(
        visitor_id=visitor.visitor_id, provider="demo", model="demo"
    )

    def add(role, content, superseded=False):
        return Message.objects.create(
            conversation=conversation, role=role, content=content, superseded=superseded
        )

    question = add("user", "q")
    replaced = add("assistant", "old", superseded=True)
    replacement = add("assistant", "new")
    follow_up = add("user", "more")
    answer = add("assistant", "more answer")

    migration = importlib.import_module("chat.migrations.0010_conversation_tree_data")
    migration.build_tree(apps, None)

    conversation.refresh_from_db()
    assert conversation.current_leaf_id == answer.pk
    parents = dict(Message.objects.values_list("pk", "parent_id"))
    assert parents[replaced.pk] == parents[replacement.pk] == question.pk
    assert parents[follow_up.pk] == replacement.pk
    messages = conversation_messages(conversation)
    assert [m.content for m in messages] == ["q", "new", "more", "more answer"]
    assert (messages[1].versions.index, messages[1].versions.count) == (2, 2)
