"""A fake OpenAI / Anthropic upstream: a real HTTP/1.1 server on 127.0.0.1 for the real SDKs.

Both SDKs talk through `httpx2`, which respx and pytest-httpx cannot intercept, so tests point
the SDKs' `base_url` at this server instead. It runs `http.server.ThreadingHTTPServer` in a
background thread, so it works under any event loop (or none).

Routes: `POST /v1/chat/completions` (OpenAI SSE chunks, `data: [DONE]`) and `POST /v1/messages`
(Anthropic named SSE events). Every request is recorded, with when it started and when it ended
(or the client closed it). The reply is scripted with `FakeUpstream.script(...)` and stays in
force for the rest of the test (or until re-scripted); `script_for(marker, ...)` scripts the
replies to requests whose body contains `marker`, so concurrent requests can differ.

Streams use chunked transfer encoding, so a socket closed before the terminating chunk is a
protocol error the client notices (a `Connection: close` body would just look complete).

Tests reach it through fixtures of tests/conftest.py: `fake_upstream` (one server for the test)
and `fake_upstream_server` (this module's `running_fake_upstream`, for a server of another scope).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Upper bound on any wait inside the server, so a forgotten stall can never hang the suite.
MAX_STALL_SECONDS = 10.0


@dataclass
class Reply:
    """What the next requests get.

    Each fault names a point by the number of text chunks already sent: 0 is before the first,
    `chunks` is after the last (before the closing events, e.g. usage and [DONE]).
    """

    text: str = "Hello there! This reply was streamed by the fake upstream."
    chunks: int = 4
    delay: float = 0.0  # seconds before each text chunk
    input_tokens: int = 12  # OpenAI prompt_tokens (cache included); Anthropic uncached input
    output_tokens: int = 9  # final output total
    cached_tokens: int = 0  # OpenAI cached_tokens / Anthropic cache_read_input_tokens
    cache_creation_tokens: int = 0  # Anthropic cache_creation_input_tokens
    finish_reason: str = "stop"  # OpenAI finish_reason; Anthropic stop_reason is "end_turn"
    status: int | None = None  # answer with this HTTP error instead of streaming
    error_message: str = "Scripted failure."  # the message in the HTTP error body
    drop_after: int | None = None  # close the socket mid-body after k text chunks
    stall_after: int | None = None  # after k text chunks, wait for release() or disconnect
    # An in-stream error after k chunks: Anthropic `event: error` (overloaded_error), OpenAI a
    # `data: {"error": ...}` line; the stream then ends cleanly.
    error_event_after: int | None = None
    # After k text chunks, a chunk that is not valid JSON (a buggy or hostile upstream).
    malformed_after: int | None = None
    first_delay: float = 0.0  # seconds before the first text chunk (a slow first token)
    pause_after: int | None = None  # after k text chunks, go silent for `pause_seconds`
    pause_seconds: float = 0.0
    max_wait: float = MAX_STALL_SECONDS  # bound on any single wait of this reply

    def pieces(self) -> list[str]:
        """The text split into `chunks` near-equal pieces (fewer if the text is shorter)."""
        n = max(1, min(self.chunks, len(self.text)))
        size, extra = divmod(len(self.text), n)
        out, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            out.append(self.text[start:end])
            start = end
        return out


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw text if it was not JSON
    started_at: float = 0.0  # time.monotonic() when the request arrived
    ended_at: float | None = None  # when the body was complete, or the client was seen gone
    client_gone: bool = False  # the client closed the request before the body was complete
    chunks_sent: int = 0  # text chunks written

    def _parts(self) -> Iterator[dict[str, Any]]:
        for message in (self.body or {}).get("messages", []) if isinstance(self.body, dict) else []:
            content = message.get("content")
            if isinstance(content, list):
                yield from (part for part in content if isinstance(part, dict))
            elif isinstance(content, str):
                yield {"type": "text", "text": content}

    def images(self) -> list[tuple[str, str, tuple[int, int]]]:
        """Each image the request carried, decoded: (how it was sent, its format, its size)
        where "how" is "image_url" (OpenAI's data URL) or "base64" (Anthropic's image block)."""
        from PIL import Image

        found = []
        for part in self._parts():
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                header, _, data = url.partition(",")
                assert header.startswith("data:image/") and header.endswith(";base64"), header
                kind = "image_url"
            elif part.get("type") == "image":
                assert part["source"]["type"] == "base64"
                data, kind = part["source"]["data"], "base64"
            else:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(data)))
            found.append((kind, image.format or "", image.size))
        return found

    def documents(self) -> list[tuple[str, str, str]]:
        """Each document block in the request's text: (file name, what was included, text)."""
        text = "\n".join(part.get("text", "") for part in self._parts() if "text" in part)
        return [
            (html.unescape(name), html.unescape(included), body)
            for name, included, body in re.findall(
                r'<document name="([^"]*)" included="([^"]*)">\n(.*?)\n</document>', text, re.S
            )
        ]


@dataclass
class FakeUpstream:
    host: str
    port: int
    requests: list[RecordedRequest] = field(default_factory=list)
    reply: Reply = field(default_factory=Reply)
    replies_for: dict[str, Reply] = field(default_factory=dict)
    # Set when a streaming client went away before the server finished its reply.
    client_disconnected: threading.Event = field(default_factory=threading.Event)
    # Set while a stalled reply is waiting; release() lets it carry on.
    stalled: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        # The Anthropic SDK appends /v1/messages itself.
        return self.base_url

    def script(self, **changes: Any) -> Reply:
        """Replace the reply for the following requests: defaults plus `changes`."""
        self.reply = Reply(**changes)
        self._release.clear()
        self.stalled.clear()
        return self.reply

    def script_for(self, marker: str, **changes: Any) -> Reply:
        """The reply for requests whose body contains `marker` (e.g. a word of the prompt)."""
        self.replies_for[marker] = reply = Reply(**changes)
        return reply

    def request_with(self, marker: str) -> RecordedRequest | None:
        return next((r for r in self.requests if marker in json.dumps(r.body)), None)

    def release(self) -> None:
        """Let a stalled reply continue with its remaining chunks."""
        self._release.set()

    def wait_for_disconnect(self, timeout: float = 2.0) -> bool:
        return self.client_disconnected.wait(timeout)

    def wait_for_stall(self, timeout: float = 2.0) -> bool:
        return self.stalled.wait(timeout)


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like the real APIs
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        fake = self.server.fake
        recorded = RecordedRequest(
            "POST",
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            started_at=time.monotonic(),
        )
        fake.requests.append(recorded)
        self.recorded = recorded
        # The marker found last in the body: the newest message of the conversation picks it.
        found = max(fake.replies_for, key=raw.rfind, default=None)
        reply = fake.replies_for[found] if found and found in raw else fake.reply
        path = self.path.split("?", 1)[0]
        if path == "/v1/chat/completions":
            flavour = "openai"
        elif path == "/v1/messages":
            flavour = "anthropic"
        else:
            self._send_json(404, {"error": {"message": f"No route {path}", "type": "not_found"}})
            return
        if reply.status is not None:
            self._send_json(reply.status, _error_body(flavour, reply.status, reply.error_message))
            return
        if not (isinstance(body, dict) and body.get("stream")):
            self._send_json(400, _error_body(flavour, 400, "The fake upstream only streams."))
            return
        if flavour == "openai":
            events = _openai_events(reply, body)
            # OpenAI reports mid-stream failures as a data line carrying an `error` object.
            error = _sse(None, _error_body("openai", 500, "The server had an error mid-stream."))
        else:
            events = _anthropic_events(reply, body)
            error = _sse("error", _anthropic_error(529, "Overloaded"))
        try:
            self._stream(fake, reply, events, error)
        except _ClientGone:
            recorded.client_gone = True
            fake.client_disconnected.set()
            self.close_connection = True
        finally:
            recorded.ended_at = time.monotonic()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, fake: FakeUpstream, reply: Reply, events: Iterator[tuple[str, bytes]], error: bytes
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        sent_text, tail_started = 0, False
        for kind, payload in events:
            # Faults fire at a boundary: before each text chunk, and before the closing events.
            if kind == "text" or (kind == "tail" and not tail_started):
                tail_started = kind == "tail"
                if reply.drop_after == sent_text:
                    self._drop()
                    return
                if reply.error_event_after == sent_text:
                    self._write_chunk(error)
                    break  # the real APIs end the stream after an error event
                if reply.malformed_after == sent_text:
                    self._write_chunk(b'event: content_block_delta\ndata: {"choices": [{"del\n\n')
                if reply.stall_after == sent_text and not self._stall(fake):
                    self._drop()  # never released: give up rather than hold a thread forever
                    return
                if kind == "text" and sent_text == 0 and reply.first_delay:
                    self._wait(reply.first_delay, reply.max_wait)
                if reply.pause_after == sent_text and kind == "text" and reply.pause_seconds:
                    self._wait(reply.pause_seconds, reply.max_wait)
                if kind == "text" and reply.delay:
                    self._wait(reply.delay)
            if kind == "text":
                sent_text += 1
                self.recorded.chunks_sent = sent_text
            self._write_chunk(payload)
        self._write_chunk(b"")  # terminating chunk: the body is complete

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _drop(self) -> None:
        # Abort mid-body: no terminating chunk, so the client sees an incomplete message.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stall(self, fake: FakeUpstream) -> bool:
        """Wait for release() (True), the client leaving (_ClientGone) or the bound (False)."""
        fake.stalled.set()
        deadline = time.monotonic() + MAX_STALL_SECONDS
        while not fake._release.is_set():
            if time.monotonic() >= deadline:
                return False
            self._wait(0.05)
        return True

    def _wait(self, seconds: float, bound: float = MAX_STALL_SECONDS) -> None:
        """Sleep, but notice the client closing the socket (it has nothing left to send us)."""
        deadline = time.monotonic() + min(seconds, bound)
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        raise _ClientGone
                except OSError as exc:
                    raise _ClientGone from exc
                time.sleep(min(left, 0.05))  # unexpected bytes (pipelining); don't spin


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeUpstream

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        # Open client sockets, so teardown can end keep-alive handlers blocked on a read.
        self.connections: set[socket.socket] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-stream is what the cancellation tests do on purpose.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()


def _error_body(flavour: str, status: int, message: str) -> dict[str, Any]:
    if flavour == "anthropic":
        return _anthropic_error(status, message)
    kinds = {401: ("invalid_request_error", "invalid_api_key"), 429: ("rate_limit_exceeded", None)}
    kind, code = kinds.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    kind = kinds.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def _openai_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": body.get("model", "fake"),
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(None, data)

    yield "head", chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in reply.pieces():
        yield "text", chunk({"content": piece})
    yield "tail", chunk({}, reply.finish_reason)
    if include_usage:
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        yield "tail", _sse(None, {**base, "choices": [], "usage": usage})
    yield "tail", _sse(None, "[DONE]")


def _anthropic_events(reply: Reply, body: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "cache_creation_input_tokens": reply.cache_creation_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            # The real API reports a small running output count up front; summing it with the
            # final message_delta total would double count.
            "output_tokens": 1,
        },
    }
    yield "head", _sse("message_start", {"type": "message_start", "message": message})
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield "head", _sse("content_block_start", start)
    yield "head", _sse("ping", {"type": "ping"})
    for piece in reply.pieces():
        delta = {"type": "text_delta", "text": piece}
        yield (
            "text",
            _sse(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            ),
        )
    yield "tail", _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": reply.output_tokens},
    }
    yield "tail", _sse("message_delta", message_delta)
    yield "tail", _sse("message_stop", {"type": "message_stop"})


@contextlib.contextmanager
def running_fake_upstream() -> Iterator[FakeUpstream]:
    """Start a server on a free loopback port; stop it (and free stalled handlers) on exit."""
    server = _Server()
    host, port = server.server_address[:2]
    fake = FakeUpstream(host=str(host), port=int(port))
    fake._release.clear()
    server.fake = fake
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake._release.set()
        server.shutdown()
        server.server_close()
        for conn in list(server.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=2)
