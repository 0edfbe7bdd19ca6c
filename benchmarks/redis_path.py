"""What the shared (Redis) path costs over the in-memory stream, at 20 concurrent streams.

    .venv/bin/python -m benchmarks.redis_path --streams 20 --rounds 3
    .venv/bin/python -m benchmarks.redis_path --streams 20 --rounds 3 --ramp 4

Runs one Daphne worker (SQLite, the demo model at 20 tokens/s) twice: with the in-memory reply
stream, then with REDIS_URL pointing at a redis-server of its own. Each round opens `--streams`
visitors at once; each sends a message (htmx POST) and reads its reply as Server-Sent Events.
Reports the time from send to first text, the worker's CPU time, and, for Redis, every command
the server ran (INFO commandstats) per reply and per token, split into the job's commands and the
readers'.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.stream_fanout import _proc_stats
from tests.support.servers import Browser, SSEReader, app_env, daphne_worker, migrate, redis_server

# What the job (and its worker) sends, and what readers send.
JOB_COMMANDS = {"xadd", "expire", "exists", "mget", "set", "publish", "subscribe", "ping"}
READER_COMMANDS = {"xread"}


def _one(base: str, n: int, results: list[dict[str, float]], text_of: dict[int, str]) -> None:
    browser = Browser()
    browser.get(f"{base}/streaming-demo")
    sent = time.monotonic()
    _, html = browser.post(
        f"{base}/streaming-demo/messages",
        {"action": "send", "message": f"Benchmark question {n}", "model": "demo:demo"},
    )
    message_id = int(re.search(r'data-status="streaming" data-message-id="(\d+)"', html)[1])  # type: ignore[index]
    reader = SSEReader(browser, base, message_id, timeout=60).read_to_end()
    results.append(
        {
            "first": (reader.first_text_at or sent) - sent,
            "tokens": max((seq for seq, _ in reader.pieces), default=0),
            "fragments": len(reader.pieces),
        }
    )
    text_of[message_id] = reader.text


def _round(base: str, streams: int, offset: int, ramp: float = 0.0) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    texts: dict[int, str] = {}
    threads = [
        threading.Thread(target=_one, args=(base, offset + i, results, texts))
        for i in range(streams)
    ]
    for thread in threads:
        thread.start()
        time.sleep(ramp / streams)  # spread the sends: first text then measures the path
    for thread in threads:
        thread.join()
    if len(results) != streams:
        raise RuntimeError(f"{streams - len(results)} of {streams} streams failed")
    return results


def _run(
    data_dir: Path, streams: int, rounds: int, redis_url: str = "", ramp: float = 0.0
) -> dict[str, object]:
    env = app_env(data_dir, CHAT_DEMO_TOKENS_PER_SECOND="20", REDIS_URL=redis_url)
    migrate(env)
    with daphne_worker(env, data_dir / "worker.log") as worker:
        _round(worker.url, 2, 10_000)  # warm up (imports, templates, connections)
        admin = None
        if redis_url:
            import redis

            admin = redis.Redis.from_url(redis_url, decode_responses=True)
            admin.config_resetstat()
        cpu_before, _ = _proc_stats(worker.process.pid)
        started = time.monotonic()
        results: list[dict[str, float]] = []
        for r in range(rounds):
            results += _round(worker.url, streams, r * streams, ramp)
        wall = time.monotonic() - started
        cpu, _ = _proc_stats(worker.process.pid)
        commands = {}
        if admin is not None:
            stats = admin.info("commandstats")
            commands = {
                name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in stats.items()
                if name not in ("cmdstat_config", "cmdstat_info")
            }
    firsts = sorted(r["first"] * 1000 for r in results)
    return {
        "replies": len(results),
        "tokens": sum(r["tokens"] for r in results),
        "first_ms_median": statistics.median(firsts),
        "first_ms_p95": firsts[int(len(firsts) * 0.95) - 1],
        "cpu_s": cpu - cpu_before,
        "wall_s": wall,
        "commands": commands,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which to send")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatsite-redis-path-") as tmp:
        base = Path(tmp)
        (base / "memory").mkdir()
        (base / "redis").mkdir()
        (base / "redis-data").mkdir()
        memory = _run(base / "memory", args.streams, args.rounds, ramp=args.ramp)
        with redis_server(base / "redis-data") as (url, _process):
            shared = _run(base / "redis", args.streams, args.rounds, redis_url=url, ramp=args.ramp)

    print(
        f"{args.streams} concurrent streams x {args.rounds} rounds (sent over {args.ramp:g} s), "
        "demo model at 20 tokens/s"
    )
    print(f"{'':28}{'memory':>12}{'redis':>12}")
    for label, key, unit in (
        ("first text, median", "first_ms_median", "ms"),
        ("first text, p95", "first_ms_p95", "ms"),
        ("worker CPU", "cpu_s", "s"),
    ):
        print(f"{label + ' (' + unit + ')':28}{memory[key]:>12.1f}{shared[key]:>12.1f}")
    cpu_change = (shared["cpu_s"] / memory["cpu_s"] - 1) * 100  # type: ignore[operator]
    first_change = shared["first_ms_median"] - memory["first_ms_median"]  # type: ignore[operator]
    print(f"Redis adds {cpu_change:+.0f} % worker CPU and {first_change:+.1f} ms to first text")
    commands: dict[str, int] = shared["commands"]  # type: ignore[assignment]
    replies, tokens = int(shared["replies"]), int(shared["tokens"])  # type: ignore[call-overload]
    job = sum(n for name, n in commands.items() if name in JOB_COMMANDS)
    readers = sum(n for name, n in commands.items() if name in READER_COMMANDS)
    print(f"{replies} replies, {tokens} tokens ({tokens / replies:.0f} per reply)")
    print("Redis commands:", ", ".join(f"{k} {v}" for k, v in sorted(commands.items())))
    print(
        f"job and worker: {job / replies:.1f} per reply, one per {tokens / job:.1f} tokens; "
        f"readers: {readers / replies:.1f} per reply"
    )


if __name__ == "__main__":
    main()
