"""A fake OpenAI-compatible upstream that stamps every token with the time it was sent.

    python -m benchmarks.relay.upstream --port 9100 --tokens 100 --rate 20

`POST /v1/chat/completions` streams `--tokens` chunks at `--rate` per second in OpenAI's wire
format (a role chunk, content chunks, a finish chunk, a usage chunk with no choices, then
`data: [DONE]`), chunked, over keep-alive connections. Each token's text is `t<index>@<ns> `,
where `<ns>` is `time.monotonic_ns()` just before the chunk is written: CLOCK_MONOTONIC is one
clock for every process of the machine, so the load client subtracts it from its own receive
time to get the latency the server under test added.

It is a bare asyncio protocol with one timer per token (absolute times, so no drift), so a few
hundred concurrent streams cost it little of the load client's core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

CHUNK_HEAD = {
    "id": "chatcmpl-bench",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4.1-mini-2025-04-14",
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
}


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    # Shaped like the real API's chunks (it sends "usage": null on every chunk when usage is
    # asked for), so the SDK parses as much per chunk as it does against OpenAI.
    body = json.dumps({**CHUNK_HEAD, "choices": choices, "usage": usage}, separators=(",", ":"))
    return _frame(f"data: {body}\n\n".encode())


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _content(text: str) -> dict[str, Any]:
    return {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}


RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Cache-Control: no-cache\r\n"
    b"\r\n"
)


class Upstream(asyncio.Protocol):
    def __init__(self, tokens: int, rate: float) -> None:
        self.tokens = tokens
        self.interval = 1 / rate
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.streaming:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length :]
            if not head.startswith("POST /v1/chat/completions"):
                if self.transport is None:
                    raise RuntimeError("not connected")
                self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                continue
            self.start_stream()

    def start_stream(self) -> None:
        if self.transport is None:
            raise RuntimeError("not connected")
        self.streaming = True
        loop = asyncio.get_running_loop()
        self.transport.write(
            RESPONSE_HEAD
            + _chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        )
        start = loop.time()
        for index in range(self.tokens):
            loop.call_at(start + index * self.interval, self.send_token, index)
        loop.call_at(start + self.tokens * self.interval, self.finish)

    def send_token(self, index: int) -> None:
        if self.transport is not None:
            self.transport.write(_chunk([_content(f"t{index:03d}@{time.monotonic_ns()} ")]))

    def finish(self) -> None:
        if self.transport is None:
            return
        usage = {
            "prompt_tokens": 20,
            "completion_tokens": self.tokens,
            "total_tokens": 20 + self.tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        self.transport.write(
            _chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
            + _chunk([], usage)
            + _frame(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )
        self.streaming = False
        if self.buffer:
            self.data_received(b"")


async def serve(port: int, tokens: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(tokens, rate), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.tokens, args.rate))


if __name__ == "__main__":
    main()
