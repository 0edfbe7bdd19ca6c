"""Threads for the synchronous work of each request and WebSocket, kept for the next one.

Django's ASGI handler gives each request a `ThreadSensitiveContext`, so one request's sync code
(middleware hooks, sync views, the ORM) never waits behind another's. Without an executor,
that context starts a new thread for the request and another to join it at the end: two thread
starts per request, which made a trivial view cost 3.2 ms of CPU instead of 1.2 ms
(docs/journal.md, the second pass on the hot path). Here each request gets a one-thread
executor of its own from a pool of idle ones instead (asgiref's
`ThreadSensitiveContext(executor=...)`; Django's own context then nests inside it and does
nothing). A request still never shares its thread with another in-flight request; only
finished requests' threads are reused. A WebSocket holds its thread for as long as it is open
(its consumer's own context nests the same way). Past `size` idle threads, one is closed
rather than kept; a closed thread's, or a socket's, database connections are closed first.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.db import connections


class RequestThreads:
    def __init__(self, app: Any, *, size: int) -> None:
        self.app = app
        self.size = size
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        executor = (
            self.idle.pop()
            if self.idle
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        )
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            if scope["type"] == "websocket" or len(self.idle) >= self.size:
                # Django closes a request's connections when it finishes (CONN_MAX_AGE = 0); a
                # socket's sync calls may leave one open, which an idle thread must not keep.
                executor.submit(connections.close_all)
            if len(self.idle) < self.size:
                self.idle.append(executor)
            else:
                executor.shutdown(wait=False)
