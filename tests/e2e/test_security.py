"""Attacks a browser can carry out against a visitor, tried in Chromium against the real server."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

# The hostile page: it reads the CSRF cookie (cookies are per host, not per port, so a page on
# another port of the same host can), then tries both ways to act as the visitor.
HOSTILE_PAGE = """<!doctype html><title>hostile</title><script>
window.result = {opened: false, frames: [], closed: null, cookie: document.cookie};
const socket = new WebSocket("ws://127.0.0.1:%(app_port)d/ws/chat/");
socket.onopen = () => {
  window.result.opened = true;
  const frame = {action: "send", message: "hostile socket message", model: "demo:demo"};
  socket.send(JSON.stringify(frame));
};
socket.onmessage = (event) => window.result.frames.push(event.data);
socket.onclose = (event) => { window.result.closed = event.code; };
const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
const form = new URLSearchParams({csrfmiddlewaretoken: token, message: "hostile post message",
                                  model: "demo:demo", action: "send"});
// A form-encoded no-cors POST is a "simple" request: no preflight, the cookies go along.
window.posted = fetch("http://127.0.0.1:%(app_port)d/streaming-demo/messages",
                      {method: "POST", body: form, credentials: "include", mode: "no-cors"})
  .then(() => "sent", (error) => String(error));
</script>"""


@contextlib.contextmanager
def hostile_site(app_port: int, port: int) -> Iterator[str]:
    """A page on another port of 127.0.0.1, served by a tiny http.server in a thread."""
    body = (HOSTILE_PAGE % {"app_port": app_port}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_port_can_neither_open_the_socket_nor_post(
    new_page: Callable[..., Any], live_server_url: str, page_errors, free_port
):
    page_errors.allow(r"WebSocket connection to .* failed")
    page_errors.allow(r"Failed to load resource: the server responded with a status of 403")
    page = new_page()
    page.goto("/streaming-demo")  # the visitor gets a session (and a CSRF cookie)
    page.wait_for_selector("#connection-state[data-state='connected']")
    app_port = int(live_server_url.rsplit(":", 1)[1])

    with hostile_site(app_port, free_port()) as hostile_url:
        with page.expect_response(lambda r: r.url.endswith("/streaming-demo/messages")) as posted:
            page.goto(hostile_url)
        # Refused: the socket closes. Let in (as before the fix): the reply's first frame arrives.
        page.wait_for_function(
            "() => window.result.closed !== null || window.result.frames.length > 0",
            timeout=15_000,
        )
        result = page.evaluate("() => window.result")
        assert page.evaluate("() => window.posted") == "sent"

    # The attacker could read the CSRF token, so only the Origin check stands in its way.
    assert "csrftoken=" in result["cookie"]
    assert posted.value.status == 403
    assert result["opened"] is False and result["frames"] == []

    # Nothing reached the visitor's chats: their page lists no conversation.
    page.goto("/streaming-demo")
    page.wait_for_selector("#connection-state[data-state='connected']")
    assert page.locator("#conversation-list a").count() == 0
    assert "hostile" not in page.content()

    # The same socket from the app's own page opens and talks: the origin was the only reason.
    frames = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const socket = new WebSocket(`ws://${location.host}/ws/chat/`);
            socket.onopen = () => socket.send(JSON.stringify(
                {action: "send", message: "own page message", model: "demo:demo"}));
            socket.onmessage = (event) => { socket.close(); resolve(event.data); };
            socket.onclose = (event) => reject(new Error(`closed ${event.code}`));
        })"""
    )
    assert "own page message" in frames
