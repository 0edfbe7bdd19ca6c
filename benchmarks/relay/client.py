"""The load client: talks to each server the way its page does, and times every token.

Bare asyncio protocols (a minimal WebSocket client and a streaming HTTP/SSE reader) rather than
a client library, so the client's own cost per frame is small and the receive time is taken as
the bytes arrive (`data_received`), before any parsing.

- chatsite over WebSocket, as static/chat/chat.js does over hx-ws: the page is loaded (its
  session and CSRF cookies), the socket opened; at the send time a `send` frame, then, once the
  started fragment names the new reply, a `watch` frame from seq 0, then fragments until the
  finished message (`<article`).
- chatsite over SSE, as the page's fallback does: the htmx POST of the composer with
  `stream=1`, whose event stream brings the started fragment and then the reply, events until
  the finished message.
- the baseline: `{"message": ...}` on its socket, or `GET /events?message=...`.

Each token's text carries the upstream's send time (`t<index>@<monotonic ns>`); the client
records, per token, receive time minus that stamp, and counts what arrived twice or never.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import json
import os
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

TOKEN = re.compile(r"t(\d{3})@(\d+)")
STARTED_REPLY = re.compile(r'data-role="assistant" data-status="streaming" data-message-id="(\d+)"')
ENDING = re.compile(r'data-status="(\w+)"')
REFUSAL = re.compile(r'id="composer-error"[^>]*>\s*([^<\s][^<]*)<')
PAGE_PATH = "/streaming-demo"


@dataclass
class StreamResult:
    sent_ns: int = 0
    started_ns: int | None = None  # chatsite: when the started fragment (the send's answer) came
    first_ns: int | None = None  # receive time of the first token
    added_ns: list[int] = field(default_factory=list)  # receive time minus stamp, per token
    seen: Counter[int] = field(default_factory=Counter)
    frames: int = 0  # frames (WS messages / SSE events) that carried tokens
    finished: bool = False
    ending: str = ""  # the finished message's status: complete, error, ...
    error: str = ""

    def end(self, final_html: str, received_ns: int) -> None:
        """The finished message replaces the bubble with the whole text: tokens not seen in a
        fragment before arrive now (a reader that came late gets only this)."""
        self.finished = True
        status = ENDING.search(final_html)
        self.ending = status.group(1) if status else "?"
        late = [(i, stamp) for i, stamp in TOKEN.findall(final_html) if int(i) not in self.seen]
        if late:
            self.frames += 1
            self.first_ns = self.first_ns or received_ns
        for index, stamp in late:
            self.seen[int(index)] += 1
            self.added_ns.append(received_ns - int(stamp))

    def take(self, text: str, received_ns: int) -> None:
        found = TOKEN.findall(text)
        if not found:
            return
        self.frames += 1
        if self.first_ns is None:
            self.first_ns = received_ns
        for index, stamp in found:
            self.seen[int(index)] += 1
            self.added_ns.append(received_ns - int(stamp))


# --- Plain HTTP (setup and the SSE send) ---------------------------------------------------------


async def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, list[tuple[str, str]], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    ]
    if ("transfer-encoding", "chunked") in response_headers:
        payload = _dechunk_all(payload)
    return int(status_line.split()[1]), response_headers, payload


def _dechunk_all(data: bytes) -> bytes:
    out: list[bytes] = []
    position = 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2 : line_end + 2 + size])
        position = line_end + 2 + size + 2


@dataclass
class Visitor:
    """A browser's cookies for chatsite: the session (with its visitor id) and the CSRF token."""

    cookies: dict[str, str]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


async def visitor_open(port: int) -> Visitor:
    status, headers, _body = await http_request(port, "GET", PAGE_PATH)
    if status != 200:
        raise RuntimeError(f"GET {PAGE_PATH} answered {status}")
    cookies = {}
    for name, value in headers:
        if name == "set-cookie":
            key, _, rest = value.partition("=")
            cookies[key] = rest.split(";")[0]
    return Visitor(cookies)


# --- WebSocket ------------------------------------------------------------------------------------


class WebSocketClient(asyncio.Protocol):
    """Just enough RFC 6455 for a client: handshake, masked text frames out, frames in."""

    def __init__(
        self, on_message: Callable[[str, int], None], on_close: Callable[[], None] | None = None
    ) -> None:
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A socket that fails after its handshake was awaited must not log "never retrieved".
        self.upgraded.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.partial: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("socket closed"))
        if self.on_close is not None:
            self.on_close()

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()
        self.buffer += data
        if not self.upgraded.done():
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            status = self.buffer[: self.buffer.find(b"\r\n")]
            self.buffer = self.buffer[head_end + 4 :]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode("latin-1")))
                return
            self.upgraded.set_result(None)
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < offset + length:
                return
            payload = self.buffer[offset : offset + length]
            self.buffer = self.buffer[offset + length :]
            opcode = first & 0x0F
            if opcode in (0x1, 0x0):
                self.partial.append(payload)
                if first & 0x80:
                    text = b"".join(self.partial).decode()
                    self.partial = []
                    self.on_message(text, received_ns)
            elif opcode == 0x9:
                self._write(0xA, payload)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        elif size < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
        key = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        if self.transport is None:
            raise RuntimeError("not connected")
        self.transport.write(head + mask + masked)

    def send_text(self, text: str) -> None:
        self._write(0x1, text.encode())

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self._write(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def websocket_open(
    port: int,
    path: str,
    on_message: Callable[[str, int], None],
    on_close: Callable[[], None],
    cookie: str = "",
    headers: dict[str, str] | None = None,
) -> WebSocketClient:
    loop = asyncio.get_running_loop()
    _transport, client = await loop.create_connection(
        lambda: WebSocketClient(on_message, on_close), "127.0.0.1", port
    )
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        + "\r\n"
    )
    if client.transport is None:
        raise RuntimeError("not connected")
    client.transport.write(request.encode())
    await asyncio.wait_for(client.upgraded, 60)
    return client


# --- Server-Sent Events ---------------------------------------------------------------------------


class EventStreamClient(asyncio.Protocol):
    """A streaming GET whose body (chunked or not) is parsed into SSE events as it arrives."""

    def __init__(self, on_event: Callable[[str, int], bool]) -> None:
        self.on_event = on_event  # returns True at the last event
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.head_done = False
        self.chunked = False
        self.chunk_left = 0
        self.text = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("event stream closed before its end"))

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()
        self.buffer += data
        if not self.head_done:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").lower()
            status = head.split("\r\n")[0]
            # A refused send is answered with an HTML fragment (4xx/5xx), not a stream.
            if (" 200 " not in status or "text/event-stream" not in head) and not self.done.done():
                self.done.set_exception(ConnectionError(status))
                return
            self.chunked = "transfer-encoding: chunked" in head
            self.buffer = self.buffer[head_end + 4 :]
            self.head_done = True
        body = self._body()
        if not body:
            return
        self.text += self.decoder.decode(body)
        while (end := self.text.find("\n\n")) >= 0:
            event, self.text = self.text[:end], self.text[end + 2 :]
            lines = event.split("\n")
            joined = "\n".join(
                line[6:] if line.startswith("data: ") else line[5:]
                for line in lines
                if line.startswith("data:")
            )
            if joined and self.on_event(joined, received_ns) and not self.done.done():
                self.done.set_result(None)
                if self.transport is not None:
                    self.transport.close()

    def _body(self) -> bytes:
        if not self.chunked:
            body, self.buffer = self.buffer, b""
            return body
        out = []
        while self.buffer:
            if self.chunk_left:
                piece = self.buffer[: self.chunk_left]
                out.append(piece)
                self.buffer = self.buffer[len(piece) :]
                self.chunk_left -= len(piece)
                if self.chunk_left:
                    break
                continue
            if self.buffer.startswith(b"\r\n"):
                self.buffer = self.buffer[2:]
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                break
            self.chunk_left = int(self.buffer[:line_end].split(b";")[0], 16)
            self.buffer = self.buffer[line_end + 2 :]
            if self.chunk_left == 0:
                break
        return b"".join(out)


async def event_stream(
    port: int,
    path: str,
    on_event: Callable[[str, int], bool],
    cookie: str = "",
    *,
    form: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    """GET `path`'s event stream, or POST `form` to it (with `headers`) when one is given."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        lambda: EventStreamClient(on_event), "127.0.0.1", port
    )
    method = "POST" if form else "GET"
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        + (f"Content-Length: {len(form)}\r\n" if form else "")
        + "\r\n"
    )
    transport.write(request.encode() + form)
    try:
        await client.done
    finally:
        transport.close()


# --- One stream per target and transport --------------------------------------------------------


class ChatsiteSocket:
    """A chatsite page's WebSocket, opened ahead of its send."""

    def __init__(self, port: int, visitor: Visitor) -> None:
        self.port, self.visitor = port, visitor
        self.result = StreamResult()
        self.socket: WebSocketClient | None = None
        self.ended: asyncio.Future[None] | None = None
        self.watching = False

    async def open(self) -> None:
        self.ended = asyncio.get_running_loop().create_future()
        self.ended.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.socket = await websocket_open(
            self.port, "/ws/chat/", self.on_message, self.on_close, self.visitor.cookie_header
        )

    def on_close(self) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_exception(ConnectionError("the socket closed before the reply ended"))

    def on_message(self, text: str, received_ns: int) -> None:
        if self.socket is None or self.ended is None:
            raise RuntimeError("not connected")
        if not self.watching:
            started = STARTED_REPLY.search(text)
            if started is None:
                # The send was refused (the error shows next to the composer).
                if "composer-error" in text and not self.ended.done():
                    self.ended.set_exception(RuntimeError(text[:300]))
                return
            # As chat.js does once the started fragment is swapped in: follow the reply.
            self.result.started_ns = received_ns
            self.watching = True
            self.socket.send_text(
                json.dumps({"action": "watch", "message_id": started.group(1), "after": 0})
            )
            return
        if "<article" in text:
            self.result.end(text, received_ns)
            if not self.ended.done():
                self.ended.set_result(None)
            return
        if (refused := REFUSAL.search(text)) and not self.ended.done():
            self.ended.set_exception(RuntimeError(refused.group(1)[:300]))
            return
        self.result.take(text, received_ns)

    def join(self, conversation: str, client: str) -> None:
        """Enter the conversation's live room, as chat.js does once the socket is open on the
        conversation's page (`client`: the page's id, so the room does not echo its sends)."""
        if self.socket is None:
            raise RuntimeError("not connected")
        frame = {"action": "join", "conversation": conversation, "client": client}
        self.socket.send_text(json.dumps(frame))

    async def run(self, prompt: str, model: str, conversation: str = "") -> StreamResult:
        """Send `prompt` (in `conversation`, or a new one) and read the reply to its end. A
        socket in a room whose other member sends reads that reply too: await `ended`."""
        if self.socket is None or self.ended is None:
            raise RuntimeError("not connected")
        self.result.sent_ns = time.monotonic_ns()
        # What hx-ws sends for the composer form: its values plus a "headers" object.
        frame = {
            "action": "send",
            "message": prompt,
            "model": model,
            "system_prompt": "",
            "conversation": conversation,
            "headers": {"HX-Request": "true", "HX-Trigger": "composer"},
        }
        self.socket.send_text(json.dumps(frame))
        await self.ended
        return self.result

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


async def chatsite_sse(
    port: int, visitor: Visitor, prompt: str, model: str, result: StreamResult
) -> StreamResult:
    result.sent_ns = time.monotonic_ns()
    form = urllib.parse.urlencode(
        {"action": "send", "message": prompt, "model": model, "system_prompt": "", "stream": "1"}
    ).encode()

    def on_event(data: str, received_ns: int) -> bool:
        if result.started_ns is None:
            # The send's answer, the first event: the new bubbles. The reply follows.
            result.started_ns = received_ns
            return False
        if "<article" in data:
            result.end(data, received_ns)
            return True
        result.take(data, received_ns)
        return False

    await event_stream(
        port,
        f"{PAGE_PATH}/messages",
        on_event,
        visitor.cookie_header,
        form=form,
        headers={
            "X-CSRFToken": visitor.cookies.get("csrftoken", ""),
            "HX-Request": "true",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return result


class BaselineSocket:
    def __init__(self, port: int) -> None:
        self.port = port
        self.result = StreamResult()
        self.socket: WebSocketClient | None = None
        self.ended: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self.ended = asyncio.get_running_loop().create_future()
        self.ended.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.socket = await websocket_open(self.port, "/ws", self.on_message, self.on_close)

    def on_close(self) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_exception(ConnectionError("the socket closed before the reply ended"))

    def on_message(self, text: str, received_ns: int) -> None:
        if self.ended is None:
            raise RuntimeError("not connected")
        if "<article" in text:
            self.result.end(text, received_ns)
            if not self.ended.done():
                self.ended.set_result(None)
            return
        self.result.take(text, received_ns)

    async def run(self, prompt: str, model: str) -> StreamResult:
        if self.socket is None or self.ended is None:
            raise RuntimeError("not connected")
        self.result.sent_ns = time.monotonic_ns()
        self.socket.send_text(json.dumps({"message": prompt}))
        await self.ended
        return self.result

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


async def baseline_sse(port: int, prompt: str, result: StreamResult) -> StreamResult:
    result.sent_ns = time.monotonic_ns()

    def on_event(data: str, received_ns: int) -> bool:
        if "<article" in data:
            result.end(data, received_ns)
            return True
        result.take(data, received_ns)
        return False

    await event_stream(port, f"/events?{urllib.parse.urlencode({'message': prompt})}", on_event)
    return result
