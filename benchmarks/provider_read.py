"""What reading a provider's stream costs per token, client by client, in one process.

    .venv/bin/python -m benchmarks.provider_read [--streams 100] [--event-loop uvloop|asyncio]

Starts the relay benchmark's fake OpenAI-compatible upstream (benchmarks/relay/upstream.py: 100
tokens per reply at 20 tokens/s, each its own TCP segment, as a real model's are) on the other
core, then reads `--streams` replies at once, all started together, with each way of reading,
and reports the process's CPU per token:

- `httpx2`: httpx2 alone, lines decoded by the client (what the baseline relay does);
- `sdk-httpx2`: the OpenAI SDK's raw streaming response over its default transport (httpx2);
- `sdk-aiohttp`: the same over the SDK's aiohttp transport (`DefaultAioHttpClient`): what
  `chat/providers/openai.py` does. (Parsing the events from the body's bytes instead of the
  client's decoded lines was measured too: no difference beyond the noise.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.relay import servers

BODY = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


def _count(choices: list[dict[str, Any]]) -> int:
    return sum(1 for choice in choices if choice["delta"].get("content"))


async def _httpx2(client: Any, url: str) -> int:
    tokens = 0
    async with client.stream("POST", f"{url}/chat/completions", json=BODY) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                tokens += _count(json.loads(line[6:])["choices"])
    return tokens


def _sdk_request(client: Any) -> Any:
    return client.chat.completions.with_streaming_response.create(
        model="bench",
        messages=BODY["messages"],
        stream=True,
        stream_options={"include_usage": True},
    )


async def _sdk_lines(client: Any, url: str) -> int:
    tokens = 0
    async with _sdk_request(client) as response:
        async for line in response.iter_lines():
            if line.startswith("data: {"):
                tokens += _count(json.loads(line[6:])["choices"])
    return tokens


def _clients(url: str) -> dict[str, tuple[Callable[[], Any], Callable[[Any, str], Awaitable[int]]]]:
    import httpx2
    import openai

    return {
        "httpx2": (
            lambda: httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=None)),
            _httpx2,
        ),
        "sdk-httpx2": (lambda: openai.AsyncOpenAI(api_key="k", base_url=url), _sdk_lines),
        "sdk-aiohttp": (
            lambda: openai.AsyncOpenAI(
                api_key="k", base_url=url, http_client=openai.DefaultAioHttpClient()
            ),
            _sdk_lines,
        ),
    }


async def _measure(name: str, url: str, streams: int) -> float:
    build, read = _clients(url)[name]
    client = build()
    try:
        await read(client, url)  # warm: imports, the first connection
        started = time.process_time()
        counts = await asyncio.gather(*(read(client, url) for _ in range(streams)))
        spent = time.process_time() - started
    finally:
        close = getattr(client, "aclose", None) or client.close
        await close()
    return spent / sum(counts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chatsite.serving.server import event_loop_install

    event_loop_install(args.event_loop)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {servers.SERVER_CORE})
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-provider-read-"))
    with servers.upstream(workdir, tokens=100, rate=20) as (port, _pid):
        url = f"http://127.0.0.1:{port}/v1"
        print(f"\nCPU per token, {args.streams} replies at once, {args.event_loop}:\n")
        print("| reading | CPU per token |\n|---|---|")
        for name in _clients(url):
            print(f"| {name} | {asyncio.run(_measure(name, url, args.streams)):.0f} µs |")


if __name__ == "__main__":
    main()
