"""The OpenAI and Anthropic adapters, through the real SDKs, against the fake upstream server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from chat.providers import get_provider
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import ChatTurn, Event, ProviderError, TextDelta, Usage
from chat.providers.openai import OpenAIProvider

HISTORY = [
    ChatTurn("user", "Hi"),
    ChatTurn("assistant", "Hello! How can I help?"),
    ChatTurn("user", "Tell me a story."),
]


@pytest.fixture
async def openai_provider(fake_upstream) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(
        api_key="sk-test-openai", base_url=fake_upstream.openai_base_url, max_retries=0
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def anthropic_provider(fake_upstream) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        api_key="sk-ant-test", base_url=fake_upstream.anthropic_base_url, max_retries=0
    )
    yield provider
    await provider.aclose()


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> OpenAIProvider | AnthropicProvider:
    return request.getfixturevalue(f"{request.param}_provider")


async def run(
    stream: AsyncIterator[Event],
) -> tuple[list[str], list[Usage], ProviderError | None]:
    """Consume a stream: the text deltas, the usages, and the ProviderError that ended it."""
    texts: list[str] = []
    usages: list[Usage] = []
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                texts.append(event.text)
            else:
                usages.append(event)
    except ProviderError as exc:
        return texts, usages, exc
    return texts, usages, None


def anthropic_key(request) -> str | None:
    # anthropic 2.x sends the API key as a Bearer token; older SDKs used x-api-key.
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth else request.headers.get("x-api-key")


def reply(provider: OpenAIProvider | AnthropicProvider) -> AsyncIterator[Event]:
    return provider.stream(
        HISTORY, model="test-model", system_prompt="Be brief.", max_output_tokens=321
    )


async def test_openai_streams_text_and_usage(
    fake_upstream, openai_provider: OpenAIProvider
) -> None:
    scripted = fake_upstream.script(
        text="Once upon a time, a fake server.",
        chunks=5,
        delay=0.01,
        input_tokens=40,
        cached_tokens=32,
    )

    texts, usages, error = await run(reply(openai_provider))

    assert error is None
    assert "".join(texts) == scripted.text
    assert len(texts) == 5
    assert usages == [Usage(input_tokens=40, output_tokens=9, cached_input_tokens=32)]

    [request] = fake_upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-openai"
    assert request.body["model"] == "test-model"
    assert request.body["max_completion_tokens"] == 321
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a story."},
    ]


async def test_openai_omits_an_empty_system_prompt(
    fake_upstream, openai_provider: OpenAIProvider
) -> None:
    await run(openai_provider.stream(HISTORY[:1], model="m", max_output_tokens=10))

    assert fake_upstream.requests[0].body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_anthropic_streams_text_and_usage(
    fake_upstream, anthropic_provider: AnthropicProvider
) -> None:
    scripted = fake_upstream.script(
        text="Once upon a time, a fake server.",
        chunks=5,
        input_tokens=8,
        cached_tokens=30,
        cache_creation_tokens=2,
        output_tokens=17,
    )

    events = [event async for event in reply(anthropic_provider)]

    texts = [event.text for event in events if isinstance(event, TextDelta)]
    assert "".join(texts) == scripted.text
    assert len(texts) == 5
    # Input is known at message_start, before any text; output only at the end. The fake sends
    # output_tokens=1 at message_start, so a summing adapter would report 18.
    assert events[0] == Usage(input_tokens=40, output_tokens=0, cached_input_tokens=30)
    assert events[-1] == Usage(input_tokens=40, output_tokens=17, cached_input_tokens=30)
    assert sum(isinstance(event, Usage) for event in events) == 2

    [request] = fake_upstream.requests
    assert request.path == "/v1/messages"
    assert anthropic_key(request) == "sk-ant-test"
    assert request.headers["anthropic-version"]
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 321
    assert request.body["system"] == "Be brief."
    assert request.body["stream"] is True
    assert request.body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a story."},
    ]


async def test_anthropic_omits_an_empty_system_prompt(
    fake_upstream, anthropic_provider: AnthropicProvider
) -> None:
    await run(anthropic_provider.stream(HISTORY[:1], model="m", max_output_tokens=10))

    assert "system" not in fake_upstream.requests[0].body


@pytest.mark.parametrize(
    ("status", "wording"),
    [
        (401, "API key was rejected (401)"),
        (429, "rate-limiting this server (429)"),
        (500, "server error (500)"),
        (503, "server error (503)"),
    ],
)
async def test_http_errors_become_clear_provider_errors(
    fake_upstream,
    provider: OpenAIProvider | AnthropicProvider,
    status: int,
    wording: str,
) -> None:
    fake_upstream.script(status=status)

    texts, usages, error = await run(reply(provider))

    assert texts == [] and usages == []
    assert error is not None
    assert error.status_code == status
    assert wording in error.message
    assert ("OpenAI" if provider.name == "openai" else "Anthropic") in error.message
    assert len(fake_upstream.requests) == 1  # max_retries=0: no retry


async def test_openai_bad_request_shows_the_upstream_reason(
    fake_upstream, openai_provider: OpenAIProvider
) -> None:
    fake_upstream.script(status=400, error_message="max_completion_tokens is too large")

    _, _, error = await run(reply(openai_provider))

    assert error is not None and error.status_code == 400
    assert error.message == (
        "OpenAI rejected the request (400): max_completion_tokens is too large"
    )


async def test_anthropic_overloaded_status(
    fake_upstream, anthropic_provider: AnthropicProvider
) -> None:
    fake_upstream.script(status=529, error_message="Overloaded")

    _, _, error = await run(reply(anthropic_provider))

    assert error is not None and error.status_code == 529
    assert "overloaded" in error.message


async def test_connection_refused(provider: OpenAIProvider | AnthropicProvider) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cls = type(provider)
    closed = cls(
        api_key="k", base_url=url + ("/v1" if cls is OpenAIProvider else ""), max_retries=0
    )
    try:
        _, _, error = await run(reply(closed))
    finally:
        await closed.aclose()

    assert error is not None
    assert error.message.startswith("Could not connect to")


async def test_drop_mid_stream_raises_after_the_earlier_deltas(
    fake_upstream, provider: OpenAIProvider | AnthropicProvider
) -> None:
    scripted = fake_upstream.script(text="abcdefgh", chunks=4, drop_after=2)

    texts, usages, error = await run(reply(provider))

    assert texts == scripted.pieces()[:2]
    assert all(usage.output_tokens == 0 for usage in usages)  # no final usage
    assert error is not None
    label = "OpenAI" if provider.name == "openai" else "Anthropic"
    assert error.message == f"The connection to {label} dropped before the reply finished."


async def test_drop_before_the_closing_events(
    fake_upstream, provider: OpenAIProvider | AnthropicProvider
) -> None:
    # All text arrived but not the finish/usage: still a failed reply, not a silent success.
    scripted = fake_upstream.script(chunks=3, drop_after=3)

    texts, _, error = await run(reply(provider))

    assert "".join(texts) == scripted.text
    assert error is not None and "dropped" in error.message


async def test_anthropic_error_event_mid_stream(
    fake_upstream, anthropic_provider: AnthropicProvider
) -> None:
    scripted = fake_upstream.script(chunks=4, error_event_after=1)

    texts, usages, error = await run(reply(anthropic_provider))

    assert texts == scripted.pieces()[:1]
    assert [usage.output_tokens for usage in usages] == [0]  # only the early one
    assert error is not None and error.status_code == 529
    assert error.message == "Anthropic is overloaded right now (529). Try again in a little while."


async def test_openai_error_object_mid_stream(
    fake_upstream, openai_provider: OpenAIProvider
) -> None:
    scripted = fake_upstream.script(chunks=4, error_event_after=2)

    texts, usages, error = await run(reply(openai_provider))

    assert texts == scripted.pieces()[:2]
    assert usages == []
    assert error is not None
    assert error.message == (
        "OpenAI reported an error mid-reply: The server had an error mid-stream."
    )


async def test_cancelling_the_consumer_closes_the_upstream_request(
    fake_upstream, provider: OpenAIProvider | AnthropicProvider
) -> None:
    """What Stop relies on: cancelling the task that reads the stream hangs up on the provider."""
    fake_upstream.script(chunks=4, stall_after=1)
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in reply(provider):
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 2)
    assert await asyncio.to_thread(fake_upstream.wait_for_stall, 2)
    assert not fake_upstream.client_disconnected.is_set()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(fake_upstream.wait_for_disconnect, 2)


async def test_closing_the_stream_early_closes_the_upstream_request(
    fake_upstream, provider: OpenAIProvider | AnthropicProvider
) -> None:
    fake_upstream.script(chunks=4, stall_after=1)
    stream = reply(provider)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    assert await asyncio.to_thread(fake_upstream.wait_for_stall, 2)

    await stream.aclose()  # type: ignore[attr-defined]  # GeneratorExit at the pending yield

    assert await asyncio.to_thread(fake_upstream.wait_for_disconnect, 2)


async def test_release_lets_a_stalled_reply_finish(
    fake_upstream, openai_provider: OpenAIProvider
) -> None:
    scripted = fake_upstream.script(chunks=3, stall_after=2)
    asyncio.get_running_loop().call_later(0.1, fake_upstream.release)

    texts, usages, error = await run(reply(openai_provider))

    assert error is None and "".join(texts) == scripted.text and len(usages) == 1


async def test_a_stall_never_released_ends_as_a_drop(
    fake_upstream,
    openai_provider: OpenAIProvider,
    upstream_stall_limit,
) -> None:
    upstream_stall_limit(0.2)
    fake_upstream.script(chunks=3, stall_after=1)

    texts, _, error = await run(reply(openai_provider))

    assert len(texts) == 1 and error is not None and "dropped" in error.message
    assert not fake_upstream.client_disconnected.is_set()  # the server hung up, not the client


async def test_registry_uses_the_configured_base_urls(settings, fake_upstream) -> None:
    settings.OPENAI_API_KEY = "sk-from-settings"
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.ANTHROPIC_API_KEY = "sk-ant-from-settings"
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.CHAT_PROVIDER_MAX_RETRIES = 0

    openai_provider = get_provider("openai")
    anthropic_provider = get_provider("anthropic")
    try:
        assert isinstance(openai_provider, OpenAIProvider)
        assert isinstance(anthropic_provider, AnthropicProvider)
        assert get_provider("openai") is openai_provider  # cached for this loop and config
        for provider in (openai_provider, anthropic_provider):
            texts, _, error = await run(reply(provider))
            assert error is None and texts
        first, second = fake_upstream.requests
        assert first.headers["authorization"] == "Bearer sk-from-settings"
        assert anthropic_key(second) == "sk-ant-from-settings"

        settings.OPENAI_BASE_URL = fake_upstream.base_url + "/other/v1"
        other = get_provider("openai")
        assert other is not openai_provider  # a different URL gets its own client
        await run(reply(other))
        assert fake_upstream.requests[-1].path == "/other/v1/chat/completions"
        await other.aclose()  # type: ignore[attr-defined]
    finally:
        await openai_provider.aclose()  # type: ignore[attr-defined]
        await anthropic_provider.aclose()  # type: ignore[attr-defined]


async def test_a_malformed_chunk_is_a_provider_error_in_words(
    fake_upstream, provider: OpenAIProvider | AnthropicProvider
) -> None:
    scripted = fake_upstream.script(chunks=4, malformed_after=2)

    texts, _usages, error = await run(reply(provider))

    assert texts == scripted.pieces()[:2]
    assert error is not None
    assert "sent a part of the reply that could not be read" in error.message
    assert "our side" not in error.message


# --- How the adapters read ----------------------------------------------------------------------


def test_both_sdks_read_through_their_aiohttp_transport(
    openai_provider: OpenAIProvider, anthropic_provider: AnthropicProvider
) -> None:
    # httpx2's own transport costs about three times the CPU per token (docs/performance.md).
    import anthropic
    import openai

    assert isinstance(openai_provider._client._client, openai.DefaultAioHttpClient)
    assert isinstance(anthropic_provider._client._client, anthropic.DefaultAioHttpClient)
