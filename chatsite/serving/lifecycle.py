"""Process lifecycle under Daphne: the worker starts beating at start-up, and drains at shutdown.

Daphne does not speak the ASGI lifespan protocol, so the hooks are Twisted's: once the reactor
runs (under Daphne it runs the asyncio loop), the worker's heartbeat, sweeper and stop listener
start (chat/replies/workers.py), so a worker that has not run a job yet still ends the replies of a
worker that died. On SIGTERM, before the reactor shuts down, the worker drains: it takes no new
replies (sends get a 503 saying so), lets live ones finish for CHAT_SHUTDOWN_GRACE_SECONDS, then
cancels the rest, and each saves its text and records `interrupted`. Generation jobs are not
application instances (they outlive connections on purpose), so without this they would vanish
with the process and stay `streaming` until another worker's sweeper noticed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

WARM_FREEZE_SECONDS = 60


def install_shutdown_hook() -> None:
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under Daphne (another ASGI server has its own lifecycle)
    from twisted.internet import defer, reactor

    def start_worker() -> None:
        from chat.replies.workers import worker_start

        try:
            worker_start()
        except Exception:
            logger.exception("Starting this worker's heartbeat failed")

    def drain() -> Any:
        from django.conf import settings

        from chat.replies.workers import drain_begin, jobs_interrupt

        drain_begin()
        return defer.Deferred.fromFuture(
            asyncio.ensure_future(jobs_interrupt(grace=settings.CHAT_SHUTDOWN_GRACE_SECONDS))
        )

    # Startup triggers fire before the asyncio loop runs; callLater runs inside it.
    reactor.callWhenRunning(reactor.callLater, 0, start_worker)  # type: ignore[attr-defined]
    # What the first minute of serving built and kept (compiled templates, connections, pools)
    # lives as long as the process too: freeze it as chatsite/asgi.py froze what importing did,
    # so a full collection walks only what is new since (its pauses stall every stream).
    reactor.callWhenRunning(reactor.callLater, WARM_FREEZE_SECONDS, gc.freeze)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", drain)  # type: ignore[attr-defined,arg-type]
