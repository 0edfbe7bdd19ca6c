"""chatsite's own ASGI application, unchanged, plus a count of its database writes.

    daphne benchmarks.relay.chatsite_asgi:application

Every database connection gets an execute wrapper (Django's documented hook) that counts write
statements (INSERT, UPDATE, DELETE) and the transactions that commit them: a write in autocommit
mode is one transaction, writes inside `atomic()` count once when it commits. The benchmark
reads the counts from `GET /__bench__/writes`, answered here without entering Django, so reading
them writes nothing and costs the server almost nothing. `GET /__bench__/threads` names the
server's threads by OS thread id. With BENCH_CPROFILE=<file>, the event loop's thread is
profiled with cProfile and the stats written to that file at exit; with BENCH_STEP_STATS=<file>,
the CPU time of each database step (benchmarks/relay/step_stats.py); with BENCH_GC_STATS=<file>,
every garbage collection's generation and pause.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from django.db.backends.signals import connection_created

from chatsite.asgi import application as chatsite_application

_lock = threading.Lock()
counts = {"statements": 0, "transactions": 0}
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _count(kind: str) -> None:
    with _lock:
        counts[kind] += 1


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    pending = {"writes": False}

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip()[:7].upper().startswith(WRITES):
            _count("statements")
            if connection.get_autocommit():
                _count("transactions")
            else:
                pending["writes"] = True
        return execute(sql, params, many, context)

    original_commit = connection.commit

    def commit() -> None:
        original_commit()
        if pending["writes"]:
            pending["writes"] = False
            _count("transactions")

    def rollback() -> None:
        pending["writes"] = False
        original_rollback()

    original_rollback = connection.rollback
    connection.commit = commit
    connection.rollback = rollback
    connection.execute_wrappers.append(wrapper)


connection_created.connect(_install)


def _threads() -> dict[int, str]:
    """The Python name of each thread by its OS id, so the benchmark can split the server's CPU
    (read per OS thread from /proc) by kind of thread."""
    return {thread.native_id: thread.name for thread in threading.enumerate() if thread.native_id}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] in ("/__bench__/writes", "/__bench__/threads"):
        with _lock:
            answer = counts if scope["path"].endswith("writes") else _threads()
            body = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await chatsite_application(scope, receive, send)


if profile_path := os.environ.get("BENCH_CPROFILE"):
    # A deterministic profile of the event loop's thread for the server's whole life (call
    # counts: per token or per reply?), written when Daphne exits. Slows the server ~2x.
    import atexit
    import cProfile

    _profiler = cProfile.Profile()
    _profiler.enable()
    atexit.register(lambda: (_profiler.disable(), _profiler.dump_stats(profile_path)))

if stats_path := os.environ.get("BENCH_STEP_STATS"):
    from benchmarks.relay import step_stats

    step_stats.install(stats_path)

if gc_path := os.environ.get("BENCH_GC_STATS"):
    import atexit
    import gc
    import time

    _gc_started: list[float] = [0.0]
    _gc_pauses: list[tuple[int, float]] = []

    def _gc_callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_started[0] = time.perf_counter()
        else:
            _gc_pauses.append((info["generation"], time.perf_counter() - _gc_started[0]))

    gc.callbacks.append(_gc_callback)
    atexit.register(
        lambda: open(gc_path, "w").write(  # noqa: SIM115 - at exit
            json.dumps({"pauses": _gc_pauses, "objects": len(gc.get_objects())})
        )
    )
