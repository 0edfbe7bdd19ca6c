"""Credentials never reach the server's access log (issue 18).

A key sent in the query string (`?api_key=…`, `?key=…`) is refused with a 401, but Daphne's
access log wrote the URL with the key in it. The real server (chatsite.serving.server, as
`make run` and `make run-prod` start it) is started as a subprocess and its log is read.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request

import pytest

from chatsite.serving.redaction import REDACTED, url_redact


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_keys_in_query_strings_are_refused_and_never_written_to_the_access_log(
    tmp_path, app_env, daphne, migrate
):
    env = app_env(tmp_path)
    migrate(env)
    key = "csk-" + secrets.token_urlsafe(32)
    token = secrets.token_urlsafe(16)
    log = tmp_path / "daphne.log"
    with daphne(env, log) as url:
        statuses = [
            get(f"{url}/v1/models?api_key={key}"),
            get(f"{url}/v1/models?key={key}&after=3"),
            get(f"{url}/v1/models?x=1&Access_Token={token}"),
            get(f"{url}/v1/models?q={key}"),  # a key under any name is still a key
            get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}),
            get(f"{url}/streaming-demo?after=12"),
        ]
        deadline = time.monotonic() + 10
        while log.read_text().count('"GET ') < 7 and time.monotonic() < deadline:
            time.sleep(0.05)  # the access log is written after the response
    text = log.read_text()

    assert statuses == [401, 401, 401, 401, 401, 200]
    assert key not in text and key[:12] not in text and token not in text
    assert f"/v1/models?api_key={REDACTED}" in text
    assert f"/v1/models?key={REDACTED}&after=3" in text
    assert f"/v1/models?x=1&Access_Token={REDACTED}" in text
    assert f"/v1/models?q={REDACTED}" in text
    assert "/streaming-demo?after=12" in text  # what is no credential stays readable


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("/v1/models", "/v1/models"),
        ("/a?after=3&page=2", "/a?after=3&page=2"),
        ("/a?api_key=s3cret", f"/a?api_key={REDACTED}"),
        ("/a?apikey=s&API-KEY=t&key=u", f"/a?apikey={REDACTED}&API-KEY={REDACTED}&key={REDACTED}"),
        ("/a?token=s&id_token=t", f"/a?token={REDACTED}&id_token={REDACTED}"),
        ("/a?password=p", f"/a?password={REDACTED}"),
        ("/cb/?code=abc&state=xyz", f"/cb/?code={REDACTED}&state={REDACTED}"),
        ("/a?x=csk-abcdef&y=2", f"/a?x={REDACTED}&y=2"),
        ("/a?x=Bearer%20abc", f"/a?x={REDACTED}"),
        ("/a?secret", f"/a?secret={REDACTED}"),
        ("/a?%6bey=s", f"/a?%6bey={REDACTED}"),  # the name as the app decodes it
        ("/a?sessionid=s;b=1", f"/a?sessionid={REDACTED}"),
        ("/accounts/reset/MQ/c4k2-abc123/", "/accounts/reset/MQ/[redacted]/"),
        ("/a?q=hello&q=world", "/a?q=hello&q=world"),
    ],
)  # fmt: skip
def test_url_redact(url, logged):
    assert url_redact(url) == logged


def test_the_proxys_access_log_redacts_credentials_too(tmp_path, repo, free_port):
    """nginx (make run-prod) writes the production access log: the same URLs, redacted."""
    import http.server
    import importlib.util
    import shutil
    import subprocess
    import threading

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    spec = importlib.util.spec_from_file_location("run_prod", repo / "scripts" / "run_prod.py")
    assert spec and spec.loader
    run_prod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_prod)

    # A stand-in worker that answers everything with a 401, as the app does a key in a URL.
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    worker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)  # nginx's workers drop root
    port = free_port()
    config = run_dir / "nginx.conf"
    config.write_text(
        run_prod.nginx_config(
            run_dir=run_dir,
            listen=f"127.0.0.1:{port}",
            worker_ports=[worker.server_address[1]],
            env={},
        )
    )
    log = tmp_path / "nginx.log"
    key = "csk-" + secrets.token_urlsafe(32)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(run_dir), "-c", str(config), "-e", "stderr"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        for path in (
            f"/v1/models?api_key={key}",
            f"/v1/models?after=3&key={key}",
            f"/v1/models?q={key}",
            "/accounts/reset/MQ/c4k2-0123456789abcdef/",
            "/streaming-demo?after=12",
        ):
            get(f"http://127.0.0.1:{port}{path}")
        while log.read_text().count("GET ") < 6:
            assert time.monotonic() < deadline + 10, log.read_text()
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(10)
        worker.shutdown()
    text = log.read_text()

    assert key not in text and "c4k2-0123456789abcdef" not in text, text
    assert text.count(f"/v1/models?{REDACTED}") == 3
    assert f"/accounts/reset/MQ/{REDACTED}/" in text
    assert "/streaming-demo?after=12" in text
