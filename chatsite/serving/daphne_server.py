"""Daphne's command line with a server whose action log (the access log) never writes a
credential: every URL it logs goes through `url_redact` first.

Import this only once the event loop policy is set (chatsite/serving/server.py): importing
Daphne's server creates its event loop.
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface as DaphneCommandLineInterface
from daphne.server import Server as DaphneServer

from chatsite.serving.redaction import url_redact


class Server(DaphneServer):  # type: ignore[misc]
    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        # Every access-log line (HTTP and WebSocket) is written from these details.
        if isinstance(details.get("path"), str):
            details = {**details, "path": url_redact(details["path"])}
        super().log_action(protocol, action, details)


class CommandLineInterface(DaphneCommandLineInterface):  # type: ignore[misc]
    server_class = Server
