"""This process's live generation jobs, by reply.

Below everything else in the reply path, so the job's launcher (`workers`), the reaper (which
spares them) and readers (which need no database read for them) all consult one registry.
"""

from __future__ import annotations

import asyncio

_jobs: set[asyncio.Task[None]] = set()
# The ids of this process's live replies, replaced (never mutated) so that database threads
# (the reaper spares them) can read it while the loop changes it.
_live_ids: frozenset[int] = frozenset()


def live_reply_ids() -> frozenset[int]:
    return _live_ids


def live_jobs() -> list[asyncio.Task[None]]:
    return list(_jobs)


def job_track(message_id: int, task: asyncio.Task[None]) -> None:
    """Hold the job until it ends (the loop keeps only weak references to tasks)."""
    global _live_ids
    _jobs.add(task)
    _live_ids = _live_ids | {message_id}
    task.add_done_callback(lambda _task: _job_done(message_id, task))


def _job_done(message_id: int, task: asyncio.Task[None]) -> None:
    global _live_ids
    _jobs.discard(task)
    _live_ids = _live_ids - {message_id}
