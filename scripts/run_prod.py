"""Run chatsite in production: N Daphne workers behind nginx, against PostgreSQL and Redis.

    make run-prod                       # or: .venv/bin/python scripts/run_prod.py --port 8000

1. Refuses to start without DATABASE_URL (a database server) and REDIS_URL: several workers
   share replies, stops and rate limits only through them.
2. Runs `manage.py migrate` and `manage.py collectstatic_cached` (collectstatic's hashed,
   compressed files for WhiteNoise, skipped when no source changed; DJANGO_STATIC_MANIFEST=true
   is set for every process it starts).
3. Starts CHAT_WORKERS Daphne workers (default: one per CPU core) on loopback sockets that it
   binds itself and hands over (`daphne --fd`), so no port can be taken in between, and waits
   until each answers /healthz.
4. Writes nginx.conf from deploy/nginx.conf.template into its run directory and starts nginx in
   front of the workers on --host/--port.

It restarts nothing: if any process exits, it stops the others and exits non-zero, so whatever
supervises it (systemd, Docker's restart policy, an orchestrator) sees the failure. On SIGTERM
or SIGINT it drains: nginx stops accepting (SIGQUIT), every worker gets SIGTERM and ends its live
replies (see CHAT_SHUTDOWN_GRACE_SECONDS), then it exits 0.

Metrics: every worker writes prometheus-client's multi-process files into the run directory's
`metrics/` (PROMETHEUS_MULTIPROC_DIR, emptied at start), so /metrics through any worker counts
all of them. The run directory (default: $CHATSITE_DATA_DIR/run, else var/run) also holds
nginx's pid and temporary files, so it runs as root or as any user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "deploy" / "nginx.conf.template"
BIN = Path(sys.executable).parent
POLL_SECONDS = 0.2
START_TIMEOUT_SECONDS = 90.0


def say(message: str) -> None:
    print(f"run_prod: {message}", file=sys.stderr, flush=True)


class StartupError(Exception):
    pass


def _float_env(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name) or default)
    except ValueError:
        raise StartupError(f"{name} must be a number, not {env[name]!r}") from None


def worker_count(env: dict[str, str]) -> int:
    raw = env.get("CHAT_WORKERS") or env.get("WEB_CONCURRENCY") or ""
    if not raw:
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    if not raw.isdigit() or int(raw) < 1:
        raise StartupError(f"CHAT_WORKERS must be a whole number of at least 1, not {raw!r}")
    return int(raw)


def required_settings(env: dict[str, str]) -> None:
    """Production settings fail loudly: say exactly what is missing, before anything starts."""
    problems = []
    database = env.get("DATABASE_URL", "")
    if not database:
        problems.append("DATABASE_URL is not set (e.g. postgres://chat:secret@db-host/chat)")
    elif database.startswith("sqlite"):
        problems.append(
            "DATABASE_URL is SQLite: several workers need a database server (PostgreSQL)"
        )
    if not env.get("REDIS_URL"):
        problems.append("REDIS_URL is not set (e.g. redis://redis-host:6379/0)")
    if problems:
        raise StartupError(
            "cannot start the production setup:\n  - " + "\n  - ".join(problems)
            + "\n(`make run` is the single-process setup that needs neither.)"
        )  # fmt: skip


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise StartupError("nginx is not installed (Debian: apt-get install nginx)")
    return found


def bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def nginx_config(
    *, run_dir: Path, listen: str, worker_ports: list[int], env: dict[str, str]
) -> str:
    reply_timeout = _float_env(env, "CHAT_REPLY_TIMEOUT", 300)
    idle_timeout = _float_env(env, "CHAT_IDLE_TIMEOUT", 60)
    grace = _float_env(env, "CHAT_SHUTDOWN_GRACE_SECONDS", 10)
    user_directive = ""
    if os.geteuid() == 0:
        # nginx's workers drop root; the run directory's temporary paths are given to them.
        for user, group in (("www-data", "www-data"), ("nobody", "nogroup")):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(user)
                user_directive = f"user {user} {group};"
                break
    values = {
        "nginx_processes": env.get("CHAT_PROXY_PROCESSES", "auto"),
        "run_dir": str(run_dir),
        "user_directive": user_directive,
        "shutdown_timeout": str(int(grace + 15)),
        "upstream_servers": "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in worker_ports
        ),
        "listen": listen,
        "read_timeout": str(int(max(reply_timeout, idle_timeout) + 60)),
        "stream_timeout": str(int(max(3600, 2 * idle_timeout))),
        "upload_body_max": str(
            int(_float_env(env, "CHAT_MAX_UPLOAD_BYTES", 20 * 1024 * 1024)) + 1024 * 1024
        ),
        "api_body_max": str(
            int(_float_env(env, "CHAT_API_MAX_BODY_BYTES", 32 * 1024 * 1024)) + 1024 * 1024
        ),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("{{ " + name + " }}", value)
    if "{{" in text:
        raise StartupError("deploy/nginx.conf.template has a placeholder run_prod.py does not fill")
    return text


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except OSError:
        return False


class Deployment:
    def __init__(self, *, host: str, port: int, run_dir: Path, env: dict[str, str]) -> None:
        self.host, self.port, self.run_dir = host, port, run_dir
        self.env = env
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_ports: list[int] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.stopping = False

    # --- Starting -----------------------------------------------------------------------------

    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # nginx's workers (another user when started as root) must reach their temporary paths.
        self.run_dir.chmod(0o755)
        metrics_dir = self.run_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # counts start again with the processes
        metrics_dir.mkdir()
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.env["DJANGO_STATIC_MANIFEST"] = "true"
        # Only the proxy in front, on loopback, may say who the client is.
        self.env.setdefault("CHAT_TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
        manage = [sys.executable, str(REPO / "manage.py")]
        say("migrating the database")
        subprocess.run([*manage, "migrate", "--noinput"], cwd=REPO, env=self.env, check=True)  # noqa: S603
        say("collecting static files (hashed and compressed; skipped when unchanged)")
        subprocess.run([*manage, "collectstatic_cached"], cwd=REPO, env=self.env, check=True)  # noqa: S603

    def start_workers(self, count: int) -> None:
        for index in range(count):
            sock = bind_loopback()
            port = sock.getsockname()[1]
            worker_env = {**self.env, "CHAT_WORKER": str(index + 1)}
            command = [
                sys.executable, "-m", "chatsite.serving.server",  # Daphne on uvloop
                "--fd", str(sock.fileno()),
                # The proxy's client address is in X-Forwarded-For, which the app reads itself
                # from CHAT_TRUSTED_PROXIES only; Daphne must not believe it for everyone.
                "--ping-interval", "20",
                # nginx writes the access log (with the upstream and the request id).
                "--verbosity", "0",
                "chatsite.asgi:application",
            ]  # fmt: skip
            process = subprocess.Popen(command, cwd=REPO, env=worker_env, pass_fds=[sock.fileno()])  # noqa: S603
            sock.close()  # the worker has its own copy
            self.workers.append(process)
            self.worker_ports.append(port)
            say(f"worker {index + 1} (pid {process.pid}) on 127.0.0.1:{port}")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        pending = set(range(count))
        while pending:
            self._check_children()
            for index in list(pending):
                if healthy(f"http://127.0.0.1:{self.worker_ports[index]}/healthz"):
                    pending.discard(index)
            if time.monotonic() > deadline:
                raise StartupError(f"workers {sorted(i + 1 for i in pending)} did not start")
            time.sleep(POLL_SECONDS)

    def start_proxy(self) -> None:
        binary = nginx_binary()
        config = self.run_dir / "nginx.conf"
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        config.write_text(
            nginx_config(
                run_dir=self.run_dir, listen=listen, worker_ports=self.worker_ports, env=self.env
            )
        )
        base = [binary, "-p", str(self.run_dir), "-c", str(config), "-e", "stderr"]
        subprocess.run([*base, "-t", "-q"], check=True)  # noqa: S603 - a broken config stops here
        self.nginx = subprocess.Popen(base)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        probe_host = f"[{probe_host}]" if ":" in probe_host else probe_host
        while not healthy(f"http://{probe_host}:{self.port}/healthz"):
            self._check_children()
            if time.monotonic() > deadline:
                raise StartupError("nginx did not start")
            time.sleep(POLL_SECONDS)
        say(f"serving http://{probe_host}:{self.port}/ with {len(self.workers)} workers")

    # --- Running and stopping -----------------------------------------------------------------

    def children(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        named = [(f"worker {i + 1}", process) for i, process in enumerate(self.workers)]
        return named + ([("nginx", self.nginx)] if self.nginx is not None else [])

    def _check_children(self) -> None:
        for name, process in self.children():
            code = process.poll()
            if code is not None and not self.stopping:
                raise ChildExited(f"{name} (pid {process.pid}) exited with code {code}")

    def wait(self) -> None:
        while not self.stopping:
            self._check_children()
            time.sleep(POLL_SECONDS)

    def stop(self) -> bool:
        """Drain and stop everything; True if every process ended cleanly by itself."""
        self.stopping = True
        grace = _float_env(self.env, "CHAT_SHUTDOWN_GRACE_SECONDS", 10)
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # stop accepting; finish open requests
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        clean = True
        deadline = time.monotonic() + grace + 20
        for name, process in self.children():
            try:
                code = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} (pid {process.pid}) did not stop in time: killing it")
                process.kill()
                code = process.wait()
            self._forget_metrics(process.pid)
            if code not in (0, -signal.SIGTERM, -signal.SIGQUIT):
                say(f"{name} (pid {process.pid}) ended with code {code}")
                clean = False
        return clean

    def _forget_metrics(self, pid: int) -> None:
        # A dead worker's live gauges must not be summed any more.
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.env["PROMETHEUS_MULTIPROC_DIR"])


class ChildExited(Exception):
    pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    data_dir = Path(env.get("CHATSITE_DATA_DIR") or REPO / "var")
    run_dir = (args.run_dir or data_dir / "run").resolve()
    deployment = Deployment(host=args.host, port=args.port, run_dir=run_dir, env=env)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not deployment.stopping:
            say(f"{signal.Signals(signum).name}: draining")
            deployment.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        required_settings(env)
        count = worker_count(env)
        nginx_binary()
        # A stop asked for while starting is honoured between steps (and then drains as usual).
        for step in (
            deployment.prepare,
            lambda: deployment.start_workers(count),
            deployment.start_proxy,
        ):
            if deployment.stopping:
                break
            step()
        deployment.wait()
    except (StartupError, ChildExited) as exc:
        say(str(exc))
        deployment.stop()
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(map(str, exc.cmd[:4]))} failed with code {exc.returncode}")
        deployment.stop()
        return 1
    clean = deployment.stop()
    say("stopped" if clean else "stopped, not cleanly")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
