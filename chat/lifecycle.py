"""Process lifecycle under Daphne: live replies end cleanly when the server stops.

Daphne cancels its application instances at shutdown, but generation jobs are not application
instances (they outlive connections on purpose), so without this hook they would vanish with the
process and their replies would stay `streaming` until a reaper noticed. Instead, before the
Twisted reactor shuts down, every live job is cancelled and awaited: each one saves its text and
records `interrupted`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


def install_shutdown_hook() -> None:
    if "twisted.internet.reactor" not in sys.modules:
        return  # not under Daphne (another ASGI server has its own lifecycle)
    from twisted.internet import defer, reactor

    def interrupt_jobs() -> Any:
        from chat.jobs import jobs_interrupt

        return defer.Deferred.fromFuture(asyncio.ensure_future(jobs_interrupt()))

    reactor.addSystemEventTrigger("before", "shutdown", interrupt_jobs)  # type: ignore[attr-defined,arg-type]
