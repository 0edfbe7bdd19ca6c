"""The baseline: a bare ASGI relay, no framework. httpx2 (the client the SDKs use) from the
upstream, one frame per token, over WebSocket (`/ws`, send {"message": ...}) and SSE
(`GET /events?message=...`). Served by Daphne, as chatsite is, so both pay the same server."""

from __future__ import annotations

import html
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx2

UPSTREAM = os.environ.get("RELAY_UPSTREAM", "http://127.0.0.1:9100") + "/v1/chat/completions"
client = httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=None))


async def tokens(prompt: str) -> AsyncIterator[str]:
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with client.stream("POST", UPSTREAM, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    if text := choice["delta"].get("content"):
                        yield text


END = '<article data-status="complete">end</article>'


def span(seq: int, text: str) -> str:
    return f'<span data-seq="{seq}">{html.escape(text)}</span>'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (event := await receive())["type"] == "websocket.receive":
            seq = 0
            async for text in tokens(json.loads(event["text"])["message"]):
                seq += 1
                await send({"type": "websocket.send", "text": span(seq, text)})
            await send({"type": "websocket.send", "text": END})
    elif scope["type"] == "http":
        prompt = parse_qs(scope["query_string"].decode()).get("message", [""])[0]
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        seq = 0
        async for text in tokens(prompt):
            seq += 1
            event = f"id: {seq}\ndata: {span(seq, text)}\n\n"
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": f"data: {END}\n\n".encode()})
