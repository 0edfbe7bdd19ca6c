"""Start what the benchmark measures, each pinned to its core: the fake upstream and the load
client on one, the server under test (the baseline relay or chatsite, both under Daphne) on the
other."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import app_env, migrate

REPO = Path(__file__).resolve().parents[2]
SERVER_CORE = 0
CLIENT_CORE = 1
MODEL = "gpt-4.1-mini"


def pin_client() -> None:
    """Pin this process (the load client) to the client's core."""
    with contextlib.suppress(AttributeError, OSError):
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {CLIENT_CORE})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    # taskset execs the command, so the pid we get is the server's own.
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *command]
    return command


def wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not listen: {log.read_text()[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def process(command: list[str], *, port: int, log: Path, env: dict[str, str] | None = None):
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own commands
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Server:
    """A server under test: its ports (one per worker) and process ids."""

    name: str
    ports: list[int]
    pids: list[int]
    model: str = ""
    counts_writes: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # chatsite's: for manage.py beside it


@contextlib.contextmanager
def upstream(workdir: Path, *, tokens: int, rate: float) -> Iterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.relay.upstream", "--port", str(port)]
    command += ["--tokens", str(tokens), "--rate", str(rate)]
    with process(pinned(CLIENT_CORE, command), port=port, log=workdir / "upstream.log") as proc:
        yield port, proc.pid


def _daphne(port: int, app: str) -> list[str]:
    # Both servers through chatsite's launcher, so both run Daphne on the same event loop
    # (uvloop unless CHAT_EVENT_LOOP=asyncio: the benchmark's --event-loop).
    command = [
        sys.executable,
        "-m",
        "chatsite.serving.server",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        app,
    ]
    return pinned(SERVER_CORE, command)


@contextlib.contextmanager
def baseline(workdir: Path, upstream_port: int) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "RELAY_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
    with process(
        _daphne(port, "benchmarks.relay.baseline:app"),
        port=port,
        log=workdir / "baseline.log",
        env=env,
    ) as proc:
        yield Server("baseline", [port], [proc.pid])


def chatsite_env(
    data_dir: Path, upstream_port: int, *, database_url: str = "", redis_url: str = ""
) -> dict[str, str]:
    overrides = {
        "OPENAI_API_KEY": "bench-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "OPENAI_MODELS": MODEL,
        "CHAT_DEFAULT_MODEL": f"openai:{MODEL}",
        # Every simulated person connects from 127.0.0.1: the per-IP caps would count them as one.
        "CHAT_RATE_LIMIT": "",
        "CHAT_IP_RATE_LIMIT": "",
        "CHAT_MAX_STREAMING_PER_IP": "0",
        "CHAT_MAX_READERS_PER_IP": "0",
        "LOG_LEVEL": "WARNING",
    }
    if database_url:
        overrides["DATABASE_URL"] = database_url
    if redis_url:
        overrides["REDIS_URL"] = redis_url
    return app_env(data_dir, **overrides)


@contextlib.contextmanager
def chatsite(
    workdir: Path,
    upstream_port: int,
    *,
    workers: int = 1,
    database_url: str = "",
    redis_url: str = "",
) -> Iterator[Server]:
    data_dir = workdir / "chatsite-data"
    data_dir.mkdir(exist_ok=True)
    env = chatsite_env(data_dir, upstream_port, database_url=database_url, redis_url=redis_url)
    migrate(env)
    with contextlib.ExitStack() as stack:
        ports, pids = [], []
        for worker in range(workers):
            port = free_port()
            proc = stack.enter_context(
                process(
                    _daphne(port, "benchmarks.relay.chatsite_asgi:application"),
                    port=port,
                    log=workdir / f"chatsite-{worker}.log",
                    env=env,
                )
            )
            ports.append(port)
            pids.append(proc.pid)
        yield Server("chatsite", ports, pids, model=f"openai:{MODEL}", counts_writes=True, env=env)


@contextlib.contextmanager
def redis_server(workdir: Path, *, pin: bool = True) -> Iterator[str]:
    port = free_port()
    command = [shutil.which("redis-server") or "redis-server", "--port", str(port)]
    command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    command = pinned(CLIENT_CORE, command) if pin else command
    with process(command, port=port, log=workdir / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def postgres_server(workdir: Path, *, pin: bool = True) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (as scripts/with_postgres.py starts for the suite), on the
    client's core unless `pin` is False."""
    from scripts.with_postgres import _bin  # type: ignore[import-not-found]

    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL (initdb, pg_ctl) is not installed")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="chatsite-bench-pg-"))
    if as_root:
        shutil.chown(root, "postgres")
    data = root / "data"
    port = free_port()
    subprocess.run(  # noqa: S603 - our own commands
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = str(root / "log")
    start = [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", log, "-w", "start"]
    subprocess.run(  # noqa: S603 - our own commands
        pinned(CLIENT_CORE, start) if pin else start, check=True, stdout=subprocess.DEVNULL
    )
    try:
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(  # noqa: S603 - our own commands
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)
