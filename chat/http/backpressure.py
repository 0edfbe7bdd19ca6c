"""How much Daphne holds unsent for a connection, so transports can drop readers that don't read.

Daphne writes to a socket without backpressure: when a client stops reading, the kernel's buffers
fill and Twisted keeps everything else in memory, without bound. The ASGI interface has no way to
ask how much is waiting, so this wrapper looks at the Twisted transport behind Daphne's `send`
(chat/adapters/daphne_transport.py) and puts a `chatsite.buffered`
callable in the scope (and `chatsite.abort`, which drops the connection). Under any other
server, or if Daphne changes, it reports 0 and nothing is dropped (the per-reply size cap still
bounds what one reply can queue).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, StreamingHttpResponse

from chat.adapters.daphne_transport import aborter, buffered_bytes, transport_of
from chat.adapters.django_response import on_close

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class BufferedBytesMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            transport = transport_of(send)
            if transport is not None:
                scope = dict(scope)
                scope["chatsite.buffered"] = functools.partial(buffered_bytes, transport)
                if abort := aborter(transport):
                    scope["chatsite.abort"] = abort
        await self.app(scope, receive, send)


async def request_connections_release() -> None:
    """Close the database connections of the calling request's thread (its thread-sensitive
    context's). An event stream calls this before its first event: it can last minutes, and its
    reads run on the reply database threads, so the connection its request opened for its checks
    would sit idle all that time — with 100 SSE readers, 100 PostgreSQL connections, the
    default limit, and the next sends failed with "too many clients"."""
    await sync_to_async(connections.close_all)()


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_data(text: str) -> str:
    """`text` as an event's data: one `data:` line per line (SSE ends a line at \r, \n or \r\n;
    the client joins them with newlines again)."""
    return "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text))


async def reader_stream(
    events: AsyncIterator[str],
    *,
    connection: ResponseConnection,
    release: Callable[[], None],
    drain_seconds: float | None = None,
) -> AsyncIterator[str]:
    """What every event stream of a reply does around its events (the page's SSE, the API's):
    it gives back its request's database connection first, drops a client that does not read
    rather than queue the reply for it, keeps its reader slot until the client has taken what
    was sent (`drain_seconds`), and gives the slot back (`release`) however it ends.

    Under ASGI a client that goes away cancels this generator: the reply is a job that does not
    depend on us, so it carries on and is saved; only the slot is ours to give back."""
    cap = settings.CHAT_MAX_CONNECTION_BUFFER_BYTES
    try:
        await request_connections_release()
        async for event in events:
            if connection.buffered() > cap:
                # A reader that was only slow reconnects and resumes from where it was.
                connection.abort()
                return
            yield event
        # The last event can be the whole reply: otherwise one visitor could leave any number
        # of finished responses queued here. One that is not taken in time is dropped.
        if drain_seconds is not None and not await connection.drained(timeout=drain_seconds):
            connection.abort()
    finally:
        release()


def event_stream_response(events: Any, *, release: Callable[[], None]) -> StreamingHttpResponse:
    """An unbuffered text/event-stream response (the page's SSE and the API's stream).
    `release` gives back the reader's slot: Django closes every response it sent, even one
    whose stream never started, so it is called then at the latest."""
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    on_close(response, release)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must not buffer the stream
    return response


class ResponseConnection:
    """What the ASGI wrapper below lets a streaming view know of its connection under Daphne: how
    much is queued for it, and a way to drop it. Elsewhere, nothing is ever queued."""

    def __init__(self, request: HttpRequest) -> None:
        scope = getattr(request, "scope", {})
        self.buffered: Callable[[], int] = scope.get("chatsite.buffered") or (lambda: 0)
        self._abort: Callable[[], None] | None = scope.get("chatsite.abort")

    def abort(self) -> None:
        if self._abort is not None:
            self._abort()

    async def drained(self, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.buffered() > 0:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True
