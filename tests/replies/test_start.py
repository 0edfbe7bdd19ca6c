from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.http import Http404
from django.utils import timezone

from chat.conversations import errors, limits
from chat.costs.pricing import PRICE_DATA_VERSION
from chat.db import writer
from chat.models import Conversation, Message
from chat.providers.demo import demo_reply, tokenize
from chat.replies import endings, generation, reaper, workers
from chat.replies import start as services
from chat.replies.context import job_context_load
from chat.replies.titles import TITLE_MAX_CHARS

pytestmark = pytest.mark.django_db(transaction=True)


def start(visitor, text="Hello there", model="demo:demo", conversation_id=None, **kwargs):
    return services.reply_start(
        visitor=visitor,
        conversation_id=conversation_id,
        text=text,
        model_choice=model,
        **kwargs,
    )


# --- Starting ------------------------------------------------------------------------------------


def test_start_saves_the_message_and_a_streaming_reply(visitor):
    started = start(visitor, text="  What is WAL mode?  ", system_prompt="Be brief.")

    conversation = started.conversation
    assert started.created_conversation
    assert conversation.visitor_id == visitor.visitor_id and conversation.user is None
    assert conversation.title == "What is WAL mode?"
    assert (conversation.provider, conversation.model) == ("demo", "demo")
    assert conversation.system_prompt == "Be brief."
    assert started.user_message.content == "What is WAL mode?"
    assert started.assistant_message.status == Message.Status.STREAMING
    assert started.assistant_message.heartbeat_at is not None


@pytest.mark.parametrize(
    ("text", "model", "error"),
    [
        ("   ", "demo:demo", "Type a message first."),
        ("x" * 8001, "demo:demo", "the limit is 8,000"),
        ("Hi", "openai:gpt-4.1", "That model is not available here"),
        ("Hi", "nonsense", "That model is not available here"),
    ],
)
def test_bad_input_gets_a_clear_error_and_saves_nothing(visitor, text, model, error):
    with pytest.raises(errors.ChatInputError, match=error):
        start(visitor, text=text, model=model)
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


def test_long_titles_are_cut_at_a_word(visitor):
    started = start(visitor, text="word " * 40)
    assert started.conversation.title.endswith("…")
    assert len(started.conversation.title) <= TITLE_MAX_CHARS


def test_a_second_message_waits_for_the_streaming_reply(visitor):
    first = start(visitor)
    with pytest.raises(errors.ChatInputError, match="still streaming"):
        start(visitor, text="again", conversation_id=str(first.conversation.pk))


def test_someone_elses_conversation_is_not_found(visitor, other_visitor):
    first = start(visitor)
    with pytest.raises(Http404):
        start(other_visitor, text="mine now", conversation_id=str(first.conversation.pk))
    assert Message.objects.count() == 2


def test_rate_limit_refuses_a_burst(visitor, settings):
    settings.CHAT_RATE_LIMIT = "2/m"
    limits.send_check(visitor)
    limits.send_check(visitor)
    with pytest.raises(errors.RateLimited, match="too quickly. Wait") as refused:
        limits.send_check(visitor)
    assert 1 <= refused.value.retry_after <= 60


def _same_context(started: services.ReplyStarted) -> None:
    """The context a send hands its job is what the job would read from the database."""
    assert started.job_context == job_context_load(started.assistant_message.pk)


def test_a_send_gives_its_job_the_context_the_database_holds(visitor, settings):
    from chat.models import PriceOverride, SpendingCap

    # Billed and capped, so the context carries a budget too.
    PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=1_000_000, output_per_mtok=1_000_000
    )
    SpendingCap.objects.create(scope=SpendingCap.Scope.EVERYONE, daily_cap=5_000_000)
    first = start(visitor, text="First question", system_prompt="Be terse.")
    assert first.job_context is not None and first.job_context.budget is not None
    _same_context(first)
    Message.objects.filter(pk=first.assistant_message.pk).update(
        status=Message.Status.COMPLETE, content="First answer.", cost_microusd=1_000
    )
    # A follow-up: the branch shown, with the earlier turn and what it cost.
    second = start(visitor, text="Second", conversation_id=str(first.conversation.pk))
    _same_context(second)
    assert [turn.content for turn in second.job_context.turns] == [
        "First question",
        "First answer.",
        "Second",
    ]
    assert second.job_context.budget.remaining_microusd == 5_000_000 - 1_000


def test_an_api_send_gives_its_job_the_turns_the_client_sent(visitor):
    from chat.providers.base import ChatTurn

    history = [ChatTurn("user", "Earlier"), ChatTurn("assistant", "Reply"), ChatTurn("user", "Q")]
    started = start(visitor, text="Now", history=history, max_output_tokens=50)
    _same_context(started)
    assert started.job_context.requested_max_tokens == 50


async def test_a_sent_reply_streams_without_reading_its_context_again(visitor, monkeypatch):
    def no_read(*args, **kwargs):
        raise AssertionError("the job read its context again")

    monkeypatch.setattr(generation, "job_context_load", no_read)
    started = await services.areply_start(
        visitor=visitor, conversation_id=None, text="Quick", model_choice="demo:demo"
    )
    for _ in range(200):
        message = await Message.objects.aget(pk=started.assistant_message.pk)
        if message.status != Message.Status.STREAMING:
            break
        await asyncio.sleep(0.05)
    assert message.ended_reason == Message.EndedReason.COMPLETED
    assert message.content == demo_reply("Quick")


# --- The job -----------------------------------------------------------------------------------


async def test_job_streams_the_demo_reply_and_records_it(visitor, run_job):
    started = await sync_to_async(start)(visitor, text="Explain sockets")

    message = await run_job(started.assistant_message.pk)

    expected = demo_reply("Explain sockets")
    assert message.content == expected
    assert message.status == Message.Status.COMPLETE
    assert message.ended_reason == Message.EndedReason.COMPLETED
    assert message.output_tokens == len(tokenize(expected))
    assert message.usage_source == Message.UsageSource.PROVIDER
    assert message.ttft_ms is not None and message.duration_ms is not None
    assert message.cost_microusd == 0 and message.price_version == "demo"
    assert message.stream_seq == len(tokenize(expected))
    assert message.finished_at is not None


async def test_history_and_system_prompt_reach_the_model(visitor, openai_upstream, run_job):
    openai_upstream.script(text="First answer.")
    first = await sync_to_async(start)(
        visitor, text="First question", model="openai:gpt-4.1-mini", system_prompt="Be terse."
    )
    await run_job(first.assistant_message.pk)
    openai_upstream.script(text="Second answer.")
    second = await sync_to_async(start)(
        visitor,
        text="Second question",
        model="openai:gpt-4.1-mini",
        conversation_id=str(first.conversation.pk),
        system_prompt="Be terse.",
    )
    await run_job(second.assistant_message.pk)

    sent = openai_upstream.requests[-1].body["messages"]
    assert sent == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question"},
    ]


async def test_provider_usage_and_cost_are_stored(visitor, openai_upstream, run_job):
    import genai_prices

    openai_upstream.script(text="Priced.", input_tokens=1200, output_tokens=300, cached_tokens=200)
    started = await sync_to_async(start)(visitor, text="Price me", model="openai:gpt-4.1-mini")

    message = await run_job(started.assistant_message.pk)

    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1200, cache_read_tokens=200, output_tokens=300),
        "gpt-4.1-mini",
        provider_id="openai",
    ).total_price
    assert (message.input_tokens, message.output_tokens, message.cached_input_tokens) == (
        1200,
        300,
        200,
    )
    assert message.usage_source == Message.UsageSource.PROVIDER
    assert message.cost_microusd == round(expected * 1_000_000)
    assert message.price_version == PRICE_DATA_VERSION


async def test_unknown_model_has_no_price(visitor, settings, fake_upstream, run_job):
    settings.OPENAI_API_KEY = "ollama"
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.OPENAI_MODELS = ["llama3.2"]
    started = await sync_to_async(start)(visitor, text="Hi", model="openai:llama3.2")

    message = await run_job(started.assistant_message.pk)

    assert message.status == Message.Status.COMPLETE
    assert message.cost_microusd is None


async def test_stop_ends_the_job_and_keeps_the_partial_text(visitor, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 40
    started = await sync_to_async(start)(visitor, text="Tell me a long story")
    message_id = started.assistant_message.pk
    job = workers.job_launch(message_id)
    await asyncio.sleep(0.5)

    await services.reply_stop(visitor=visitor, conversation_id=str(started.conversation.pk))
    # Not timed (speed belongs in benchmarks): the job ends because of the stop, before its text
    # is done (the demo at 40 tokens a second would take seconds more); the bound is a hang guard.
    await asyncio.wait_for(job, 30)

    message = await Message.objects.aget(pk=message_id)
    full = demo_reply("Tell me a long story")
    assert message.status == Message.Status.STOPPED
    assert message.ended_reason == Message.EndedReason.STOPPED
    assert message.content and full.startswith(message.content) and message.content != full
    assert message.usage_source == Message.UsageSource.ESTIMATED
    assert message.output_tokens and message.output_tokens > 0


async def test_stop_closes_the_upstream_request(visitor, openai_upstream):
    openai_upstream.script(text="Partial then a stall", chunks=4, stall_after=2)
    started = await sync_to_async(start)(visitor, text="Stall", model="openai:gpt-4.1-mini")
    job = workers.job_launch(started.assistant_message.pk)
    assert await asyncio.to_thread(openai_upstream.wait_for_stall, 5)

    await services.reply_stop(visitor=visitor, conversation_id=str(started.conversation.pk))
    await asyncio.wait_for(job, 2)

    assert await asyncio.to_thread(openai_upstream.wait_for_disconnect, 2)
    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.STOPPED
    assert message.content == "".join(openai_upstream.reply.pieces()[:2])


async def test_provider_error_mid_stream_keeps_the_text_and_says_why(
    visitor, openai_upstream, run_job
):
    openai_upstream.script(text="Half of a reply that drops", chunks=4, drop_after=2)
    started = await sync_to_async(start)(visitor, text="Drop", model="openai:gpt-4.1-mini")

    message = await run_job(started.assistant_message.pk)

    assert message.status == Message.Status.ERROR
    assert message.ended_reason == Message.EndedReason.PROVIDER_ERROR
    assert message.content == "".join(openai_upstream.reply.pieces()[:2])
    assert "dropped" in message.error_text.lower()
    assert message.usage_source == Message.UsageSource.ESTIMATED


async def test_rejected_key_is_a_clear_error(visitor, settings, fake_upstream, run_job):
    settings.OPENAI_API_KEY = "sk-wrong"
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.OPENAI_MODELS = ["gpt-4.1-mini"]
    fake_upstream.script(status=401)
    started = await sync_to_async(start)(visitor, text="Hi", model="openai:gpt-4.1-mini")

    message = await run_job(started.assistant_message.pk)

    assert message.ended_reason == Message.EndedReason.PROVIDER_ERROR
    assert "401" in message.error_text and "key" in message.error_text.lower()
    assert message.content == ""


async def test_a_silent_model_times_out(visitor, settings, openai_upstream, run_job):
    settings.CHAT_IDLE_TIMEOUT = 0.5
    openai_upstream.script(text="Then silence", chunks=2, stall_after=1)
    started = await sync_to_async(start)(visitor, text="Hi", model="openai:gpt-4.1-mini")

    message = await run_job(started.assistant_message.pk)

    assert message.status == Message.Status.ERROR
    assert message.ended_reason == Message.EndedReason.TIMEOUT
    assert message.content == openai_upstream.reply.pieces()[0]
    assert "0.5 s" in message.error_text


async def test_text_is_saved_while_streaming_not_only_at_the_end(visitor, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 50
    started = await sync_to_async(start)(visitor, text="Flush me")
    message_id = started.assistant_message.pk
    job = workers.job_launch(message_id)
    await asyncio.sleep(0.6)

    mid = await Message.objects.aget(pk=message_id)
    await services.reply_stop(visitor=visitor, conversation_id=str(started.conversation.pk))
    await job

    assert mid.status == Message.Status.STREAMING
    assert mid.content and demo_reply("Flush me").startswith(mid.content)
    assert mid.stream_seq == len(tokenize(mid.content))
    # And when its first token came: a reply whose worker dies keeps it (its footer read
    # "– to first token" though tokens had arrived).
    assert mid.ttft_ms is not None and mid.ttft_ms >= 0


async def test_shutdown_cancelling_the_job_saves_the_partial_text(visitor, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 50
    started = await sync_to_async(start)(visitor, text="Shutdown")
    job = workers.job_launch(started.assistant_message.pk)
    await asyncio.sleep(0.3)

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    message = await Message.objects.aget(pk=started.assistant_message.pk)
    assert message.ended_reason == Message.EndedReason.INTERRUPTED
    assert message.content and demo_reply("Shutdown").startswith(message.content)


def test_reaper_ends_replies_whose_worker_died(visitor):
    started = start(visitor)
    message = started.assistant_message
    Message.objects.filter(pk=message.pk).update(
        content="half a rep", heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    fresh = start(visitor, text="another conversation").assistant_message

    assert reaper.reply_reap_stale() == 1

    message.refresh_from_db()
    fresh.refresh_from_db()
    assert message.status == Message.Status.ERROR
    assert message.ended_reason == Message.EndedReason.INTERRUPTED
    assert message.content == "half a rep"
    assert fresh.status == Message.Status.STREAMING


async def test_regenerate_supersedes_the_last_reply(visitor, run_job):
    started = await sync_to_async(start)(visitor, text="Regenerate me")
    await run_job(started.assistant_message.pk)

    again = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=started.assistant_message.pk
    )
    await run_job(again.assistant_message.pk)

    old = await Message.objects.aget(pk=started.assistant_message.pk)
    visible = [m async for m in started.conversation.messages.visible().order_by("id")]
    assert old.superseded
    assert [m.pk for m in visible] == [started.user_message.pk, again.assistant_message.pk]
    assert again.superseded_message_id == old.pk


async def test_regenerating_an_earlier_reply_branches_off_before_the_later_turns(
    visitor, openai_upstream, run_job
):
    first = await sync_to_async(start)(visitor, text="one", model="openai:gpt-4.1-mini")
    await run_job(first.assistant_message.pk)
    conversation_id = str(first.conversation.pk)
    second = await sync_to_async(start)(
        visitor, text="two", conversation_id=conversation_id, model="openai:gpt-4.1-mini"
    )
    await run_job(second.assistant_message.pk)

    again = await sync_to_async(services.reply_regenerate)(
        visitor=visitor, message_id=first.assistant_message.pk
    )
    await run_job(again.assistant_message.pk)

    # Only the question above it: "two" and its reply stay on the first version's branch.
    assert openai_upstream.requests[-1].body["messages"] == [{"role": "user", "content": "one"}]
    shown = [m.pk async for m in Message.objects.filter(conversation_id=conversation_id).visible()]
    assert shown == [first.user_message.pk, again.assistant_message.pk]


async def test_retry_after_a_failed_reply_sends_clean_history(visitor, openai_upstream, run_job):
    openai_upstream.script(status=500)
    started = await sync_to_async(start)(visitor, text="Try me", model="openai:gpt-4.1-mini")
    failed = await run_job(started.assistant_message.pk)
    assert failed.status == Message.Status.ERROR

    openai_upstream.script(text="Worked this time.")
    retry = await sync_to_async(services.reply_regenerate)(visitor=visitor, message_id=failed.pk)
    message = await run_job(retry.assistant_message.pk)

    assert message.content == "Worked this time."
    assert openai_upstream.requests[-1].body["messages"] == [{"role": "user", "content": "Try me"}]


async def test_a_failed_save_mid_reply_is_retried_and_loses_nothing(
    visitor, settings, monkeypatch, run_job
):
    from django.db import OperationalError

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 200
    real_save = writer.progress_save
    failures = []

    def flaky_save(batch):
        if not failures:
            failures.append(True)
            raise OperationalError("database is locked")
        return real_save(batch)

    monkeypatch.setattr(writer, "progress_save", flaky_save)
    started = await sync_to_async(start)(visitor, text="Flaky database")

    message = await run_job(started.assistant_message.pk)

    assert failures
    assert message.status == Message.Status.COMPLETE
    assert message.content == demo_reply("Flaky database")


async def test_a_reply_reaped_while_alive_stops_and_keeps_all_its_text(visitor, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 50
    started = await sync_to_async(start)(visitor, text="Wrongly reaped")
    message_id = started.assistant_message.pk
    job = workers.job_launch(message_id)
    await asyncio.sleep(0.4)

    # Another worker's reaper took it for dead (say its saves had been failing for a while).
    await Message.objects.filter(pk=message_id).aupdate(
        status=Message.Status.ERROR, ended_reason=Message.EndedReason.INTERRUPTED
    )
    await asyncio.wait_for(job, 2)

    message = await Message.objects.aget(pk=message_id)
    assert message.ended_reason == Message.EndedReason.INTERRUPTED
    assert len(message.content) > 20
    assert demo_reply("Wrongly reaped").startswith(message.content)
    assert message.stream_seq == len(tokenize(message.content))


async def test_readers_learn_the_end_even_if_recording_it_fails(visitor, monkeypatch, run_job):
    from chat.replies.stream import get_reply_stream

    def broken(*args):
        raise RuntimeError("database gone")

    monkeypatch.setattr(generation, "record_ending", broken)
    started = await sync_to_async(start)(visitor, text="No database at the end")

    await run_job(started.assistant_message.pk)

    entries = await get_reply_stream().read(started.assistant_message.pk, after=0, timeout=0)
    assert entries[-1].kind == "end"


async def test_a_redis_blip_while_checking_for_stop_is_not_a_stop(
    visitor, settings, use_redis, run_job
):
    from chat.replies.stream import get_reply_stream

    settings.CHAT_DEMO_TOKENS_PER_SECOND = 100
    client = get_reply_stream().client()
    real_exists = client.exists
    calls = []

    async def flaky_exists(*keys):
        calls.append(keys)
        if len(calls) == 1:
            raise ConnectionError("Redis restarted")
        return await real_exists(*keys)

    client.exists = flaky_exists
    started = await sync_to_async(start)(visitor, text="Redis blip")

    message = await run_job(started.assistant_message.pk)

    assert calls, "the job looked for a stop sent before it listened"
    assert message.ended_reason == Message.EndedReason.COMPLETED
    assert message.content == demo_reply("Redis blip")


def test_a_dead_workers_reply_does_not_block_the_next_message(visitor):
    first = start(visitor)
    Message.objects.filter(pk=first.assistant_message.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )

    second = start(visitor, text="next", conversation_id=str(first.conversation.pk))

    first.assistant_message.refresh_from_db()
    assert first.assistant_message.ended_reason == Message.EndedReason.INTERRUPTED
    assert second.assistant_message.is_streaming


def test_a_reaped_reply_gets_an_estimate_and_a_cost(visitor, openai_upstream):
    from chat.costs.pricing import price_reply
    from chat.providers.base import Usage

    started = start(visitor, text="x" * 400, model="openai:gpt-4.1-mini")
    Message.objects.filter(pk=started.assistant_message.pk).update(
        content="y" * 200, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )

    assert reaper.reply_reap_stale() == 1

    message = Message.objects.get(pk=started.assistant_message.pk)
    assert message.usage_source == Message.UsageSource.ESTIMATED
    assert (message.input_tokens, message.output_tokens) == (100, 50)  # 4 characters a token
    expected = price_reply(provider="openai", model="gpt-4.1-mini", usage=Usage(100, 50))
    assert message.cost_microusd == expected.cost_microusd > 0
    conversation = Conversation.objects.get(pk=started.conversation.pk)
    assert conversation.cost_microusd == message.cost_microusd
    assert conversation.ended_reasons == "interrupted"


def test_a_reaped_reply_keeps_the_exact_input_count_saved_while_streaming(visitor, openai_upstream):
    started = start(visitor, text="short", model="openai:gpt-4.1-mini")
    Message.objects.filter(pk=started.assistant_message.pk).update(
        content="partial", input_tokens=4321, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )

    reaper.reply_reap_stale()

    assert Message.objects.get(pk=started.assistant_message.pk).input_tokens == 4321


async def test_anthropic_input_count_is_saved_while_streaming(visitor, settings, fake_upstream):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.ANTHROPIC_MODELS = ["claude-haiku-4-5"]
    fake_upstream.script(text="abc def ghi", chunks=3, input_tokens=4321, stall_after=1)
    started = await sync_to_async(start)(visitor, model="anthropic:claude-haiku-4-5")
    job = asyncio.create_task(generation.reply_generate(started.assistant_message.pk))
    try:
        assert await asyncio.to_thread(fake_upstream.wait_for_stall, 20)
        for _ in range(100):
            message = await Message.objects.aget(pk=started.assistant_message.pk)
            if message.input_tokens:
                break
            await asyncio.sleep(0.02)
        assert message.is_streaming and message.input_tokens == 4321
    finally:
        fake_upstream.release()
        await asyncio.wait_for(job, 10)


def test_one_reply_that_cannot_be_ended_does_not_keep_the_others_streaming(visitor, monkeypatch):
    first = start(visitor).assistant_message
    second = start(visitor, text="another conversation").assistant_message
    Message.objects.filter(pk__in=[first.pk, second.pk]).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    real_reap = reaper.reply_reap

    def broken_for_the_first(message_id, *args):
        if message_id == first.pk:
            raise RuntimeError("a bug")
        return real_reap(message_id, *args)

    monkeypatch.setattr(reaper, "reply_reap", broken_for_the_first)

    assert reaper.reply_reap_stale() == 1
    assert Message.objects.get(pk=second.pk).ended_reason == Message.EndedReason.INTERRUPTED


def test_reap_replies_command(visitor):
    from io import StringIO

    from django.core.management import call_command

    started = start(visitor)
    Message.objects.filter(pk=started.assistant_message.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    out = StringIO()

    call_command("reap_replies", stdout=out)

    assert out.getvalue().strip() == "1 stale reply ended as interrupted."
    assert Message.objects.get(pk=started.assistant_message.pk).ended_reason == "interrupted"


@pytest.mark.parametrize(
    ("first", "last", "tokens", "speed"),
    [
        (10.0, 12.0, 41, 20.0),  # 40 tokens after the first, over 2 s
        (10.0, 10.1, 41, None),  # a burst of buffered text is not a speed
        (10.0, 12.0, 1, None),  # one token has no rate
        (None, None, 0, None),  # no text at all
    ],
)
def test_output_speed_runs_from_first_to_last_token(first, last, tokens, speed):
    state = endings.ReplyState(first_token_at=first, last_token_at=last)
    assert endings.output_speed(state, tokens) == speed
