"""Redis under the reply path's command pattern, scaled down, to check the capacity plan.

    .venv/bin/python -m benchmarks.redis_capacity [--streams 1000] [--workers 2] [--seconds 20]

docs/scaling.md plans Redis for 1,000 to 100,000 concurrent streams from unit costs. This runs
that load against a real redis-server of its own, without Daphne or Django, so that what is
measured is Redis: `--workers` processes each play a worker publishing its share of `--streams`
replies as the product does (chat/replies/stream/publisher.py and redis.py) — one pipeline per
`--window-ms` tick with one XADD per reply that has new tokens (ids `0-<seq>`, EXPIRE with the
first), an end entry after `--tokens` tokens, then the next reply — while a `--remote` share of
the replies has one reader on another worker, followed as a worker follows them: one XREAD BLOCK
naming all of them from their last ids, woken through a wake stream when one joins. Each worker
also marks itself alive (SET with expiry) every 2.5 s.

Reports, for the measured `--seconds` after a warm-up: what was achieved against the intended
token rate (if the publishers fall behind, the machine ran out before Redis did), Redis's CPU
(utime + stime of the server process), its commands per second by name, CPU per 1,000 commands
and per 1,000 tokens, network bytes per token both ways, and memory per live stream; then what
the measured unit costs extrapolate to at 1,000, 10,000 and 100,000 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

from tests.support.servers import redis_server

TOKEN = "word "  # noqa: S105 - ~5 characters a token, as English replies average
PREFIX = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _worker(url: str, index: int, args: argparse.Namespace, stop_at: float, out: Any) -> None:
    measure_from = stop_at - args.seconds
    client = aredis.Redis.from_url(url, max_connections=10_000)
    streams = args.streams // args.workers
    window = args.window_ms / 1000
    tokens_per_tick = args.tokens_per_second * window
    # Reply n of this worker: its id, its seq so far; a fresh id when one ends.
    next_id = index * 10_000_000
    replies: dict[int, float] = {}  # id -> tokens written (fractional between ticks)
    for n in range(streams):
        next_id += 1
        # Spread the starts so replies do not all end on the same tick.
        replies[next_id] = float(n * (args.tokens - 1) // streams)
    # The replies this worker's remote readers follow: key -> last seq read. One blocking XREAD
    # names them all, as a worker's follower does (chat/replies/stream/redis.py); a reply that
    # joins wakes it through the worker's wake stream.
    following: dict[bytes, int] = {}
    wake_key = f"{PREFIX}:wake:{{{index}}}"
    wakes = 0
    texts_of = {n: [TOKEN] * n for n in range(1, 8)}
    tokens_done = 0
    ticks = 0
    late = 0.0

    async def follow() -> None:
        wake_id = await client.xadd(wake_key, {"w": "0"}, maxlen=10)
        while True:
            if not following:
                await asyncio.sleep(window)
                continue
            streams: dict[Any, Any] = {key: f"0-{last}" for key, last in following.items()}
            streams[wake_key] = wake_id
            got = await client.xread(streams, block=15_000, count=1000)
            for key, entries in got or []:
                if key == wake_key.encode():
                    wake_id = entries[-1][0]
                    continue
                for entry_id, fields in entries:
                    if fields.get(b"k") == b"end":
                        following.pop(key, None)
                        break
                    following[key] = int(entry_id.split(b"-")[1])

    def start_reader(message_id: int) -> None:
        nonlocal wakes
        if (message_id % 100) < args.remote * 100:
            following[f"{PREFIX}:reply:{{{message_id}}}".encode()] = 0
            wakes += 1

    follower = asyncio.create_task(follow())
    for message_id in replies:
        start_reader(message_id)
    loop = asyncio.get_running_loop()
    next_tick = last_tick = loop.time()
    next_beat = 0.0
    while time.time() < stop_at:
        measuring = time.time() >= measure_from
        async with client.pipeline(transaction=False) as pipe:
            ended = []
            # Tokens arrive with time; a late tick sends all that arrived since, in one entry.
            step = tokens_per_tick * max(1.0, (loop.time() - last_tick) / window)
            last_tick = loop.time()
            for message_id, done in list(replies.items()):
                now_done = min(float(args.tokens), done + step)
                replies[message_id] = now_done
                before, after = max(0, int(done)), max(0, int(now_done))
                if after <= before:
                    continue
                key = f"{PREFIX}:reply:{{{message_id}}}"
                texts = texts_of.get(after - before) or [TOKEN] * (after - before)
                fields = {"k": "d", "s": before + 1, "t": json.dumps(texts)}
                pipe.xadd(key, fields, id=f"0-{after}")
                if before == 0:
                    pipe.expire(key, 3600 + 300)
                if measuring:
                    tokens_done += after - before
                if after >= args.tokens:
                    pipe.xadd(key, {"k": "end", "t": "complete"}, id=f"0-{after + 1}")
                    pipe.expire(key, 3600)
                    ended.append(message_id)
            if wakes:
                pipe.xadd(wake_key, {"w": "1"}, maxlen=10, approximate=True)
                wakes = 0
            if loop.time() >= next_beat:
                pipe.set(f"{PREFIX}:worker:{index}", "1", ex=10)
                next_beat = loop.time() + 2.5
            await pipe.execute()
        ticks += 1
        for message_id in ended:
            del replies[message_id]
            next_id += 1
            replies[next_id] = 0.0
            start_reader(next_id)
        next_tick += window
        delay = next_tick - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late += -delay
            next_tick = loop.time()
    follower.cancel()
    await client.aclose()
    out.put({"tokens": tokens_done, "ticks": ticks, "late": late})


def _run_worker(url: str, index: int, args: argparse.Namespace, stop_at: float, out: Any) -> None:
    asyncio.run(_worker(url, index, args, stop_at, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokens-per-second", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=300, help="tokens per reply")
    parser.add_argument("--window-ms", type=int, default=50)
    parser.add_argument("--remote", type=float, default=0.5, help="share of replies read elsewhere")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    with redis_server(Path(tempfile.mkdtemp(prefix="chatsite-redis-capacity-"))) as (url, server):
        admin = redis.Redis.from_url(url)
        out: multiprocessing.Queue[dict[str, float]] = multiprocessing.Queue()
        stop_at = time.time() + args.warmup + args.seconds
        processes = [
            multiprocessing.Process(target=_run_worker, args=(url, i, args, stop_at, out))
            for i in range(args.workers)
        ]
        for process in processes:
            process.start()
        time.sleep(args.warmup)
        admin.config_resetstat()
        cpu_before, wall_before = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(args.seconds - 0.5)
        cpu = _cpu_seconds(server.pid) - cpu_before
        wall = time.monotonic() - wall_before
        stats = admin.info("commandstats")
        net = admin.info("stats")
        memory = admin.info("memory")["used_memory"]
        keys = admin.dbsize()
        results = [out.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(30)

    commands = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    total_commands = sum(commands.values())
    # Tokens in the measured part: the publishers' share of the whole run.
    tokens = sum(r["tokens"] for r in results) * (wall / args.seconds)
    intended = args.streams * args.tokens_per_second * wall
    late = max(r["late"] for r in results)
    per_second = total_commands / wall
    cpu_per_k_commands = cpu / total_commands * 1000 * 1000  # ms
    cpu_per_k_tokens = cpu / tokens * 1000 * 1000  # ms
    bytes_in = net["total_net_input_bytes"] / tokens
    bytes_out = net["total_net_output_bytes"] / tokens
    print(  # noqa: T201
        f"{args.streams} streams × {args.tokens_per_second:g} tok/s on {args.workers} simulated "
        f"workers, {args.window_ms} ms windows, {args.remote:.0%} read on another worker; "
        f"measured {wall:.1f} s"
    )
    print(  # noqa: T201
        f"  tokens: {tokens / wall:,.0f}/s of {intended / wall:,.0f}/s intended "
        f"({tokens / intended:.0%}); publishers behind by up to {late:.1f} s in all"
    )
    print(  # noqa: T201
        f"  Redis: {per_second:,.0f} commands/s "
        + ", ".join(f"{name} {calls / wall:,.0f}" for name, calls in sorted(commands.items()))
    )
    print(  # noqa: T201
        f"  Redis CPU: {cpu / wall:.0%} of a core; {cpu_per_k_commands:.1f} ms per 1,000 commands, "
        f"{cpu_per_k_tokens:.1f} ms per 1,000 tokens"
    )
    print(  # noqa: T201
        f"  network per token: {bytes_in:.0f} B in, {bytes_out:.0f} B out; memory "
        f"{memory / 2**20:.0f} MiB for {keys:,} keys ({memory / max(1, keys) / 1024:.1f} KiB a key)"
    )
    # The design's rate when windows are on time (the simulators on this machine may run late,
    # sending more tokens per entry): an entry per reply per window while it streams, two
    # EXPIREs and an end entry per reply; the remote readers' reads are one or two per worker per
    # window, whatever the streams, so per stream they vanish as streams grow.
    entries = min(args.tokens_per_second, 1000 / args.window_ms)
    per_stream = entries + 3 * args.tokens_per_second / args.tokens
    ticks = sum(r["ticks"] for r in results) / len(results) / (args.warmup + args.seconds)
    print(  # noqa: T201
        f"  ticks came {1000 / ticks:.0f} ms apart (intended {args.window_ms}); at the intended "
        f"windows a stream costs {per_stream:.1f} commands/s (plus 1-2 reads per worker per window)"
    )
    # Commands are not alike (one read names hundreds of replies): extrapolate by Redis's
    # measured CPU per token.
    for streams in (1_000, 10_000, 100_000):
        rate = per_stream * streams
        cores = streams * args.tokens_per_second * cpu_per_k_tokens / 1000 / 1000
        print(  # noqa: T201
            f"  at {streams:>7,} streams: {rate:>10,.0f} commands/s, {cores:.2f} Redis cores"
            + (
                f" -> at least {int(cores / 0.6) + 1} Redis Cluster shards at <= 60 % each"
                if cores > 0.6
                else " -> one instance"
            )
        )


if __name__ == "__main__":
    main()
