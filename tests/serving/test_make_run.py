"""`make run`, the front door: once the server listens it says which address to open."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time


def test_make_run_prints_the_url_to_open_once_the_server_listens(
    repo, free_port, tmp_path, app_env
):
    port = free_port()
    env = app_env(tmp_path, HOST="127.0.0.1", PORT=str(port))
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the server it starts go together at the end
    )
    expected = f"Open http://127.0.0.1:{port}/streaming-demo"
    lines: list[str] = []
    try:
        watcher = selectors.DefaultSelector()
        watcher.register(process.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        deadline = time.monotonic() + 90
        while expected not in lines and time.monotonic() < deadline and process.poll() is None:
            if watcher.select(timeout=1):
                lines.append((process.stdout.readline() or "").strip())  # type: ignore[union-attr]
        assert expected in lines, "\n".join(lines)
        # Said once the socket listens: the address answers.
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        assert lines.count(expected) == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
