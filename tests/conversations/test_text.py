"""Text that every database stores (issue 7, part 4): NUL and other controls never reach the
database, from users or from providers, and a reply that contains them is saved, not lost."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.conversations import errors
from chat.conversations.text import DeltaCleaner, has_visible, text_clean, title_clean
from chat.models import Conversation, Message
from chat.replies import generation
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


def test_text_clean_keeps_tabs_and_newlines_and_drops_other_controls():
    assert text_clean("a\x00b\tc\r\nd\re\x1bf\x7f\ud800g") == "ab\tc\nd\nefg"


def test_delta_cleaner_joins_a_crlf_split_across_deltas():
    cleaner = DeltaCleaner()
    pieces = [cleaner.clean("one\r"), cleaner.clean("\ntwo\r"), cleaner.clean("three\x00\r")]
    assert "".join(pieces) + cleaner.flush() == "one\ntwo\nthree\n"


@pytest.mark.parametrize(
    "text", ["", "   ", "\u200b\u200b", "\u200d\ufeff\u2060", "\u202e", "\x00\x00", "\n\t"]
)
def test_messages_with_nothing_visible_are_refused(text, visitor):
    assert not has_visible(text_clean(text))
    with pytest.raises(errors.ChatInputError, match="Type a message first"):
        services.reply_start(
            visitor=visitor, conversation_id=None, text=text, model_choice="demo:demo"
        )
    assert not Message.objects.exists()


def test_titles_lose_bidi_overrides():
    assert title_clean("invoice\u202egpj.exe\u202c  for\nyou") == "invoicegpj.exe for you"


def test_nul_in_the_message_and_system_prompt_is_stored_cleaned(visitor):
    started = services.reply_start(
        visitor=visitor,
        conversation_id=None,
        text="hel\x00lo \u202eworld",
        model_choice="demo:demo",
        system_prompt="be\x00 nice",
    )
    user = Message.objects.get(pk=started.user_message.pk)
    conversation = Conversation.objects.get(pk=started.conversation.pk)
    assert user.content == "hello \u202eworld"  # the message keeps its own text direction
    assert conversation.title == "hello world"
    assert conversation.system_prompt == "be nice"


async def test_a_reply_with_nul_from_the_provider_is_saved_with_its_text(visitor, openai_upstream):
    openai_upstream.script(text="before\x00 the\x01 nul\r\nand after", chunks=4)
    started = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="hi", model_choice="openai:gpt-4.1-mini"
    )
    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 10)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == "completed", message.error_text
    assert message.content == "before the nul\nand after"
    # Readers are sent the same cleaned text: no carriage return reaches the page, where one
    # would end a line of SSE framing early.
    from chat.replies.stream import get_reply_stream

    entries = await get_reply_stream().read(message.pk, after=0, timeout=0)
    assert "".join(e.text for e in entries if e.kind == "delta") == message.content


async def test_an_oversized_reply_ends_as_too_long_with_its_text_kept(
    visitor, openai_upstream, settings
):
    settings.CHAT_MAX_REPLY_CHARS = 1000
    # One enormous token, as a buggy or hostile upstream sent (20 MB in the report).
    openai_upstream.script(text="x" * 300 + "y" * 2_000_000, chunks=2)
    started = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="hi", model_choice="openai:gpt-4.1-mini"
    )
    await asyncio.wait_for(generation.reply_generate(started.assistant_message.pk), 20)

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == "too_long"
    assert message.status == "stopped"
    assert message.content == "x" * 300 + "y" * 700
    assert "size limit of 1,000 characters" in message.error_text
    # The stream holds no more than the cap either.
    from chat.replies.stream import get_reply_stream

    entries = await get_reply_stream().read(message.pk, after=0, timeout=0)
    assert sum(len(e.text) for e in entries if e.kind == "delta") == 1000
    assert entries[-1].kind == "end" and entries[-1].text == "too_long"
