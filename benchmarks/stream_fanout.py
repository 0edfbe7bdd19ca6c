"""Many conversations streaming at once through one Daphne process.

    .venv/bin/python -m benchmarks.stream_fanout --streams 50 --transport ws
    .venv/bin/python -m benchmarks.stream_fanout --streams 50 --transport sse --ramp 5

Starts the app (SQLite, in-memory reply stream, the demo model) on loopback and opens one visitor
per stream. Over `ws`, each sends its message and reads the reply on a WebSocket, as the page
does; over `sse`, it sends with an HTTP POST and reads the reply as Server-Sent Events. Reports
the time from send to first text, whether every reply arrived exactly (nothing lost or doubled),
and the server's CPU time and peak memory, read from /proc.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import re
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from html import unescape
from pathlib import Path

from tests.support.servers import app_env, daphne, migrate

SPAN = re.compile(r'<span data-seq="\d+">(.*?)</span>', re.S)


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds, current RSS bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return ticks / 100, rss_kb * 1024


def _server_pid(port: int) -> int:
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in b" ".join(cmdline) and str(port).encode() in cmdline:
            return int(status.parent.name)
    raise RuntimeError("server process not found")


def _result(
    sent: float, posted: float, first: float | None, text: str, events: int
) -> dict[str, float | str]:
    return {
        "first": first or 0.0,
        "posted": posted,
        "total": time.perf_counter() - sent,
        "text": text,
        "events": events,
    }


def one_stream(base: str, prompt: str, results: list[dict[str, float | str]]) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/streaming-demo", timeout=30).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    sent = time.perf_counter()
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        f"{base}/streaming-demo/messages",
        data=urllib.parse.urlencode(
            {"action": "send", "message": prompt, "model": "demo:demo"}
        ).encode(),
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    html = opener.open(request, timeout=30).read().decode()
    posted = time.perf_counter() - sent
    message_id = re.search(r'data-status="streaming" data-message-id="(\d+)"', html).group(1)
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request(
        "GET",
        f"/streaming-demo/replies/{message_id}/events",
        headers={"Cookie": "; ".join(f"{c.name}={c.value}" for c in jar)},
    )
    response = connection.getresponse()
    text, first, events, data = "", None, 0, []
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue
        if line or not data:
            continue
        # A blank line ends the event; its data lines join with newlines.
        event, data = "\n".join(data), []
        events += 1
        if "<article" in event:
            break
        pieces = SPAN.findall(event)
        if pieces and first is None:
            first = time.perf_counter() - sent
        text += "".join(unescape(p) for p in pieces)
    connection.close()
    results.append(_result(sent, posted, first, text, events))


def one_socket(base: str, prompt: str, results: list[dict[str, float | str]]) -> None:
    import asyncio
    import json

    import websockets

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/streaming-demo", timeout=30).read()
    cookies = "; ".join(f"{c.name}={c.value}" for c in jar)

    async def talk() -> None:
        async with websockets.connect(
            base.replace("http://", "ws://") + "/ws/chat/",
            origin=base,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookies},
            max_size=None,
        ) as socket:
            sent = time.perf_counter()
            await socket.send(
                json.dumps({"action": "send", "message": prompt, "model": "demo:demo"})
            )
            started = str(await socket.recv())
            posted = time.perf_counter() - sent
            message_id = re.search(r'data-message-id="(\d+)"', started.split('"assistant"')[1])
            if message_id is None:
                raise RuntimeError(f"no reply id in {started[:200]}")
            await socket.send(
                json.dumps({"action": "watch", "message_id": message_id.group(1), "after": 0})
            )
            text, first, events = "", None, 0
            while True:
                frame = str(await socket.recv())
                events += 1
                if "<article" in frame:
                    break
                if first is None:
                    first = time.perf_counter() - sent
                text += "".join(unescape(p) for p in SPAN.findall(frame))
            results.append(_result(sent, posted, first, text, events))

    asyncio.run(talk())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="spread the sends over this many seconds"
    )
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    args = parser.parse_args()

    from chat.providers.demo import demo_reply

    with tempfile.TemporaryDirectory() as data:
        env = app_env(
            Path(data), CHAT_DEMO_TOKENS_PER_SECOND=str(args.tokens_per_second), LOG_LEVEL="WARNING"
        )
        migrate(env)
        with daphne(env, Path(data) / "server.log") as base:
            pid = _server_pid(int(base.rsplit(":", 1)[1]))
            stream = one_socket if args.transport == "ws" else one_stream
            stream(base, "warm up", [])  # first-request imports are not what we measure
            cpu_before, rss_before = _proc_stats(pid)
            peak_rss = rss_before
            results: list[dict[str, float | str]] = []
            prompts = [f"Benchmark question number {i}" for i in range(args.streams)]
            threads = [
                threading.Thread(target=stream, args=(base, prompt, results)) for prompt in prompts
            ]
            started = time.perf_counter()
            for index, thread in enumerate(threads):
                if args.ramp:
                    time.sleep(
                        max(0.0, started + index * args.ramp / args.streams - time.perf_counter())
                    )
                thread.start()
            while any(thread.is_alive() for thread in threads):
                peak_rss = max(peak_rss, _proc_stats(pid)[1])
                time.sleep(0.05)
            wall = time.perf_counter() - started
            cpu_after, _ = _proc_stats(pid)

    expected = {demo_reply(p) for p in prompts}
    exact = sum(1 for r in results if r["text"] in expected)
    firsts = sorted(float(r["first"]) for r in results)
    tokens = sum(len(str(r["text"])) for r in results) / 4
    arrival = f"sent over {args.ramp:g} s" if args.ramp else "all sent at once"
    print(
        f"streams: {args.streams} over {args.transport}, {args.tokens_per_second:g} tokens/s "
        f"each, {arrival}"
    )
    print(f"replies received exactly (no token lost or doubled): {exact}/{len(results)}")
    print(
        f"send -> first text: p50 {statistics.median(firsts) * 1000:.0f} ms, "
        f"p95 {firsts[int(len(firsts) * 0.95) - 1] * 1000:.0f} ms"
    )
    posts = sorted(float(r["posted"]) for r in results)
    print(
        f"send -> started answered: p50 {statistics.median(posts) * 1000:.0f} ms, "
        f"p95 {posts[int(len(posts) * 0.95) - 1] * 1000:.0f} ms"
    )
    print(f"fragments per reply (coalesced): {statistics.mean(r['events'] for r in results):.0f}")
    print(f"wall time: {wall:.1f} s")
    print(
        f"server CPU: {cpu_after - cpu_before:.1f} s "
        f"({(cpu_after - cpu_before) / max(tokens, 1) * 1e6:.0f} µs per ~token)"
    )
    print(
        f"server RSS: {rss_before / 2**20:.0f} MiB idle, peak {peak_rss / 2**20:.0f} MiB "
        f"(+{(peak_rss - rss_before) / 2**20 / args.streams * 1024:.0f} KiB per stream)"
    )


if __name__ == "__main__":
    main()
