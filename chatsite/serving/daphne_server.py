"""Daphne's command line with a server whose action log (the access log) never writes a
credential: every URL it logs goes through `url_redact` first.

Import this only once the event loop policy is set (chatsite/serving/server.py): importing
Daphne's server creates its event loop.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface as DaphneCommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server as DaphneServer

from chatsite.serving.redaction import url_redact

# Twisted parses a POST's form body itself (into `request.args`, through the email package) on
# the event loop before Daphne sees the request; Daphne never reads it and hands the raw body to
# Django. For a 10 MB upload that parse held the loop 0.2-0.3 s, every stream of the worker with
# it (benchmarks/attachment_load.py; py-spy: Request.requestReceived -> _getMultiPartArgs).
# Twisted sets the flag on each request in __init__; this descriptor answers False and ignores that.
WebRequest._parsePOSTFormSubmission = property(
    lambda _request: False, lambda _request, _value: None
)


class Server(DaphneServer):  # type: ignore[misc]
    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        # Every access-log line (HTTP and WebSocket) is written from these details.
        if isinstance(details.get("path"), str):
            details = {**details, "path": url_redact(details["path"])}
        super().log_action(protocol, action, details)

    # Set by `--announce-url` (chatsite/serving/server.py; `make run` passes it): once the
    # socket listens, say where to open the chat — Daphne itself only logs the address, and
    # that at a level `make run` does not show.
    announce_url = False
    announced = False

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        if not self.announce_url or self.announced or not self.listening_addresses:
            return
        self.announced = True
        host, port_number = self.listening_addresses[0]
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        print(f"Open http://{host}:{port_number}/streaming-demo", flush=True)


class CommandLineInterface(DaphneCommandLineInterface):  # type: ignore[misc]
    server_class = Server
