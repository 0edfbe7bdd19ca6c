"""The CPU time of each database step of a reply, under load: every call the writer thread and
the reply database threads run, timed with `time.thread_time()` (CPU of that thread only, so a
wait for the GIL or a lock does not count) and written as JSON at exit.

    BENCH_STEP_STATS=var/bench/steps.json python -m benchmarks.relay --targets chatsite ...

Benchmark-only: it wraps `ReplyWriter._guarded` and replaces `db_read` in the modules that use
it.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_stats: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def _name(function: Callable[..., Any]) -> str:
    inner = getattr(function, "func", function)  # functools.partial
    return getattr(inner, "__name__", repr(inner))


def _timed(label: str, function: Callable[..., Any], *args: Any) -> Any:
    started = time.thread_time()
    try:
        return function(*args)
    finally:
        spent = time.thread_time() - started
        with _lock:
            entry = _stats[label]
            entry[0] += 1
            entry[1] += spent


def install(path: str) -> None:
    import chat.replies.delivery
    import chat.replies.generation
    import chat.replies.workers
    import chat.web.consumers
    import chat.web.updates
    from chat.db import threads as db_threads
    from chat.db import writer

    guarded = writer.ReplyWriter._guarded

    def timed_guarded(function: Callable[..., Any], *args: Any) -> Any:
        return _timed(f"writer: {_name(function)}", guarded, function, *args)

    writer.ReplyWriter._guarded = staticmethod(timed_guarded)  # type: ignore[method-assign]
    db_read = db_threads.db_read

    async def timed_db_call(function: Callable[..., Any], *args: Any) -> Any:
        return await db_read(_timed, f"reply-db: {_name(function)}", function, *args)

    for module in (
        chat.web.consumers,
        chat.replies.delivery,
        chat.replies.generation,
        chat.replies.workers,
        chat.web.updates,
    ):
        module.db_read = timed_db_call  # type: ignore[attr-defined]

    def write() -> None:
        with _lock:
            rows = {
                label: {"calls": n, "cpu_ms": round(s * 1000, 1)}
                for label, (n, s) in _stats.items()
            }
        Path(path).write_text(json.dumps(rows, indent=1))

    atexit.register(write)
