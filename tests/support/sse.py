"""An SSE response of the ASGI app read in-process, chunk by chunk, as a browser reads it."""

from __future__ import annotations

from urllib.parse import urlencode

from channels.testing import ApplicationCommunicator

from tests.support.transport import http_scope

# A CSRF secret (32 letters and digits) for the cookie and the header of an ASGI POST.
CSRF_TOKEN = "ssetest0" * 4


class SSE:
    """Reads an SSE response from the ASGI app chunk by chunk, as a browser does: a GET, or
    the composer's htmx POST of `form`."""

    def __init__(
        self,
        path: str,
        cookie: str,
        last_event_id: str | None = None,
        form: dict[str, str] | None = None,
    ):
        headers = [(b"cookie", cookie.encode())]
        if last_event_id is not None:
            headers.append((b"last-event-id", last_event_id.encode()))
        self.body = urlencode(form).encode() if form is not None else b""
        if form is not None:
            headers = [
                (b"cookie", f"{cookie}; csrftoken={CSRF_TOKEN}".encode()),
                (b"x-csrftoken", CSRF_TOKEN.encode()),
                (b"hx-request", b"true"),
                (b"content-type", b"application/x-www-form-urlencoded"),
            ]
        method = "GET" if form is None else "POST"
        from chatsite.asgi import application

        self.app = ApplicationCommunicator(application, http_scope(path, headers, method))
        self.buffer = ""

    async def open(self) -> dict:
        await self.app.send_input({"type": "http.request", "body": self.body, "more_body": False})
        return await self.app.receive_output(5)

    async def event(self, timeout: float = 5) -> dict[str, str]:
        """The next event; `: ping` comments (sent while a slow reply waits) are skipped."""
        while True:
            event = await self._next_block(timeout)
            if set(event) != {""}:
                return event

    async def _next_block(self, timeout: float) -> dict[str, str]:
        while "\n\n" not in self.buffer:
            chunk = await self.app.receive_output(timeout)
            assert chunk["type"] == "http.response.body"
            self.buffer += chunk.get("body", b"").decode()
            if not chunk.get("more_body"):
                self.buffer += "\n\n" if self.buffer and not self.buffer.endswith("\n\n") else ""
                if not self.buffer:
                    return {}
        raw, self.buffer = self.buffer.split("\n\n", 1)
        event: dict[str, str] = {}
        for line in raw.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            event[field] = event[field] + "\n" + value if field in event else value
        return event

    async def close(self):
        await self.app.send_input({"type": "http.disconnect"})
        await self.app.wait(2)
