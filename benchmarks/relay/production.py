"""The production recipe, measured end to end: N chatsite workers behind nginx (the template, as
scripts/run_prod.py renders it), Redis and PostgreSQL, all started here; beside it, in the same
run, one chatsite worker in memory and the bare relay.

    make bench BENCH_ARGS="--production --workers 2"           # K = 1, 50, 100 per worker
    make bench BENCH_ARGS="--production --workers 2 --quick"   # K = 1, 20: a few minutes

The load client connects through nginx like a browser (pages, WebSockets). Each stream has two
readers: LOCAL, the send's own WebSocket, which follows the reply on the worker that generates
it (as chat.js does); and REMOTE, a second WebSocket of the same visitor, opened ahead on another
worker, which sends `watch` for the reply as soon as the send's answer names it (as a second tab
or a shared conversation would). Which worker a connection reaches is chosen by a header,
`X-Bench-Worker: <n>`, that only the benchmark's rendering of the template understands (a `map`
to one upstream per worker; without the header nginx balances as in production). Sends are
spread over the ramp and over the workers evenly (K streams per worker).

Per K: added latency per token (receive time minus the upstream's stamp) and first token for
each kind of reader; CPU per 1,000 relayed tokens (that reached a reader) summed over every
process of the recipe (workers, redis-server, PostgreSQL's postmaster and backends, nginx's
master and workers — an ended child's CPU is counted through its parent's cutime) and per
kind; Redis commands per relayed token (INFO commandstats, reset just before the load); tokens
lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.relay import client, report, servers
from benchmarks.relay.run import (
    CLK_TCK,
    Load,
    gather_limited,
    load_average,
    measure,
    passes,
    percentile,
    runqueue_wait_seconds,
)
from scripts import run_prod  # type: ignore[import-not-found]

PRODUCTION = "production recipe"
IN_MEMORY = "chatsite · 1 worker in memory"
BASELINE = "bare relay"
PIN_HEADER = "X-Bench-Worker"
ACCESS_LINE = re.compile(
    r"GET /ws/chat/ .* upstream=(?P<upstream>\S+) .*bench_worker=(?P<worker>\d+)"
)
TABLE_STREAMS = [1, 50, 100]  # per worker
QUICK_STREAMS = [1, 20]


# --- CPU of process trees -------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(pid: int, children: dict[int, list[int]]) -> float:
    """CPU of a process, of its children that ended (cutime + cstime, once reaped) and of those
    still running: a PostgreSQL backend or an nginx worker that comes and goes is still counted."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return own + sum(tree_cpu_seconds(child, children) for child in children.get(pid, []))


@dataclass
class Recipe:
    """The running production recipe: nginx's port, each worker's, and the processes by kind."""

    port: int
    worker_ports: list[int]
    pids: dict[str, list[int]]  # kind -> root pids (their trees are counted)
    redis_url: str
    access_log: Path

    def check_pinning(self, offset: int) -> dict[str, int]:
        """Of the WebSockets logged since `offset`, how many asked for a worker and how many
        reached another one (nginx logs a WebSocket when it closes)."""
        with open(self.access_log, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        pinned = misrouted = 0
        for match in ACCESS_LINE.finditer(text):
            pinned += 1
            if match.group("upstream") != f"127.0.0.1:{self.worker_ports[int(match['worker'])]}":
                misrouted += 1
        return {"pinned_sockets": pinned, "misrouted": misrouted}

    def cpu(self) -> dict[str, float]:
        children = _children()
        return {
            kind: sum(tree_cpu_seconds(pid, children) for pid in pids)
            for kind, pids in self.pids.items()
        }


# --- Starting the recipe --------------------------------------------------------------------------


def bench_nginx_config(config: str, worker_ports: list[int]) -> str:
    """The template as run_prod renders it, plus one upstream per worker chosen by a header only
    the benchmark sends; without the header, nginx balances round robin as in production."""
    upstreams = "".join(
        f"    upstream bench_worker_{n} {{\n        server 127.0.0.1:{port};\n"
        f"        keepalive 8;\n    }}\n"
        for n, port in enumerate(worker_ports)
    )
    choices = "".join(f"        {n} bench_worker_{n};\n" for n in range(len(worker_ports)))
    header = PIN_HEADER.lower().replace("-", "_")
    chooser = (
        f"    map $http_{header} $bench_upstream {{\n"
        f"        default chatsite_workers;\n{choices}    }}\n"
    )
    anchor = "    upstream chatsite_workers {"
    if anchor not in config or "proxy_pass http://chatsite_workers;" not in config:
        raise RuntimeError("deploy/nginx.conf.template changed: the benchmark's edit does not fit")
    config = config.replace(anchor, upstreams + chooser + anchor, 1)
    # The access log also says which worker each request asked for, so the run can check that
    # every pinned socket reached it (`check_pinning`).
    logged = "upstream=$upstream_addr id=$request_id"
    if logged not in config:
        raise RuntimeError("deploy/nginx.conf.template changed: the benchmark's edit does not fit")
    config = config.replace(logged, f"{logged} bench_worker=$http_{header}", 1)
    return config.replace(
        "proxy_pass http://chatsite_workers;", "proxy_pass http://$bench_upstream;"
    )


def _redis_pid(redis_url: str) -> int:
    import redis

    connection = redis.Redis.from_url(redis_url)
    try:
        return int(connection.info("server")["process_id"])
    finally:
        connection.close()


def _postmaster_pid(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as connection:
        row = connection.execute("SHOW data_directory").fetchone()
    if row is None:
        raise RuntimeError("PostgreSQL did not say its data directory")
    return int((Path(row[0]) / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def recipe(workdir: Path, upstream_port: int, *, workers: int) -> Iterator[Recipe]:
    """PostgreSQL, Redis, N workers and nginx, started as scripts/run_prod.py starts them (its
    own Deployment: migrate, collectstatic, workers on sockets it binds, nginx from the
    template), none pinned to a core: on a small machine they share every core, as they would."""
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(servers.postgres_server(workdir, pin=False))
        redis_url = stack.enter_context(servers.redis_server(workdir, pin=False))
        data_dir = workdir / "production-data"
        data_dir.mkdir(exist_ok=True)
        env = servers.chatsite_env(
            data_dir, upstream_port, database_url=database_url, redis_url=redis_url
        )
        env["CHATSITE_DATA_DIR"] = str(data_dir)
        port = servers.free_port()
        deployment = run_prod.Deployment(
            host="127.0.0.1", port=port, run_dir=workdir / "production-run", env=env
        )
        stack.callback(deployment.stop)
        with _output_to(workdir / "production.log"):
            # migrate and collectstatic, then the workers (which inherit the log as their
            # stdout and stderr, as the other targets' servers write theirs to files)
            deployment.prepare()
            deployment.start_workers(workers)
        _start_proxy(deployment, workdir)
        yield Recipe(
            port=port,
            worker_ports=list(deployment.worker_ports),
            pids={
                "workers": [w.pid for w in deployment.workers],
                "redis-server": [_redis_pid(redis_url)],
                "PostgreSQL": [_postmaster_pid(database_url)],
                "nginx": [deployment.nginx.pid] if deployment.nginx else [],
            },
            redis_url=redis_url,
            access_log=workdir / "nginx.log",
        )


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, which children inherit) go to
    `path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def _start_proxy(deployment: Any, workdir: Path) -> None:
    """run_prod's start_proxy with the benchmark's edit of the rendered config."""
    binary = run_prod.nginx_binary()
    config = deployment.run_dir / "nginx.conf"
    text = run_prod.nginx_config(
        run_dir=deployment.run_dir,
        listen=f"127.0.0.1:{deployment.port}",
        worker_ports=deployment.worker_ports,
        env=deployment.env,
    )
    # The access log would cost nginx a write per request; it stays, as in production, but
    # goes to a file rather than this terminal.
    config.write_text(bench_nginx_config(text, deployment.worker_ports))
    base = [binary, "-p", str(deployment.run_dir), "-c", str(config), "-e", "stderr"]
    subprocess.run([*base, "-t", "-q"], check=True)  # noqa: S603
    with open(workdir / "nginx.log", "ab") as log:
        deployment.nginx = subprocess.Popen(base, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + run_prod.START_TIMEOUT_SECONDS
    while not run_prod.healthy(f"http://127.0.0.1:{deployment.port}/healthz"):
        if deployment.nginx.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start: {(workdir / 'nginx.log').read_text()}")
        time.sleep(0.2)


# --- Redis commands -------------------------------------------------------------------------------


def redis_reset(redis_url: str) -> None:
    import redis

    connection = redis.Redis.from_url(redis_url)
    try:
        connection.config_resetstat()
    finally:
        connection.close()


def redis_calls(redis_url: str) -> dict[str, int]:
    """Calls per command since the reset, without the benchmark's own INFO and CONFIG."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    try:
        stats = connection.info("commandstats")
    finally:
        connection.close()
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict)
    }
    return {k: v for k, v in calls.items() if not k.startswith(("info", "config"))}


# --- The readers ----------------------------------------------------------------------------------


async def _open_socket(port: int, worker: int, socket: client.ChatsiteSocket) -> None:
    socket.ended = asyncio.get_running_loop().create_future()
    socket.ended.add_done_callback(lambda f: f.cancelled() or f.exception())
    socket.socket = await client.websocket_open(
        port,
        "/ws/chat/",
        socket.on_message,
        socket.on_close,
        socket.visitor.cookie_header,
        headers={PIN_HEADER: str(worker)},
    )


class LocalSender(client.ChatsiteSocket):
    """The send's own socket (the local reader); tells `on_started` the new reply's id."""

    def __init__(self, port: int, visitor: client.Visitor, remote: RemoteReader) -> None:
        super().__init__(port, visitor)
        self.remote = remote

    def on_message(self, text: str, received_ns: int) -> None:
        started = None if self.watching else client.STARTED_REPLY.search(text)
        if started and self.remote.socket is not None:
            self.remote.watch(started.group(1), self.result.sent_ns)
        super().on_message(text, received_ns)


class RemoteReader(client.ChatsiteSocket):
    """A socket of the same visitor on another worker that follows the reply from seq 0 once
    its id is known (its added latency counts from the upstream's stamps, as the local's)."""

    def watch(self, message_id: str, sent_ns: int) -> None:
        if self.socket is None:
            raise RuntimeError("not connected")
        self.result.sent_ns = sent_ns
        self.watching = True
        self.socket.send_text(json.dumps({"action": "watch", "message_id": message_id, "after": 0}))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value / 1e6, 2)


def reader_figures(results: list[client.StreamResult], tokens: int) -> dict[str, Any]:
    added = [ns for r in results for ns in r.added_ns]
    firsts = [r.first_ns - r.sent_ns for r in results if r.first_ns is not None and r.sent_ns]
    received = sum(len(r.seen) for r in results)
    return {
        "added_ms": {
            "p50": _ms(percentile(added, 50)),
            "p99": _ms(percentile(added, 99)),
            "max": _ms(max(added) if added else None),
        },
        "mean_added_ms": round(statistics.fmean(added) / 1e6, 2) if added else None,
        "first_token_ms": {
            "p50": _ms(percentile(firsts, 50)),
            "p99": _ms(percentile(firsts, 99)),
        },
        "tokens_expected": len(results) * tokens,
        "tokens_received": received,
        "lost": sum(sum(1 for i in range(tokens) if r.seen[i] == 0) for r in results),
        "doubled": sum(c - 1 for r in results for c in r.seen.values() if c > 1),
        "unfinished": sum(1 for r in results if not r.finished),
        # Sends the server refused (e.g. "Chat is briefly unavailable" when Redis did not answer).
        "refused": sum(1 for r in results if "composer-error" in r.error),
        "frames_per_token": round(sum(r.frames for r in results) / received, 3)
        if received
        else None,
        "endings": dict(Counter(r.ending or "none" for r in results)),
        "errors": sorted({r.error for r in results if r.error})[:5],
    }


async def measure_recipe(
    target: Recipe, load: Load, *, upstream_pid: int, workers: int, remote_readers: bool = True
) -> dict[str, Any]:
    """K streams per worker: each visitor's page through nginx, its two sockets pinned, the sends
    spread over the ramp; the CPU of every process kind and Redis's commands while they run."""
    total = load.streams * workers
    visitors = await gather_limited([client.visitor_open(target.port) for _ in range(total)], 16)
    remotes = [RemoteReader(target.port, v) for v in visitors]
    senders = [LocalSender(target.port, v, r) for v, r in zip(visitors, remotes, strict=True)]
    opening = [_open_socket(target.port, i % workers, s) for i, s in enumerate(senders)]
    if remote_readers:
        opening += [_open_socket(target.port, (i + 1) % workers, r) for i, r in enumerate(remotes)]
    await gather_limited(opening, 32)
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    deadline = load.ramp + load.tokens / load.rate + 60

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, start + index * load.ramp / total - loop.time()))
        sender, remote = senders[index], remotes[index]
        prompt = f"Benchmark question {index}: tell me a story."
        try:
            await asyncio.wait_for(sender.run(prompt, f"openai:{servers.MODEL}"), deadline)
        except Exception as exc:
            sender.result.error = f"{type(exc).__name__}: {exc}"[:300]
        if not remote_readers:
            return
        try:
            if remote.ended is None:
                raise RuntimeError("not connected")
            await asyncio.wait_for(remote.ended, max(1.0, deadline - (loop.time() - start)))
        except Exception as exc:
            remote.result.error = f"{type(exc).__name__}: {exc}"[:300]

    log_offset = target.access_log.stat().st_size
    redis_reset(target.redis_url)
    cpu_before = target.cpu()
    workers_pids = target.pids["workers"]
    waited_before = sum(runqueue_wait_seconds(pid) for pid in workers_pids)
    upstream_before = tree_cpu_seconds(upstream_pid, {})
    own_before = os.times()
    load_before = load_average()
    started = time.monotonic()
    start = loop.time() + 0.2
    await asyncio.gather(*(one(i) for i in range(total)))
    wall = time.monotonic() - started
    cpu_after = target.cpu()
    waited = sum(runqueue_wait_seconds(pid) for pid in workers_pids) - waited_before
    calls = redis_calls(target.redis_url)
    own_after = os.times()
    client_cpu = (own_after.user + own_after.system - own_before.user - own_before.system) + (
        tree_cpu_seconds(upstream_pid, {}) - upstream_before
    )
    for s in [*senders, *remotes]:
        s.close()
    await asyncio.sleep(1.0)
    pinning = target.check_pinning(log_offset)
    sockets = 2 * total if remote_readers else total
    if pinning["misrouted"] or pinning["pinned_sockets"] < sockets:
        print(f"  pinning: {pinning} of {sockets} sockets", flush=True)
    cpu = {kind: round(cpu_after[kind] - cpu_before[kind], 3) for kind in cpu_after}
    # Tokens relayed: of each reply, those that reached either reader (a refused send or a
    # reply that died generated fewer than it was asked for; CPU and commands are per token
    # that really went through).
    relayed = sum(
        len(set(s.result.seen) | set(r.result.seen)) for s, r in zip(senders, remotes, strict=True)
    )
    generated = max(1, relayed)
    local = reader_figures([s.result for s in senders], load.tokens)
    remote = reader_figures([r.result for r in remotes], load.tokens) if remote_readers else None
    result = {
        "server": PRODUCTION,
        "workers": workers,
        "transport": "ws",
        "streams_per_worker": load.streams,
        "streams": total,
        "wall_s": round(wall, 2),
        "load_average_1m": load_before,
        "local": local,
        "remote": remote,
        "cpu_s": cpu,
        "tokens_relayed": relayed,
        "cpu_ms_per_1000_tokens": {
            "all": round(sum(cpu.values()) * 1000 / (generated / 1000), 1),
            **{kind: round(s * 1000 / (generated / 1000), 1) for kind, s in cpu.items()},
        },
        "client_core_busy": round(client_cpu / wall, 3) if wall else None,
        # Share of the time a worker's event loop was ready to run but had no core.
        "workers_waiting_for_cpu": round(waited / wall / workers, 3) if wall else None,
        "redis_calls": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
        "redis_commands_per_token": round(sum(calls.values()) / generated, 3),
        "pinning": pinning,
    }
    result["passes"] = (
        passes(local) and (remote is None or passes(remote)) and not pinning["misrouted"]
    )
    return result


# --- The run --------------------------------------------------------------------------------------


def _compared(result: dict[str, Any], name: str, streams_per_worker: int) -> dict[str, Any]:
    """One of the existing targets' results (run.measure), in the production table's shape."""
    tokens = result["tokens_received"]
    return {
        "server": name,
        "workers": 1,
        "transport": result["transport"],
        "streams_per_worker": streams_per_worker,
        "streams": result["streams"],
        "wall_s": result["wall_s"],
        "load_average_1m": result["load_average_1m"],
        "local": {
            key: result[key]
            for key in (
                "added_ms",
                "mean_added_ms",
                "first_token_ms",
                "tokens_expected",
                "tokens_received",
                "lost",
                "doubled",
                "unfinished",
                "frames_per_token",
                "endings",
                "errors",
            )
        },
        "remote": None,
        "cpu_s": {"workers": result["server_cpu_s"]},
        "tokens_relayed": tokens,
        "cpu_ms_per_1000_tokens": {
            "all": round(result["server_cpu_s"] * 1000 / (tokens / 1000), 1) if tokens else None,
            "workers": round(result["server_cpu_s"] * 1000 / (tokens / 1000), 1)
            if tokens
            else None,
        },
        "client_core_busy": result["client_core_busy"],
        "workers_waiting_for_cpu": result.get("server_waiting_for_cpu"),
        "redis_calls": {},
        "redis_commands_per_token": None,
        "passes": result["passes"],
    }


def line(r: dict[str, Any]) -> str:
    def side(name: str, f: dict[str, Any] | None) -> str:
        if f is None:
            return ""
        return (
            f" {name}: added p50 {report.number(f['added_ms']['p50'])} / p99 "
            f"{report.number(f['added_ms']['p99'])} ms, first token p50 "
            f"{report.number(f['first_token_ms']['p50'])} ms, lost {f['lost']}, doubled "
            f"{f['doubled']}, unfinished {f['unfinished']}"
            + (f", errors {f['errors']}" if f["errors"] else "")
            + ";"
        )

    kinds = " · ".join(
        f"{k} {report.number(v)}" for k, v in r["cpu_ms_per_1000_tokens"].items() if k != "all"
    )
    redis = r["redis_commands_per_token"]
    return (
        f"  {r['streams_per_worker']:>4} per worker ({r['streams']} streams):"
        + side("LOCAL", r["local"])
        + side("REMOTE", r["remote"])
        + f" CPU {report.number(r['cpu_ms_per_1000_tokens']['all'])} ms/1k tokens ({kinds})"
        + (f", Redis {redis} commands/token" if redis is not None else "")
        + f", loop waiting for a core {round((r['workers_waiting_for_cpu'] or 0) * 100)} %"
        + f", client core {round((r['client_core_busy'] or 0) * 100)} %"
        + f", load {r['load_average_1m']}"
        + ("" if r["passes"] else "  ✗")
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers.pin_client()
    started = time.monotonic()
    workdir = (args.json.parent / "relay-production-work").resolve()  # nginx -p needs it whole

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results: list[dict[str, Any]] = []

    def load(streams: int) -> Load:
        return Load("ws", streams, args.ramp, args.tokens, args.rate)

    with servers.upstream(workdir, tokens=args.tokens, rate=args.rate) as (port, pid):
        if "production" in args.targets:
            with recipe(workdir, port, workers=args.workers) as target:
                print(f"{PRODUCTION}: {args.workers} workers behind nginx", flush=True)
                await measure_recipe(
                    target, Load("ws", 2, 0.3, args.tokens, args.rate), upstream_pid=pid,
                    workers=args.workers,
                )  # fmt: skip
                for streams in args.streams:
                    result = await measure_recipe(
                        target,
                        load(streams),
                        upstream_pid=pid,
                        workers=args.workers,
                        remote_readers=args.remote_readers,
                    )
                    results.append(result)
                    print(line(result), flush=True)
        for target_name, name in (("chatsite", IN_MEMORY), ("baseline", BASELINE)):
            if target_name not in args.targets:
                continue
            context = (
                servers.chatsite(workdir, port)
                if target_name == "chatsite"
                else servers.baseline(workdir, port)
            )
            with context as server:
                print(name, flush=True)
                await measure(server, Load("ws", 3, 0.3, args.tokens, args.rate), upstream_pid=pid)
                for streams in args.streams:
                    measured = await measure(server, load(streams), upstream_pid=pid)
                    measured["passes"] = passes(measured)
                    result = _compared(measured, name, streams)
                    results.append(result)
                    print(line(result), flush=True)
    return {
        **report.run_record("benchmarks.relay", started),
        "settings": {
            "workers": args.workers,
            "remote_readers": args.remote_readers,
            "tokens_per_reply": args.tokens,
            "tokens_per_second": args.rate,
            "ramp_seconds": args.ramp,
            "event_loop": args.event_loop,
        },
        "results": results,
    }


# --- Tables ---------------------------------------------------------------------------------------


def markdown(output: dict[str, Any]) -> str:
    results = output["results"]
    ks = sorted({r["streams_per_worker"] for r in results})
    workers = output["settings"]["workers"]
    by = {(r["server"], r["streams_per_worker"]): r for r in results}
    settings = output["settings"]
    head = (
        f"| WebSocket, {settings['tokens_per_reply']} tokens at "
        f"{settings['tokens_per_second']:g}/s, sends over {settings['ramp_seconds']:g} s |"
    )
    head += "".join(f" {k} per worker |" for k in ks)
    lines = [head, "|---|" + "---|" * len(ks)]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} |" + "".join(f" {cell(k)} |" for k in ks))

    def pair(f: dict[str, Any] | None, key: str) -> str:
        if f is None:
            return "—"
        return f"{report.number(f[key]['p50'])} / {report.number(f[key]['p99'])}"

    def get(name: str, k: int) -> dict[str, Any] | None:
        return by.get((name, k))

    recipe_name = f"{workers} workers + nginx + Redis + PostgreSQL"
    row(
        f"{recipe_name}: LOCAL reader, added per token p50 / p99 ms",
        lambda k: pair((get(PRODUCTION, k) or {}).get("local"), "added_ms"),
    )
    row(
        f"{recipe_name}: REMOTE reader, added per token p50 / p99 ms",
        lambda k: pair((get(PRODUCTION, k) or {}).get("remote"), "added_ms"),
    )
    row(
        f"{recipe_name}: first token p50 / p99 ms, local · remote",
        lambda k: (
            f"{pair(r['local'], 'first_token_ms')} · {pair(r['remote'], 'first_token_ms')}"
            if (r := get(PRODUCTION, k))
            else "—"
        ),
    )
    for name in (IN_MEMORY, BASELINE):
        row(
            f"{name}: added per token p50 / p99 ms",
            lambda k, name=name: pair((get(name, k) or {}).get("local"), "added_ms"),
        )
        row(
            f"{name}: first token p50 / p99 ms",
            lambda k, name=name: pair((get(name, k) or {}).get("local"), "first_token_ms"),
        )

    def cpu(name: str, k: int) -> str:
        r = get(name, k)
        return "—" if r is None else report.number(r["cpu_ms_per_1000_tokens"]["all"])

    row(f"CPU ms per 1,000 tokens, {recipe_name}, all processes", lambda k: cpu(PRODUCTION, k))
    row(
        "… of which workers · redis-server · PostgreSQL · nginx",
        lambda k: (
            " · ".join(
                report.number(r["cpu_ms_per_1000_tokens"].get(kind))
                for kind in ("workers", "redis-server", "PostgreSQL", "nginx")
            )
            if (r := get(PRODUCTION, k))
            else "—"
        ),
    )
    row(f"CPU ms per 1,000 tokens, {IN_MEMORY}", lambda k: cpu(IN_MEMORY, k))
    row(f"CPU ms per 1,000 tokens, {BASELINE}", lambda k: cpu(BASELINE, k))
    row(
        "Redis commands per relayed token (top commands)",
        lambda k: (
            f"{r['redis_commands_per_token']} ("
            + ", ".join(f"{c} {n}" for c, n in list(r["redis_calls"].items())[:3])
            + ")"
            if (r := get(PRODUCTION, k))
            else "—"
        ),
    )

    def lost(k: int) -> str:
        parts = []
        for name, short in ((PRODUCTION, "recipe"), (IN_MEMORY, "memory"), (BASELINE, "bare")):
            r = get(name, k)
            if r is None:
                continue
            sides = [r["local"]] + ([r["remote"]] if r["remote"] else [])
            parts.append(
                f"{short} {sum(s['lost'] for s in sides)}/{sum(s['doubled'] for s in sides)}"
            )
        return " · ".join(parts)

    row("tokens lost / doubled", lost)
    row(
        f"{recipe_name}: replies unfinished, local · remote",
        lambda k: (
            f"{r['local']['unfinished']} · {(r['remote'] or {}).get('unfinished', '—')} "
            f"(of {r['streams']}; "
            f"sends refused: {r['local']['refused']})"
            if (r := get(PRODUCTION, k))
            else "—"
        ),
    )

    def waiting(k: int) -> str:
        cells = []
        for name, short in ((PRODUCTION, "recipe"), (IN_MEMORY, "memory"), (BASELINE, "bare")):
            r = get(name, k)
            if r is not None and r["workers_waiting_for_cpu"] is not None:
                cells.append(f"{short} {round(r['workers_waiting_for_cpu'] * 100)} %")
        return " · ".join(cells)

    row("workers' event loop ready but waiting for a core", waiting)
    row(
        "load average (1 min) at the start of the recipe's load",
        lambda k: str(r["load_average_1m"]) if (r := get(PRODUCTION, k)) else "—",
    )
    return "\n".join(lines)


def write_docs(output: dict[str, Any]) -> None:
    start, end = "<!-- bench:relay:production -->", "<!-- /bench:relay:production -->"
    machine = output["machine"]
    block = (
        f"{start}\n"
        f"Measured {output['date']} with `{output['command']}` "
        f"({output['duration_s']:.0f} s; {machine['cpus']} cores, Python {machine['python']}; "
        f"load average at the end {' / '.join(machine['load_average_at_end'])}).\n\n"
        f"{markdown(output)}\n{end}"
    )
    report.put_block(block, start, end, anchor="<!-- bench:relay:production-here -->")


def fix_args(args: argparse.Namespace) -> None:
    """--production's defaults: K per worker, WebSocket, all three targets, no capacity."""
    if args.workers < 2:
        args.workers = 2
    if args.streams_given is None:
        args.streams = QUICK_STREAMS if args.quick else TABLE_STREAMS
    if args.targets_given is None:
        args.targets = ["production", "chatsite", "baseline"]
