"""Reading a reply for a transport: leading-edge coalescing and exact resumes.

The reply stream is driven by hand (the in-memory backend), so each test decides exactly when a
delta arrives. Windows are huge on purpose: a fragment that arrives long before the window could
have passed proves it was not held back by it, without timing anything tightly.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.replies import start as services
from chat.replies.stream import get_reply_stream
from chat.web.updates import Update, reply_updates

pytestmark = pytest.mark.django_db(transaction=True)

HUGE_WINDOW_MS = 60_000
# Far below the huge window, and generous for a loaded machine.
PROMPT_SECONDS = 10


async def streaming_reply(visitor) -> int:
    started = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="Hello", model_choice="demo:demo"
    )
    return started.assistant_message.pk


async def next_update(updates) -> Update:
    while True:
        update = await asyncio.wait_for(anext(updates), PROMPT_SECONDS)
        if update is not None:
            return update


async def test_first_delta_is_sent_without_waiting_for_the_window(settings, visitor, deltas):
    settings.CHAT_COALESCE_MS = HUGE_WINDOW_MS
    message_id = await streaming_reply(visitor)
    stream = get_reply_stream()
    updates = reply_updates(message_id, after=0)
    await stream.append(message_id, 1, "Hi")
    update = await next_update(updates)
    assert deltas(update.html) == [(1, "Hi")]
    assert update.seq == 1 and not update.final
    await updates.aclose()


async def test_a_burst_inside_the_window_goes_out_as_one_fragment(settings, visitor, deltas):
    settings.CHAT_COALESCE_MS = HUGE_WINDOW_MS
    message_id = await streaming_reply(visitor)
    stream = get_reply_stream()
    updates = reply_updates(message_id, after=0)
    await stream.append(message_id, 1, "One")
    assert deltas((await next_update(updates)).html) == [(1, "One")]
    # Arriving one by one while the reader waits out the window since its last send.
    pending = asyncio.ensure_future(next_update(updates))
    for seq, text in [(2, " two"), (3, " three"), (4, " & four")]:
        await asyncio.sleep(0.05)
        await stream.append(message_id, seq, text)
    await asyncio.sleep(0.2)
    assert not pending.done(), "a delta inside the window was sent before the window passed"
    # The end goes out at once, with what was gathered before it: nothing waits for the window.
    await stream.finish(message_id, 5, "completed")
    burst = await asyncio.wait_for(pending, PROMPT_SECONDS)
    assert deltas(burst.html) == [(4, " two three & four")]
    assert burst.seq == 4
    final = await next_update(updates)
    assert final.final and final.seq == 5


async def test_a_delta_after_a_quiet_window_is_sent_at_once(settings, visitor, deltas):
    settings.CHAT_COALESCE_MS = 50
    message_id = await streaming_reply(visitor)
    stream = get_reply_stream()
    updates = reply_updates(message_id, after=0)
    await stream.append(message_id, 1, "a")
    assert deltas((await next_update(updates)).html) == [(1, "a")]
    await asyncio.sleep(0.3)  # the window has long passed
    await stream.append(message_id, 2, "b")
    assert deltas((await next_update(updates)).html) == [(2, "b")]
    await updates.aclose()


async def test_the_end_is_sent_at_once_when_nothing_is_pending(settings, visitor, deltas):
    settings.CHAT_COALESCE_MS = HUGE_WINDOW_MS
    message_id = await streaming_reply(visitor)
    stream = get_reply_stream()
    updates = reply_updates(message_id, after=0)
    await stream.append(message_id, 1, "Done")
    assert deltas((await next_update(updates)).html) == [(1, "Done")]
    await stream.finish(message_id, 2, "completed")
    final = await next_update(updates)
    assert final.final and final.seq == 2
    assert 'hx-swap-oob="outerHTML"' in final.html


async def test_resuming_from_any_fragment_gives_the_rest_exactly_once(settings, visitor, deltas):
    settings.CHAT_COALESCE_MS = 20
    message_id = await streaming_reply(visitor)
    stream = get_reply_stream()
    words = [f"w{seq}<&> " for seq in range(1, 41)]

    async def produce() -> None:
        for seq, word in enumerate(words, start=1):
            await stream.append(message_id, seq, word)
            # Bursts and pauses, so fragments carry one or several deltas.
            await asyncio.sleep(0 if seq % 4 else 0.03)
        await stream.finish(message_id, len(words) + 1, "completed")

    producer = asyncio.ensure_future(produce())
    # The first reader leaves after a few fragments; each next one resumes from the seq of the
    # last fragment it saw, as the page does with `after` / Last-Event-ID.
    received: list[tuple[int, str]] = []
    after, final = 0, None
    while final is None:
        updates = reply_updates(message_id, after=after)
        for _ in range(3):
            update = await next_update(updates)
            if update.final:
                final = update
                break
            pieces = deltas(update.html)
            assert len(pieces) == 1 and pieces[0][0] == update.seq > after
            received += pieces
            after = update.seq
        await updates.aclose()
    await producer
    assert "".join(text for _seq, text in received) == "".join(words)
    seqs = [seq for seq, _text in received]
    assert seqs == sorted(set(seqs)) and seqs[-1] == len(words)
    assert len(received) < len(words), "no burst was ever merged"


async def test_readers_share_one_render_of_the_finished_message(settings, visitor, monkeypatch):
    # Rendered once in this process, for every reader, from the reply as its job recorded it,
    # rather than read and rendered by each.
    from chat.web import updates

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 500
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Render me once", model_choice="demo:demo"
    )
    message_id = started.assistant_message.pk
    rendered: list[int] = []
    read: list[int] = []
    real_final_fragment, real_read = updates.final_fragment, updates.final_fragment_read
    monkeypatch.setattr(
        updates, "final_fragment", lambda m: rendered.append(m.pk) or real_final_fragment(m)
    )
    monkeypatch.setattr(updates, "final_fragment_read", lambda pk: read.append(pk) or real_read(pk))
    readers = [reply_updates(message_id, after=0) for _ in range(3)]

    async def last(updates) -> Update:
        async for update in updates:
            if update is not None and update.final:
                return update
        raise AssertionError("no final update")

    finals = await asyncio.wait_for(asyncio.gather(*(last(r) for r in readers)), PROMPT_SECONDS)

    assert rendered == [message_id]
    assert read == []
    for final in finals:
        assert f'id="msg-{message_id}"' in final.html
        assert 'data-status="complete"' in final.html
        assert 'id="conversation-totals"' in final.html
    # Came later than the log is kept: read and rendered from the database, the same.
    settings.CHAT_STREAM_RETENTION_SECONDS = 0
    get_reply_stream()._logs.pop(message_id, None)
    late = await last(reply_updates(message_id, after=0))
    assert read == [message_id]
    assert late.html == finals[0].html
