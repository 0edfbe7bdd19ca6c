"""Anthropic Messages API adapter.

Usage comes in twice. Anthropic states the exact input tokens at `message_start`, before any
text, so right after it this adapter yields an early `Usage` with `output_tokens=0`; a reply
stopped mid-way can still be costed from it. When the stream completes, a final `Usage` with
the real output total follows. Consumers keep the last `Usage` they saw: one with
`output_tokens == 0` after text has arrived is partial, and the output must be estimated.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import anthropic
import anyio
import httpx2

from chat.providers.base import (
    ChatTurn,
    Event,
    ProviderError,
    TextDelta,
    Usage,
    named_content,
)
from chat.providers.transport import connection_failed

if TYPE_CHECKING:
    from anthropic.types import MessageParam
    from anthropic.types import Usage as AnthropicUsage


class AnthropicProvider:
    """Streams a reply from Anthropic's `/v1/messages` endpoint.

    Anthropic's `input_tokens` excludes prompt-cache reads and writes, so the reported input is
    their sum (matching `Usage`, which counts every prompt token). `message_delta` carries a
    running output total, not an increment; the SDK's accumulated message holds the final one.
    An `error` event inside the stream (e.g. `overloaded_error`) and a stream that ends before
    `message_stop` both raise `ProviderError`. See the module docstring for the early `Usage`.
    """

    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, max_retries: int) -> None:
        # The SDK's aiohttp transport (`anthropic[aiohttp]`), as for OpenAI: the SDK builds,
        # authenticates and retries requests; aiohttp reads the body for less CPU per token.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            http_client=anthropic.DefaultAioHttpClient(),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(
        self,
        turns: Sequence[ChatTurn],
        *,
        model: str,
        system_prompt: str = "",
        max_output_tokens: int,
    ) -> AsyncIterator[Event]:
        messages: list[MessageParam] = []
        for turn in turns:
            if turn.role == "user":
                # Anthropic has no name field: the author goes in front of the text.
                messages.append({"role": "user", "content": _user_content(turn)})
            else:
                messages.append({"role": "assistant", "content": turn.content})
        finished = False
        try:
            # `async with` closes the HTTP response however we leave: end of stream, error, or
            # the consuming task being cancelled (Stop / timeout), which must abort the request.
            async with self._client.messages.stream(
                model=model,
                max_tokens=max_output_tokens,
                system=system_prompt or anthropic.omit,
                messages=messages,
            ) as events:
                async for event in events:
                    if event.type == "message_start":
                        yield _usage(event.message.usage, output_tokens=0)
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield TextDelta(event.delta.text)
                    elif event.type == "message_stop":
                        finished = True
                        final = event.message.usage
                        yield _usage(final, output_tokens=final.output_tokens)
        except anthropic.APIError as exc:
            raise _provider_error(exc, model) from exc
        except httpx2.TimeoutException as exc:
            if connection_failed(exc):
                raise ProviderError(_DROPPED) from exc
            raise ProviderError("Anthropic stopped sending the reply (timed out).") from exc
        except (httpx2.TransportError, ssl.SSLError, anyio.EndOfStream, aiohttp.ClientError) as exc:
            # Unlike OpenAI's, this SDK lets errors reading the body through unwrapped; the TLS
            # ones are those httpx2 leaves unmapped (the OpenAI SDK wraps the same three), and
            # aiohttp's those its transport does not translate.
            raise ProviderError(_DROPPED) from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A chunk that is not JSON, or not shaped like an event: the upstream is broken.
            raise ProviderError(
                "Anthropic sent a part of the reply that could not be read, so the reply was ended."
            ) from exc
        if not finished:
            raise ProviderError(_DROPPED)


logger = logging.getLogger(__name__)

_DROPPED = "The connection to Anthropic dropped before the reply finished."


def _usage(usage: AnthropicUsage, *, output_tokens: int) -> Usage:
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return Usage(
        input_tokens=usage.input_tokens + cache_read + cache_write,
        output_tokens=output_tokens,
        cached_input_tokens=cache_read,
    )


def _provider_error(exc: anthropic.APIError, model: str) -> ProviderError:
    """Word an SDK error so the person chatting knows what went wrong and what to do."""
    if isinstance(exc, anthropic.APITimeoutError) and not connection_failed(exc):
        return ProviderError("Anthropic did not respond in time. Try again.")
    if isinstance(exc, anthropic.APIConnectionError):
        # Raised before any reply (connect failures); drops mid-body surface as transport errors.
        logger.error(
            "Could not connect to Anthropic: check the server's network access and "
            "ANTHROPIC_BASE_URL. %s",
            exc,
        )
        return ProviderError("Could not connect to Anthropic. Try again in a moment.")
    if not isinstance(exc, anthropic.APIStatusError):
        return ProviderError(f"Anthropic reported an error: {exc.message}")
    status = exc.status_code
    if status < 400:
        # An `error` event inside a 200 stream comes through with the response's status (200);
        # its body's error type says what really happened.
        status = _STATUS_BY_TYPE.get(exc.type or "", 500)
    detail = _detail(exc)
    if status == 401:
        # The visitor is told what happened; the setting to fix is for the operator's log.
        logger.error(
            "Anthropic rejected the API key (401): check ANTHROPIC_API_KEY on the server. %s",
            detail,
        )
        message = "The Anthropic API key was rejected (401). The site's operator has to fix this."
    elif status == 403:
        message = f"Anthropic refused access (403): {detail}"
    elif status == 404:
        message = f"Anthropic could not find model {model!r} (404): {detail}"
    elif status == 429:
        message = "Anthropic is rate-limiting this server (429). Wait a moment and try again."
    elif status == 529:
        message = "Anthropic is overloaded right now (529). Try again in a little while."
    elif status >= 500:
        message = f"Anthropic had a server error ({status}). Try again shortly."
    else:
        message = f"Anthropic rejected the request ({status}): {detail}"
    return ProviderError(message, status_code=status)


_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _detail(exc: anthropic.APIStatusError) -> str:
    # `api_message` is the body's error.message; the SDK's own message embeds the whole body.
    # Bounded, since it lands in the chat transcript.
    text = exc.api_message or exc.message
    return text if len(text) <= 300 else text[:299] + "…"


def _user_content(turn: ChatTurn) -> Any:
    """A user turn's content: its images as base64 `image` blocks, then its text (documents
    included), as Anthropic recommends."""
    if not turn.images:
        return named_content(turn)
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image.media_type,
                "data": base64.b64encode(image.data).decode("ascii"),
            },
        }
        for image in turn.images
    ]
    blocks.append({"type": "text", "text": named_content(turn)})
    return blocks
