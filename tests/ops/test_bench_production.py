"""The production benchmark's plumbing (benchmarks/relay/production.py): its rendering of the nginx
template pins a connection to the worker its header names, balances the others as production
does, and logs enough to check the pinning afterwards. A run of the benchmark itself takes
minutes (PostgreSQL, migrations, the loads), so it is not a test; this is the part that would
silently turn LOCAL and REMOTE readers into the same thing if the template changed."""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.relay import production
from benchmarks.relay.servers import free_port
from scripts import run_prod


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def two_workers() -> Iterator[list[int]]:
    servers = []
    for name in ("worker-0", "worker-1"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield [s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(port: int, headers: dict[str, str]) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ws/chat/", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return str(response.read().decode())


def test_the_bench_rendering_pins_by_header_and_balances_without_it(
    tmp_path: Path, two_workers: list[int]
) -> None:
    port = free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o755)
    text = run_prod.nginx_config(
        run_dir=run_dir, listen=f"127.0.0.1:{port}", worker_ports=two_workers, env={}
    )
    config = run_dir / "nginx.conf"
    config.write_text(production.bench_nginx_config(text, two_workers))
    log = tmp_path / "nginx.log"
    command = [run_prod.nginx_binary(), "-p", str(run_dir), "-c", str(config), "-e", "stderr"]
    with open(log, "wb") as out:
        nginx = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(port, {})
                break
            except OSError:
                if nginx.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not serve: {log.read_text()}") from None
                time.sleep(0.1)
        pinned = {
            n: Counter(_get(port, {production.PIN_HEADER: str(n)}) for _ in range(6))
            for n in (0, 1)
        }
        balanced = Counter(_get(port, {}) for _ in range(6))
    finally:
        nginx.terminate()
        nginx.wait(10)

    assert pinned == {0: Counter({"worker-0": 6}), 1: Counter({"worker-1": 6})}
    assert balanced == Counter({"worker-0": 3, "worker-1": 3})  # round robin, as in production
    recipe = production.Recipe(
        port=port, worker_ports=two_workers, pids={}, redis_url="", access_log=log
    )
    # The 12 pinned requests (and the 1 + 6 without the header, which are not counted), all
    # where they asked to go.
    assert recipe.check_pinning(0) == {"pinned_sockets": 12, "misrouted": 0}
    swapped = production.Recipe(
        port=port, worker_ports=two_workers[::-1], pids={}, redis_url="", access_log=log
    )
    assert swapped.check_pinning(0) == {"pinned_sockets": 12, "misrouted": 12}
