"""Many OpenAI SDK clients streaming through the API of one Daphne process.

    .venv/bin/python -m benchmarks.api_streams --streams 50
    .venv/bin/python -m benchmarks.api_streams --streams 50 --no-stream   # non-streaming requests

Starts the app (SQLite, in-memory reply stream, the demo model at --tokens-per-second) on
loopback, creates one user with one API key per stream (`manage.py create_api_key`), and runs
`--streams` concurrent `chat.completions.create` calls with the official `openai` SDK
(AsyncOpenAI). Reports the time from request to first text (streaming) or to the whole answer,
whether every reply arrived exactly (the demo reply is known in advance), and the server's CPU time
and peak memory, read from /proc. Then times `GET /v1/models` one after another: the cost of a
request that only authenticates its key.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

from benchmarks.stream_fanout import _proc_stats, _server_pid
from chat.providers.demo import demo_reply
from tests.support.servers import REPO, app_env, daphne, migrate


def _create_keys(env: dict[str, str], count: int) -> list[str]:
    script = (
        "from django.contrib.auth.models import User\n"
        "from chat.api.keys import api_key_create\n"
        f"users = [User.objects.create_user(f'bench{{i}}') for i in range({count})]\n"
        "for user in users: print(api_key_create(user=user, name='bench')[1])\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "manage.py", "shell", "-v0", "-c", script],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.split() if line.startswith("csk-")]


async def _one(
    base_url: str, key: str, prompt: str, stream: bool, delay: float
) -> dict[str, float | bool]:
    # The client is made before the clock starts: building one costs the load generator
    # (not the server) tens of milliseconds of CPU.
    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    await asyncio.sleep(delay)
    started = time.perf_counter()
    first: float | None = None
    text = ""
    usage_seen = False
    try:
        if stream:
            chunks = await client.chat.completions.create(
                model="demo:demo",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    if first is None:
                        first = time.perf_counter() - started
                    text += chunk.choices[0].delta.content
                usage_seen = usage_seen or chunk.usage is not None
        else:
            completion = await client.chat.completions.create(
                model="demo:demo", messages=[{"role": "user", "content": prompt}]
            )
            text = completion.choices[0].message.content or ""
            usage_seen = completion.usage is not None
    finally:
        await client.close()
    total = time.perf_counter() - started
    return {
        "first": first if first is not None else total,
        "total": total,
        "exact": text == demo_reply(prompt) and usage_seen,
    }


def _sample(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _proc_stats(pid)[1])
        time.sleep(0.05)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _models_latency(base_url: str, key: str, count: int) -> list[float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await client.models.list()
            times.append(time.perf_counter() - started)
    finally:
        await client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument("--no-stream", action="store_true", help="non-streaming requests")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the starts over N s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chatsite-bench-api-") as tmp:
        env = app_env(
            Path(tmp),
            CHAT_DEMO_TOKENS_PER_SECOND=str(args.tokens_per_second),
            CHAT_API_KEY_RATE_LIMIT="",
        )
        migrate(env)
        keys = _create_keys(env, args.streams)
        with daphne(env, Path(tmp) / "daphne.log") as url:
            pid = _server_pid(int(url.rsplit(":", 1)[1]))
            cpu_before, rss_before = _proc_stats(pid)
            stop, peak = threading.Event(), [rss_before]
            sampler = threading.Thread(target=_sample, args=(pid, stop, peak), daemon=True)
            sampler.start()
            started = time.perf_counter()

            async def run() -> list[dict[str, float | bool]]:
                return await asyncio.gather(
                    *(
                        _one(
                            f"{url}/v1",
                            key,
                            f"Question {i} about queues",
                            not args.no_stream,
                            args.ramp * i / len(keys),
                        )
                        for i, key in enumerate(keys)
                    )
                )

            client_cpu_before = _own_cpu()
            results = asyncio.run(run())
            wall = time.perf_counter() - started
            client_cpu = _own_cpu() - client_cpu_before
            stop.set()
            cpu_after, _ = _proc_stats(pid)
            models = asyncio.run(_models_latency(f"{url}/v1", keys[0], 200))

    firsts = [float(r["first"]) for r in results]
    totals = [float(r["total"]) for r in results]
    exact = sum(bool(r["exact"]) for r in results)
    kind = "non-streaming" if args.no_stream else "streaming"
    spread = f" over {args.ramp:g} s" if args.ramp else ", all at once"
    print(
        f"{args.streams} {kind} API requests{spread}, demo at {args.tokens_per_second:g} tokens/s"
    )
    label = "answer" if args.no_stream else "first text"
    print(
        f"  request → {label}: p50 {statistics.median(firsts) * 1000:.0f} ms, "
        f"p95 {_percentile(firsts, 0.95) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms"
    )
    print(f"  whole reply: p50 {statistics.median(totals):.2f} s, max {max(totals):.2f} s")
    print(f"  exact replies (text and usage): {exact}/{len(results)}")
    print(f"  server CPU {cpu_after - cpu_before:.2f} s over {wall:.1f} s wall")
    print(f"  load generator (the SDK clients) CPU {client_cpu:.2f} s")
    print(f"  server RSS {rss_before / 2**20:.0f} MiB before, peak {peak[0] / 2**20:.0f} MiB")
    p50, p95 = statistics.median(models) * 1000, _percentile(models, 0.95) * 1000
    print(
        f"  GET /v1/models (key lookup + JSON), one at a time: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    )


if __name__ == "__main__":
    main()
