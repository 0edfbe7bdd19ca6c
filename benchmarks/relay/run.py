"""Run the load against one server and measure it: the numbers for one (server, transport, K)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.relay import client, profile
from benchmarks.relay.servers import Server

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


# How the server's threads are named (Python names): the event loop, the reply writer, the
# reply database threads, request and socket threads (chatsite/serving/request_threads.py).
THREAD_KINDS = (
    ("MainThread", "event loop"),
    ("reply-writer", "writer"),
    ("reply-db", "reply database threads"),
    ("request", "request and socket threads"),
)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per OS thread of the process (utime + stime)."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return seconds


def thread_names(server: Server) -> dict[int, str]:
    """OS thread id → Python thread name, from chatsite's benchmark endpoint (single worker)."""
    if not server.counts_writes or len(server.ports) != 1:
        return {}
    with urllib.request.urlopen(  # noqa: S310 - loopback http only
        f"http://127.0.0.1:{server.ports[0]}/__bench__/threads", timeout=30
    ) as response:
        return {int(tid): name for tid, name in json.load(response).items()}


def cpu_by_thread_kind(
    before: dict[int, float], after: dict[int, float], names: dict[int, str]
) -> dict[str, float]:
    """CPU seconds between two snapshots, per kind of thread (threads that ended meanwhile are
    lost; threads without a known name count as "other")."""
    kinds: dict[str, float] = {}
    for tid, seconds in after.items():
        name = names.get(tid, "")
        kind = next((k for prefix, k in THREAD_KINDS if name.startswith(prefix)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + seconds - before.get(tid, 0.0)
    return {kind: round(seconds, 3) for kind, seconds in sorted(kinds.items())}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def runqueue_wait_seconds(pid: int) -> float:
    """Time the server's main thread (its event loop) spent runnable but waiting for the CPU,
    held by another thread or process: on a shared machine, most of the noise in the figures."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def db_writes(server: Server) -> dict[str, int]:
    """Write statements and transactions so far, summed over the server's workers."""
    totals = {"statements": 0, "transactions": 0}
    if not server.counts_writes:
        return totals
    for port in server.ports:
        with urllib.request.urlopen(  # noqa: S310 - loopback http only
            f"http://127.0.0.1:{port}/__bench__/writes", timeout=30
        ) as response:
            for key, value in json.load(response).items():
                totals[key] += value
    return totals


@dataclass(frozen=True)
class Load:
    transport: str  # "ws" or "sse"
    streams: int
    ramp: float  # sends are spread evenly over this many seconds
    tokens: int
    rate: float  # tokens per second from the upstream


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def gather_limited(coroutines: list[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


class Meter:
    """What the server did while a load ran (`async with Meter(...) as meter:` around it): its
    CPU, summed over its workers and by kind of thread for the first, the time its event loops
    waited for the CPU, its peak RSS, its database writes, the CPU of the other core's load
    client and upstream, and the load average at the start. `figures()` are `summarize`'s."""

    def __init__(self, server: Server, *, upstream_pid: int, rss_start: int, rss_idle: int) -> None:
        self.server = server
        self.upstream_pid = upstream_pid
        self.rss_start, self.rss_idle, self.peak_rss = rss_start, rss_idle, rss_idle

    async def __aenter__(self) -> Meter:
        pids = self.server.pids
        self.writes_before = db_writes(self.server)
        self.cpu_before = sum(cpu_seconds(pid) for pid in pids)
        self.threads_before = thread_cpu_seconds(pids[0])
        self.waited_before = sum(runqueue_wait_seconds(pid) for pid in pids)
        self.upstream_cpu_before = cpu_seconds(self.upstream_pid)
        self.own_before = os.times()
        self.load_before = load_average()
        self.sampler = asyncio.create_task(self._sample_rss())
        self.started = time.monotonic()
        return self

    async def _sample_rss(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, sum(rss_bytes(pid) for pid in self.server.pids))
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc_info: object) -> None:
        self.wall = time.monotonic() - self.started
        self.sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sampler
        pids = self.server.pids
        self.cpu = sum(cpu_seconds(pid) for pid in pids) - self.cpu_before
        self.threads_cpu = cpu_by_thread_kind(
            self.threads_before, thread_cpu_seconds(pids[0]), thread_names(self.server)
        )
        self.waited = sum(runqueue_wait_seconds(pid) for pid in pids) - self.waited_before
        upstream_cpu = cpu_seconds(self.upstream_pid) - self.upstream_cpu_before
        own_after = os.times()
        own_cpu = (own_after.user + own_after.system) - (
            self.own_before.user + self.own_before.system
        )
        self.client_cpu = own_cpu + upstream_cpu
        writes_after = db_writes(self.server)
        self.writes = {k: writes_after[k] - self.writes_before[k] for k in writes_after}

    def figures(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "threads_cpu": self.threads_cpu,
            "client_cpu": self.client_cpu,
            "waited": self.waited,
            "rss": (self.rss_start, self.rss_idle, self.peak_rss),
            "writes": self.writes,
            "load_average": self.load_before,
        }


async def measure(
    server: Server,
    load: Load,
    *,
    upstream_pid: int,
    profile_to: Path | None = None,
    profile_gil: bool = False,
) -> dict[str, Any]:
    """Open the visitors (and sockets), send K messages spread over the ramp, read every reply to
    its end, and measure the server while it does."""
    pid_list = server.pids
    port_of = [server.ports[i % len(server.ports)] for i in range(load.streams)]
    chatsite = server.name.startswith("chatsite")
    visitors: list[client.Visitor | None] = [None] * load.streams
    if chatsite:
        visitors = await gather_limited(
            [client.visitor_open(port_of[i]) for i in range(load.streams)], 16
        )
    # After the page loads (sessions, template caches): what follows is the sockets' own memory.
    await asyncio.sleep(0.5)
    rss_start = sum(rss_bytes(pid) for pid in pid_list)
    sockets: list[Any] = []
    if load.transport == "ws":
        if chatsite:
            sockets = [
                client.ChatsiteSocket(port_of[i], visitors[i])  # type: ignore[arg-type]
                for i in range(load.streams)
            ]
        else:
            sockets = [client.BaselineSocket(port_of[i]) for i in range(load.streams)]
        await gather_limited([s.open() for s in sockets], 32)
    await asyncio.sleep(1.0)  # let the server settle after the connections
    rss_idle = sum(rss_bytes(pid) for pid in pid_list)

    loop = asyncio.get_running_loop()
    deadline = load.ramp + load.tokens / load.rate + 60

    async def one(index: int) -> client.StreamResult:
        await asyncio.sleep(max(0.0, start + index * load.ramp / load.streams - loop.time()))
        prompt = f"Benchmark question {index}: tell me a story."
        result = client.StreamResult()
        try:
            if load.transport == "ws":
                run = sockets[index].run(prompt, server.model)
                result = sockets[index].result
                return await asyncio.wait_for(run, deadline)
            if chatsite:
                visitor = visitors[index]
                if visitor is None:
                    raise RuntimeError("not connected")
                return await asyncio.wait_for(
                    client.chatsite_sse(port_of[index], visitor, prompt, server.model, result),
                    deadline,
                )
            return await asyncio.wait_for(
                client.baseline_sse(port_of[index], prompt, result), deadline
            )
        except Exception as exc:  # counted as lost tokens, and reported
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            return result

    with contextlib.ExitStack() as stack:
        if profile_to is not None:
            seconds = load.ramp + load.tokens / load.rate
            stack.enter_context(
                profile.recording(pid_list[0], profile_to, seconds, gil=profile_gil)
            )
        async with Meter(
            server, upstream_pid=upstream_pid, rss_start=rss_start, rss_idle=rss_idle
        ) as meter:
            start = loop.time() + 0.2
            results = await asyncio.gather(*(one(i) for i in range(load.streams)))
    for s in sockets:
        s.close()
    await asyncio.sleep(0.5)
    return summarize(server, load, results, **meter.figures())


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value / 1e6, 2)


def summarize(
    server: Server,
    load: Load,
    results: list[client.StreamResult],
    *,
    wall: float,
    cpu: float,
    threads_cpu: dict[str, float],
    client_cpu: float,
    waited: float,
    rss: tuple[int, int, int],
    writes: dict[str, int],
    load_average: float,
) -> dict[str, Any]:
    added = [ns for r in results for ns in r.added_ns]
    firsts = [r.first_ns - r.sent_ns for r in results if r.first_ns is not None]
    answers = [r.started_ns - r.sent_ns for r in results if r.started_ns is not None]
    received = sum(len(r.seen) for r in results)
    lost = sum(sum(1 for index in range(load.tokens) if r.seen[index] == 0) for r in results)
    doubled = sum(count - 1 for r in results for count in r.seen.values() if count > 1)
    frames = sum(r.frames for r in results)
    rss_start, rss_idle, rss_peak = rss
    errors = sorted({r.error for r in results if r.error})
    return {
        "server": server.name,
        "transport": load.transport,
        "streams": load.streams,
        "ramp_s": load.ramp,
        "tokens_per_reply": load.tokens,
        "tokens_per_second": load.rate,
        "wall_s": round(wall, 2),
        "load_average_1m": load_average,
        "added_ms": {
            "p50": _ms(percentile(added, 50)),
            "p99": _ms(percentile(added, 99)),
            "max": _ms(max(added) if added else None),
        },
        "first_token_ms": {
            "p50": _ms(percentile(firsts, 50)),
            "p99": _ms(percentile(firsts, 99)),
            "max": _ms(max(firsts) if firsts else None),
        },
        "send_answered_ms": {
            "p50": _ms(percentile(answers, 50)),
            "p99": _ms(percentile(answers, 99)),
        },
        "tokens_expected": load.streams * load.tokens,
        "tokens_received": received,
        "lost": lost,
        "doubled": doubled,
        "unfinished": sum(1 for r in results if not r.finished),
        "endings": dict(Counter(r.ending or "none" for r in results)),
        "errors": errors[:5],
        "frames_per_token": round(frames / received, 3) if received else None,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_busy": round(cpu / wall / len(server.pids), 3) if wall else None,
        "server_cpu_ms_per_1000_tokens": round(cpu * 1000 / (received / 1000), 1)
        if received
        else None,
        # Where a reply's CPU goes: per kind of thread, milliseconds per reply (one worker only).
        "server_cpu_ms_per_reply_by_thread": {
            kind: round(seconds * 1000 / load.streams, 1) for kind, seconds in threads_cpu.items()
        },
        "server_waiting_for_cpu": round(waited / wall / len(server.pids), 3) if wall else None,
        "client_core_busy": round(client_cpu / wall, 3) if wall else None,
        "rss_mib": {
            "start": round(rss_start / 2**20, 1),
            "connected": round(rss_idle / 2**20, 1),
            "peak": round(rss_peak / 2**20, 1),
        },
        "rss_kib_per_idle_socket": round((rss_idle - rss_start) / 1024 / load.streams, 1)
        if load.transport == "ws"
        else None,
        "rss_kib_per_active_stream": round((rss_peak - rss_idle) / 1024 / load.streams, 1),
        "db_write_statements_per_reply": round(writes["statements"] / load.streams, 2)
        if server.counts_writes
        else None,
        "db_transactions_per_reply": round(writes["transactions"] / load.streams, 2)
        if server.counts_writes
        else None,
        "db_transactions_per_second": round(writes["transactions"] / wall, 1)
        if server.counts_writes and wall
        else None,
        "mean_added_ms": round(statistics.fmean(added) / 1e6, 2) if added else None,
    }


def passes(result: dict[str, Any], *, p99_limit_ms: float = 100.0) -> bool:
    """The capacity criterion: p99 added latency within the limit, nothing lost or doubled."""
    p99 = result["added_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= p99_limit_ms
        and result["lost"] == 0
        and result["doubled"] == 0
        and result["unfinished"] == 0
    )
