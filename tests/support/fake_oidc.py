"""A tiny OpenID Connect issuer on loopback: discovery, token and userinfo, enough for
django-allauth's authorization-code flow (the test plays the browser at the authorize step)."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeIssuer:
    base_url: str = ""
    code: str = "code-123"
    access_token: str = "access-456"
    userinfo: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-42",
            "email": "sso.user@example.com",
            "email_verified": True,
            "preferred_username": "sso.user",
            "name": "Sso User",
        }
    )
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    userinfo_requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        issuer: FakeIssuer = self.server.issuer
        if self.path == "/.well-known/openid-configuration":
            base = issuer.base_url
            self._json(
                200,
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "userinfo_endpoint": f"{base}/userinfo",
                    "jwks_uri": f"{base}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        elif self.path == "/userinfo":
            auth = self.headers.get("Authorization", "")
            issuer.userinfo_requests.append(auth)
            if auth != f"Bearer {issuer.access_token}":
                self._json(401, {"error": "invalid_token"})
            else:
                self._json(200, issuer.userinfo)
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        issuer: FakeIssuer = self.server.issuer
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        form["authorization"] = self.headers.get("Authorization", "")
        if self.path != "/token":
            self._json(404, {"error": "not_found"})
            return
        issuer.token_requests.append(form)
        if form.get("code") != issuer.code:
            self._json(400, {"error": "invalid_grant"})
            return
        # No id_token: allauth then asks the userinfo endpoint who this is.
        self._json(
            200, {"access_token": issuer.access_token, "token_type": "Bearer", "expires_in": 300}
        )


@contextlib.contextmanager
def running_fake_issuer() -> Iterator[FakeIssuer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    issuer = FakeIssuer(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.issuer = issuer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
