"""OpenAI Chat Completions adapter (also fits OpenAI-compatible servers via OPENAI_BASE_URL)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx2
import openai

from chat.providers.base import (
    ChatTurn,
    Event,
    ProviderError,
    TextDelta,
    Usage,
    openai_name,
    turn_text,
)
from chat.providers.transport import connection_failed

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


class OpenAIProvider:
    """Streams a chat completion from OpenAI's `/chat/completions` endpoint.

    Usage arrives in a last chunk with no choices, because the request asks for
    `stream_options.include_usage`; a stream cut short never sends it, so then no `Usage` is
    yielded. A stream that ends without a `finish_reason` was cut short (a proxy closing the
    connection can look like a clean end) and raises `ProviderError`.
    """

    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, max_retries: int) -> None:
        # The SDK's aiohttp transport (`openai[aiohttp]`): the SDK still builds, authenticates
        # and retries each request, while aiohttp's C parser reads the body. Reading a token
        # through it costs about half of what httpx2's default transport does
        # (docs/journal.md, the third pass on the hot path).
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            http_client=openai.DefaultAioHttpClient(),
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
        messages: list[ChatCompletionMessageParam] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        for turn in turns:
            if turn.role == "user":
                content = _user_content(turn)
                # OpenAI's own field for who wrote a turn, when several people write.
                if name := openai_name(turn.name):
                    messages.append({"role": "user", "name": name, "content": content})
                else:
                    messages.append({"role": "user", "content": content})
            else:
                messages.append({"role": "assistant", "content": turn.content})
        # The raw streaming response: the SDK still builds the request (auth, base_url), retries
        # it and turns an error status into its typed exception, but the body's chunks are read
        # as plain JSON. Its typed parsing of every chunk (pydantic models built per token) was
        # the largest busy item on the event loop (docs/journal.md, the first pass on the hot path).
        request = self._client.chat.completions.with_streaming_response.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=max_output_tokens,
        )
        finished = False
        try:
            # `async with` closes the HTTP response however we leave: end of stream, error, or
            # the consuming task being cancelled (Stop / timeout), which must abort the request.
            async with request as response:
                try:
                    async for data in _sse_data(response.iter_lines()):
                        if data == "[DONE]":
                            break
                        chunk = json.loads(data)
                        if error := chunk.get("error"):
                            message = error.get("message") if isinstance(error, dict) else None
                            raise openai.APIError(
                                message or "An error occurred during streaming",
                                response.http_response.request,
                                body=error,
                            )
                        for choice in chunk.get("choices") or ():
                            if choice.get("index", 0) != 0:
                                continue
                            if content := (choice.get("delta") or {}).get("content"):
                                yield TextDelta(content)
                            if choice.get("finish_reason"):
                                finished = True
                        if usage := chunk.get("usage"):
                            details = usage.get("prompt_tokens_details") or {}
                            yield Usage(
                                input_tokens=usage["prompt_tokens"],
                                output_tokens=usage["completion_tokens"],
                                cached_input_tokens=details.get("cached_tokens") or 0,
                            )
                # The body is read with httpx2 directly, so its errors arrive unwrapped.
                except httpx2.TimeoutException as exc:
                    if connection_failed(exc):
                        raise ProviderError(_DROPPED) from exc
                    raise ProviderError("OpenAI stopped sending the reply (timed out).") from exc
                except (httpx2.TransportError, aiohttp.ClientError) as exc:
                    # aiohttp's errors the SDK's transport does not translate come through as
                    # they are.
                    raise ProviderError(_DROPPED) from exc
        except openai.APIError as exc:
            raise _provider_error(exc, model) from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A chunk that is not JSON, or not shaped like one: the upstream is broken, which
            # is not "our side".
            raise ProviderError(_UNREADABLE.format(name="OpenAI")) from exc
        if not finished:
            raise ProviderError(_DROPPED)


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event (its `data:` lines joined by newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data:
        yield "\n".join(data)


logger = logging.getLogger(__name__)

_DROPPED = "The connection to OpenAI dropped before the reply finished."
_UNREADABLE = "{name} sent a part of the reply that could not be read, so the reply was ended."


def _provider_error(exc: openai.APIError, model: str) -> ProviderError:
    """Word an SDK error so the person chatting knows what went wrong and what to do."""
    if isinstance(exc, openai.APITimeoutError) and not connection_failed(exc):
        return ProviderError("OpenAI did not respond in time. Try again.")
    if isinstance(exc, openai.APIConnectionError):  # a timeout that was a failed connection, too
        logger.error(
            "Could not connect to OpenAI: check the server's network access and "
            "OPENAI_BASE_URL. %s",
            exc,
        )
        return ProviderError("Could not connect to OpenAI. Try again in a moment.")
    if not isinstance(exc, openai.APIStatusError):
        # An error object inside an otherwise successful stream.
        return ProviderError(f"OpenAI reported an error mid-reply: {_detail(exc)}")
    status = exc.status_code
    detail = _detail(exc)
    if status == 401:
        # The visitor is told what happened; the setting to fix is for the operator's log.
        logger.error(
            "OpenAI rejected the API key (401): check OPENAI_API_KEY on the server. %s", detail
        )
        message = "The OpenAI API key was rejected (401). The site's operator has to fix this."
    elif status == 403:
        message = f"OpenAI refused access (403): {detail}"
    elif status == 404:
        message = f"OpenAI could not find model {model!r} (404): {detail}"
    elif status == 429 and exc.code == "insufficient_quota":
        message = "The OpenAI account is out of quota (429). Check its billing."
    elif status == 429:
        message = "OpenAI is rate-limiting this server (429). Wait a moment and try again."
    elif status >= 500:
        message = f"OpenAI had a server error ({status}). Try again shortly."
    else:
        message = f"OpenAI rejected the request ({status}): {detail}"
    return ProviderError(message, status_code=status)


def _detail(exc: openai.APIError) -> str:
    # The SDK puts the body's `error` object in `body`; its message beats the SDK's summary,
    # which embeds the whole body. Bounded, since it lands in the chat transcript.
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) and message else exc.message
    return text if len(text) <= 300 else text[:299] + "…"


def _user_content(turn: ChatTurn) -> Any:
    """A user turn's content: its text (documents included), and its images as `image_url`
    parts with data URLs."""
    if not turn.images:
        return turn_text(turn)
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn_text(turn)}]
    for image in turn.images:
        encoded = base64.b64encode(image.data).decode("ascii")
        parts.append(
            {"type": "image_url", "image_url": {"url": f"data:{image.media_type};base64,{encoded}"}}
        )
    return parts
