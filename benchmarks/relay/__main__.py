"""chatsite against a bare ASGI relay, side by side: latency per token, first token, CPU, memory,
database writes and capacity.

    .venv/bin/python -m benchmarks.relay                  # the full run (make bench), ≤ 15 min
    .venv/bin/python -m benchmarks.relay --quick          # 1 and 50 streams, no capacity search
    .venv/bin/python -m benchmarks.relay --write-docs     # ... and put the tables in docs/
    .venv/bin/python -m benchmarks.relay --targets chatsite --database postgres
    .venv/bin/python -m benchmarks.relay --targets chatsite --workers 2   # Redis, two workers
    .venv/bin/python -m benchmarks.relay --production --workers 2         # the production recipe

--production runs the production recipe (N workers behind nginx, Redis, PostgreSQL; see
benchmarks/relay/production.py) beside one worker in memory and the bare relay, over WebSocket,
with LOCAL and REMOTE readers; --streams is then K per worker (default 1,50,100; --quick 1,20).

The fake upstream (benchmarks/relay/upstream.py) streams 100 tokens at 20 tokens/s, each stamped
with its send time; the servers run under Daphne on core 0; the upstream and the load client
(benchmarks/relay/client.py) share core 1. K replies are sent spread evenly over 5 s. Capacity
is the largest K at which the p99 added latency is ≤ 100 ms with nothing lost or doubled.
Results go to var/bench/relay.json; --write-docs also rewrites the tables in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.relay import production, profile, report, servers
from benchmarks.relay.run import Load, measure, passes

TABLE_STREAMS = [1, 50, 100, 200]
CAPACITY_STEPS = [300, 400, 500, 600, 800, 1000]
JSON_DEFAULT = Path("var/bench/relay.json")
MEMORY_STREAMS = 100  # the run that also measures memory per socket and per stream


@contextlib.contextmanager
def _server(
    target: str, workdir: Path, upstream_port: int, args: argparse.Namespace
) -> Iterator[servers.Server]:
    if target == "baseline":
        with servers.baseline(workdir, upstream_port) as server:
            yield server
        return
    with contextlib.ExitStack() as stack:
        database_url = ""
        if args.database == "postgres":
            database_url = stack.enter_context(servers.postgres_server(workdir))
        redis_url = ""
        if args.workers > 1 or args.redis:
            redis_url = stack.enter_context(servers.redis_server(workdir))
        server = stack.enter_context(
            servers.chatsite(
                workdir,
                upstream_port,
                workers=args.workers,
                database_url=database_url,
                redis_url=redis_url,
            )
        )
        server.name = _variant_name(args)
        yield server


def _variant_name(args: argparse.Namespace) -> str:
    parts = ["chatsite"]
    if args.database == "postgres":
        parts.append("PostgreSQL")
    if args.workers > 1:
        parts.append(f"{args.workers} workers + Redis")
    elif args.redis:
        parts.append("Redis")
    return " · ".join(parts)


async def _series(
    server: servers.Server,
    transport: str,
    args: argparse.Namespace,
    *,
    upstream_pid: int,
    started: float,
) -> list[dict[str, Any]]:
    """Warm up, then the table's loads, then more streams until a load fails (capacity)."""

    def load(streams: int) -> Load:
        return Load(transport, streams, args.ramp, args.tokens, args.rate)

    # First requests import and build things (the SDK client, templates): not what we measure.
    await measure(
        server, Load(transport, 3, 0.3, args.tokens, args.rate), upstream_pid=upstream_pid
    )
    results: list[dict[str, Any]] = []

    async def one(streams: int) -> dict[str, Any]:
        profile_to = None
        if streams == args.profile and server.name.startswith("chatsite"):
            profile_to = args.json.parent / f"profile-{transport}-{streams}.txt"
        result = await measure(
            server,
            load(streams),
            upstream_pid=upstream_pid,
            profile_to=profile_to,
            profile_gil=args.profile_gil,
        )
        if profile_to is not None and profile_to.exists():
            result["profile"] = profile.summarize(profile_to, gil=args.profile_gil)
            result["profile_gil"] = args.profile_gil
            print(profile.markdown(result["profile"]), flush=True)
        result["passes"] = passes(result)
        results.append(result)
        print(report.line(result), flush=True)
        return result

    table = sorted(args.streams, key=lambda k: (k != MEMORY_STREAMS, k))
    for streams in table:
        await one(streams)
    if not args.capacity:
        return results
    steps = sorted(set(CAPACITY_STEPS) | set(args.streams))
    passed = {r["streams"]: r["passes"] for r in results}
    for streams in steps:
        if streams in passed:
            if not passed[streams]:
                break
            continue
        if time.monotonic() - started > args.budget:
            print(f"  (time budget spent: capacity search stops before {streams})", flush=True)
            break
        if not (await one(streams))["passes"]:
            break
    # One step between the last load that passed and the first that failed.
    good = [r["streams"] for r in results if r["passes"]]
    bad = [r["streams"] for r in results if not r["passes"]]
    if good and bad and min(bad) > max(good):
        low, high = max(g for g in good if g < min(bad)), min(bad)
        middle = (low + high) // 2 // 25 * 25
        if low < middle < high and time.monotonic() - started <= args.budget:
            await one(middle)
    return results


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    servers.pin_client()
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    # Kept after the run: the servers' logs (and chatsite's database) are worth a look.
    workdir = args.json.parent / "relay-work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with servers.upstream(workdir, tokens=args.tokens, rate=args.rate) as (port, pid):
        for target in args.targets:
            for transport in args.transports:
                # A fresh server per transport: its memory figures start from the same place.
                with _server(target, workdir, port, args) as server:
                    print(f"{server.name} over {transport}", flush=True)
                    results += await _series(
                        server, transport, args, upstream_pid=pid, started=started
                    )
    return {
        **report.run_record("benchmarks.relay", started),
        "settings": {
            "tokens_per_reply": args.tokens,
            "tokens_per_second": args.rate,
            "ramp_seconds": args.ramp,
            "server_core": servers.SERVER_CORE,
            "client_core": servers.CLIENT_CORE,
            "event_loop": args.event_loop,
        },
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 and 50 streams, no capacity (with --production: 1 and 20 per worker)",
    )
    parser.add_argument(
        "--production",
        action="store_true",
        help="N workers behind nginx with Redis and PostgreSQL, beside the other targets",
    )
    parser.add_argument(
        "--no-remote",
        dest="remote_readers",
        action="store_false",
        help="--production without the REMOTE readers (an A/B of what they cost)",
    )
    parser.add_argument(
        "--targets",
        default=None,
        help="default chatsite,baseline (with --production: production,chatsite,baseline)",
    )
    parser.add_argument("--transports", default="ws,sse")
    parser.add_argument("--streams", default=None, help=",".join(map(str, TABLE_STREAMS)))
    parser.add_argument("--no-capacity", dest="capacity", action="store_false")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--workers", type=int, default=1, help=">1 runs them with Redis (--production: ≥ 2)"
    )
    parser.add_argument("--redis", action="store_true", help="the Redis reply stream")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--budget", type=float, default=780.0, help="seconds for the whole run")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="K", help="py-spy chatsite during the K run"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample the thread holding the GIL (where the CPU goes) rather than every thread",
    )
    parser.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="both servers' event loop (CHAT_EVENT_LOOP)",
    )
    parser.add_argument("--json", type=Path, default=JSON_DEFAULT)
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    args.targets_given, args.streams_given = args.targets, args.streams
    args.targets = (args.targets or "chatsite,baseline").split(",")
    args.streams = args.streams or ",".join(map(str, TABLE_STREAMS))
    args.transports = args.transports.split(",")
    args.streams = [int(k) for k in args.streams.split(",")]
    os.environ["CHAT_EVENT_LOOP"] = args.event_loop  # the servers inherit it
    if args.production:
        production.fix_args(args)
        if args.json == JSON_DEFAULT:
            args.json = args.json.with_name("relay-production.json")
        report.run_and_report(
            production.run(args), args, production.markdown, production.write_docs
        )
        return
    if args.quick:
        args.streams = [1, 50]
        args.capacity = False
    report.run_and_report(_main(args), args, report.markdown, report.write_docs)


if __name__ == "__main__":
    main()
