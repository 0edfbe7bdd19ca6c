"""The API's HTTP layer: bearer-key auth, OpenAI's error shape, and the reply as a completion or
as `chat.completion.chunk` events. Thin: `completions` and `chat.replies.start` do the work.

No cookies and no session: these views never touch `request.session` or `request.user`, so
no session row is created, and they are exempt from CSRF (there is no cookie to forge).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from chat import providers
from chat.api import wire
from chat.api.completions import completion_get, completion_start, visitor_for
from chat.api.keys import api_key_authenticate
from chat.conversations.errors import (
    ChatInputError,
    RateLimited,
    ServiceUnavailable,
    SpendingCapReached,
)
from chat.conversations.limits import TooManyReaders, reader_acquire, request_client_ip
from chat.conversations.reads import Visitor
from chat.db import db_read
from chat.http.backpressure import (
    ResponseConnection,
    event_stream_response,
    reader_stream,
)
from chat.models import ApiKey, Message
from chat.replies import start as services
from chat.replies.delivery import reply_text_updates, reply_wait
from chat.telemetry import metrics

logger = logging.getLogger(__name__)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def _error_response(error: wire.WireError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def api_view(*methods: str) -> Callable[[View], View]:
    """An API endpoint: off (404) unless CHAT_API_ENABLED, CSRF-exempt, the allowed methods,
    and every WireError answered in OpenAI's error shape."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                if not settings.CHAT_API_ENABLED:
                    raise wire.WireError(404, "The API is not enabled on this server.")
                if request.method not in methods:
                    raise wire.WireError(
                        405, f"Method {request.method} is not allowed here.", code="method"
                    )
                return await view(request, *args, **kwargs)
            except RequestDataTooBig:
                return _error_response(_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
            except wire.WireError as error:
                return _error_response(error)

        return csrf_exempt(wrapper)

    return decorate


def _too_large(limit: int) -> wire.WireError:
    return wire.WireError(
        413,
        f"The request body is too large (the limit is {limit:,} bytes).",
        code="request_too_large",
    )


def _completion_body(request: HttpRequest) -> bytes:
    """The body of a completion request, up to CHAT_API_MAX_BODY_BYTES (images come inline as
    base64), read past Django's DATA_UPLOAD_MAX_MEMORY_SIZE, which every other request keeps."""
    limit = settings.CHAT_API_MAX_BODY_BYTES
    declared = request.META.get("CONTENT_LENGTH", "")
    if str(declared).isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    return body


async def _api_key(request: HttpRequest) -> ApiKey:
    scheme, _, raw_key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw_key.strip():
        raise wire.WireError(
            401,
            "You didn't provide an API key. Send it in the Authorization header: "
            "'Authorization: Bearer YOUR_KEY'. Create one at /settings/api-keys.",
            code="missing_api_key",
        )
    api_key = await db_read(api_key_authenticate, raw_key.strip())
    if api_key is None:
        raise wire.WireError(
            401,
            "Incorrect API key provided. You can create and revoke keys at /settings/api-keys.",
            code="invalid_api_key",
        )
    return api_key


@api_view("GET")
async def models(request: HttpRequest) -> HttpResponseBase:
    await _api_key(request)
    return JsonResponse(wire.models_list())


@api_view("GET")
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponseBase:
    await _api_key(request)
    option = providers.resolve_model(model_id)
    if option is None:
        raise wire.WireError(
            404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
        )
    return JsonResponse(wire.model_object(option))


@api_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    api_key = await _api_key(request)
    body = await asyncio.to_thread(_completion_body, request)
    completion = await asyncio.to_thread(wire.parse_completion_request, body)
    del body  # up to CHAT_API_MAX_BODY_BYTES: not held while the images are read
    visitor = visitor_for(api_key, client_ip=request_client_ip(request))
    try:
        started = await completion_start(api_key=api_key, visitor=visitor, request=completion)
    except ChatInputError as exc:
        raise _wire_refusal(exc) from None
    except (DatabaseError, RedisError, OSError):
        logger.exception("Starting an API reply failed")
        raise wire.WireError(
            503,
            "The service could not start a reply just now. Try again shortly.",
            type="server_error",
            code="service_unavailable",
            retry_after=5,
        ) from None
    message = started.assistant_message
    if completion.stream:
        return _streaming_response(
            request, visitor, started, include_usage=completion.include_usage
        )
    # A client that hangs up here cancels only this wait: the reply is a job and is saved.
    await reply_wait(message.pk, timeout=settings.CHAT_REPLY_TIMEOUT + 30)
    ended = await db_read(_message_with_conversation, message.pk)
    failure = wire.ending_error(ended, completion=wire.completion_id(ended.conversation_id))
    if failure is not None:
        raise failure
    return JsonResponse(wire.completion_object(ended, conversation_id=ended.conversation_id))


# A refused start in OpenAI's words: (status, type, code), the most specific class first.
_REFUSALS: tuple[tuple[type[ChatInputError], int, str, str], ...] = (
    (SpendingCapReached, 429, "insufficient_quota", "insufficient_quota"),
    (RateLimited, 429, "requests", "rate_limit_exceeded"),
    (ServiceUnavailable, 503, "server_error", "service_unavailable"),
)


def _wire_refusal(exc: ChatInputError) -> wire.WireError:
    for kind, status, error_type, code in _REFUSALS:
        if isinstance(exc, kind):
            return wire.WireError(
                status,
                exc.message,
                type=error_type,
                code=code,
                retry_after=getattr(exc, "retry_after", None),
            )
    return wire.invalid(exc.message, param="messages")


def _streaming_response(
    request: HttpRequest,
    visitor: Visitor,
    started: services.ReplyStarted,
    *,
    include_usage: bool,
) -> HttpResponseBase:
    message = started.assistant_message
    writer = wire.ChunkWriter(
        id=wire.completion_id(started.conversation.pk),
        created=int(message.created_at.timestamp()),
        model=wire.model_id(message),
        include_usage=include_usage,
    )
    # A streaming response is a reader like the page's SSE: it takes a reader slot of the
    # person and the IP. Refused, the reply still runs and can be fetched by its id.
    try:
        slot = reader_acquire(visitor)
    except TooManyReaders as exc:
        raise wire.WireError(
            429,
            f"{exc.message} The reply was started: GET /v1/chat/completions/{writer.id}.",
            type="requests",
            code="rate_limit_exceeded",
            retry_after=exc.retry_after,
        ) from None
    # Dropped when it does not read: the reply goes on, and the client can fetch it by its id.
    events = reader_stream(
        _chunk_events(message.pk, writer),
        connection=ResponseConnection(request),
        release=slot.release,
    )
    return event_stream_response(events, release=slot.release)


async def _chunk_events(message_id: int, writer: wire.ChunkWriter) -> AsyncIterator[str]:
    yield writer.role()
    updates = reply_text_updates(message_id, idle_seconds=settings.CHAT_SSE_PING_SECONDS)
    async for update in metrics.reading("api", updates):
        if update is None:
            yield ": ping\n\n"
            continue
        if update.text:
            yield writer.content(update.text)
        if update.final:
            break
    try:
        ended = await db_read(functools.partial(Message.objects.get, pk=message_id))
    except DatabaseError:
        logger.exception("Reading the end of API reply %s failed", message_id)
        yield wire.sse(
            wire.WireError(
                503, "The reply's ending could not be read.", code="service_unavailable"
            ).body()
        )
        return
    failure = wire.ending_error(ended, completion=writer.id)
    if failure is not None:
        # OpenAI reports a failure mid-stream as a data line carrying an `error` object; its
        # SDKs raise it as an APIError.
        yield wire.sse(failure.body())
        return
    yield writer.finish(wire.finish_reason(ended) or "stop")
    if writer.include_usage:
        yield writer.usage(ended)
    yield wire.DONE


async def _stored(request: HttpRequest, completion_id: str) -> tuple[ApiKey, Message]:
    api_key = await _api_key(request)
    message = await db_read(
        functools.partial(completion_get, user=api_key.user, completion_id=completion_id)
    )
    if message is None:
        raise wire.WireError(
            404, f"No chat completion found with id '{completion_id}'.", param="completion_id"
        )
    return api_key, message


def _stored_object(message: Message) -> dict[str, Any]:
    return wire.completion_object(
        message,
        conversation_id=message.conversation_id,
        metadata={
            "status": message.status,
            "ended_reason": message.ended_reason,
            "conversation": str(message.conversation_id),
        },
    )


@api_view("GET")
async def completion_detail(request: HttpRequest, completion_id: str) -> HttpResponseBase:
    """The stored completion: the reply as saved so far (a streaming one has the text of its
    last save and finish_reason null)."""
    _, message = await _stored(request, completion_id)
    return JsonResponse(_stored_object(message))


@api_view("POST")
async def completion_cancel(request: HttpRequest, completion_id: str) -> HttpResponseBase:
    """Stop a streaming reply (not part of OpenAI's API): it ends as stopped, its text kept."""
    api_key, message = await _stored(request, completion_id)
    if message.is_streaming:
        await services.reply_stop(
            visitor=visitor_for(api_key, client_ip=request_client_ip(request)),
            conversation_id=str(message.conversation_id),
        )
        await reply_wait(message.pk, timeout=10)
        message = await db_read(_message_with_conversation, message.pk)
    return JsonResponse(_stored_object(message))


def _message_with_conversation(message_id: int) -> Message:
    return Message.objects.select_related("conversation").get(pk=message_id)
