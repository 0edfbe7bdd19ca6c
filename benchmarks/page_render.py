"""The page keeps up: a long reply streamed into headless Chromium, and what it costs the page.

    .venv/bin/python -m benchmarks.page_render                     # 2,000 tokens at 100 tok/s
    .venv/bin/python -m benchmarks.page_render --renderer full     # the old whole-reply re-render
    .venv/bin/python -m benchmarks.page_render --tokens 2000 --rate 100 --json var/page.json

The app answers from the fake upstream (tests/support/fake_upstream.py), which streams a Markdown
reply (paragraphs, lists, code blocks, tables, math) of `--tokens` chunks at `--rate` chunks a
second.
Every second the benchmark reads the page's main-thread script time from the DevTools protocol
(Performance.getMetrics, ScriptDuration) and counts the live renders the page did
(chat.js fires `chat:rendered` after each), so it reports script milliseconds per rendered frame
as the reply grows. For every WebSocket frame it also measures the lag from the frame's arrival
to the render that put its text on screen. `--renderer full` swaps in the renderer the page had
before (the whole reply parsed, sanitised and rebuilt on every frame), for comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from tests.support.fake_upstream import running_fake_upstream
from tests.support.servers import app_env, daphne, migrate

# Records each frame's arrival (with the last sequence number it carries) and each live render.
_PROBE = """
(() => {
  window.__frames = [];
  window.__renders = [];
  const Real = window.WebSocket;
  window.WebSocket = new Proxy(Real, {
    construct(target, args) {
      const socket = new target(...args);
      socket.addEventListener("message", (event) => {
        const seqs = String(event.data).match(/data-seq="(\\d+)"/g);
        if (!seqs) return;
        const seq = Number(seqs[seqs.length - 1].slice(10, -1));
        window.__frames.push([performance.now(), seq]);
      });
      return socket;
    },
  });
  document.addEventListener("chat:rendered", (event) => {
    window.__renders.push([performance.now(), Number(event.detail.seq)]);
  });
})();
"""

# The renderer before incremental rendering: the whole text, every frame.
_FULL_RENDERER = """
(() => {
  let value;
  Object.defineProperty(window, "chatsiteMarkdown", {
    configurable: true,
    get() { return value; },
    set(v) {
      v.LiveMarkdown = class {
        constructor(host) { this.host = host; this.length = -1; }
        update(text) {
          if (text.length === this.length) return false;
          this.length = text.length;
          this.host.replaceChildren(v.render(text));
          return true;
        }
      };
      value = v;
    },
  });
})();
"""


def reply_text(tokens: int) -> tuple[str, int]:
    """A Markdown reply of about `tokens` word-sized chunks, and the chunk count to send it in."""
    sections = []
    n = 0
    while sum(len(s.split()) for s in sections) < tokens:
        n += 1
        sections.append(
            f"## Part {n}\n\n"
            f"This part explains step {n} with **bold words**, `inline code` and a "
            f"[link](https://example.com/{n}). It goes on for a while, as replies do, so that "
            "the paragraph wraps over a few lines on a desktop screen.\n\n"
            f"- first point of part {n}\n- second point, with ~~a correction~~\n"
            "- [x] a done task\n\n"
            f"| step | value |\n|---|---:|\n| {n} | {n * 7} |\n| {n + 1} | {n * 9} |\n\n"
            f"The cost grows as $O(n^{2})$ when everything is redone.\n\n"
            f"```python\ndef part_{n}(x: int) -> int:\n    return x * {n}\n```\n"
        )
    text = "\n".join(sections)
    return text, tokens


def run(tokens: int, rate: float, renderer: str) -> dict[str, Any]:
    text, chunks = reply_text(tokens)
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-page-bench-"))
    try:
        with running_fake_upstream() as upstream:
            upstream.script(text=text, chunks=chunks, delay=1 / rate, output_tokens=chunks)
            env = app_env(
                data_dir,
                OPENAI_API_KEY="sk-bench",
                OPENAI_BASE_URL=upstream.openai_base_url,
                OPENAI_MODELS="gpt-4.1-mini",
                CHAT_DEFAULT_MODEL="openai:gpt-4.1-mini",
            )
            migrate(env)
            with daphne(env, data_dir / "server.log") as url, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = browser.new_context(
                    base_url=url, viewport={"width": 1280, "height": 860}
                ).new_page()
                page.add_init_script(_PROBE)
                if renderer == "full":
                    page.add_init_script(_FULL_RENDERER)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto("/streaming-demo")
                page.get_by_text("Connected · WebSocket").wait_for()
                page.fill("#message-input", "A long answer, please")
                page.press("#message-input", "Enter")
                page.wait_for_selector("#messages article[data-status='streaming']")
                samples = _sample(page, cdp)
                frames = page.evaluate("window.__frames")
                renders = page.evaluate("window.__renders")
                final_chars = page.evaluate(
                    "document.querySelector('#messages article[data-role=assistant] .markdown')"
                    "?.textContent.length || 0"
                )
                browser.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return _report(text, chunks, rate, renderer, samples, frames, renders, final_chars)


def _sample(page: Any, cdp: Any) -> list[dict[str, float]]:
    """Once a second until the reply ends: script time, renders so far, text length."""
    samples = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        state = page.evaluate(
            """() => {
              const reply = document.querySelector("#messages article[data-role=assistant]");
              const raw = reply && reply.querySelector(".msg-text.streaming");
              return { streaming: reply?.dataset.status === "streaming",
                       chars: raw ? raw.textContent.length : -1,
                       renders: window.__renders.length, now: performance.now() };
            }"""
        )
        samples.append(
            {
                "t": time.monotonic(),
                "script_s": metrics.get("ScriptDuration", 0.0),
                "task_s": metrics.get("TaskDuration", 0.0),
                "layout_s": metrics.get("LayoutDuration", 0.0),
                "renders": state["renders"],
                "chars": state["chars"],
                "streaming": state["streaming"],
            }
        )
        if not state["streaming"]:
            break
        time.sleep(1.0)
    return samples


def _report(
    text: str,
    chunks: int,
    rate: float,
    renderer: str,
    samples: list[dict[str, float]],
    frames: list[list[float]],
    renders: list[list[float]],
    final_chars: int,
) -> dict[str, Any]:
    seconds = []
    for before, after in zip(samples, samples[1:], strict=False):
        if not after["streaming"]:
            break
        rendered = after["renders"] - before["renders"]
        script_ms = (after["script_s"] - before["script_s"]) * 1000
        wall = after["t"] - before["t"]
        seconds.append(
            {
                "chars": int(after["chars"]),
                "script_ms_per_s": round(script_ms / wall, 1),
                "task_ms_per_s": round((after["task_s"] - before["task_s"]) * 1000 / wall, 1),
                "renders_per_s": round(rendered / wall, 1),
                "script_ms_per_render": round(script_ms / rendered, 2) if rendered else None,
            }
        )
    # Lag: from a frame's arrival to the first render showing its sequence number.
    lags = []
    r = 0
    for arrived, seq in frames:
        while r < len(renders) and (renders[r][1] < seq or renders[r][0] < arrived):
            r += 1
        if r < len(renders):
            lags.append(renders[r][0] - arrived)
    lags.sort()
    # The end of the reply: its last three whole seconds of streaming (not the second in which
    # the finished reply replaces the live preview).
    streaming_seconds = [s for s in seconds if s["chars"] < len(text)]
    tail = streaming_seconds[-3:]
    tail_lags = lags[-max(1, len(lags) // 10) :]

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else 0.0

    return {
        "renderer": renderer,
        "tokens": chunks,
        "rate": rate,
        "chars": len(text),
        "final_chars_rendered": final_chars,
        "seconds": seconds,
        "frames": len(frames),
        "renders": len(renders),
        "lag_ms": {"p50": pct(lags, 0.5), "p95": pct(lags, 0.95), "max": pct(lags, 1.0)},
        "end_of_reply": {
            "script_ms_per_render": round(
                statistics.fmean(s["script_ms_per_render"] or 0 for s in tail), 2
            )
            if tail
            else None,
            "script_ms_per_s": round(statistics.fmean(s["script_ms_per_s"] for s in tail), 1)
            if tail
            else None,
            "lag_p50_ms": pct(sorted(tail_lags), 0.5),
            "lag_max_ms": pct(sorted(tail_lags), 1.0),
        },
    }


def _table(result: dict[str, Any]) -> str:
    rows = [
        "| second | chars on page | script ms/s | renders/s | script ms per render |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i, s in enumerate(result["seconds"], start=1):
        if i % 2 and i != len(result["seconds"]):
            continue  # every other second keeps the table short
        rows.append(
            f"| {i} | {s['chars']:,} | {s['script_ms_per_s']} | {s['renders_per_s']} "
            f"| {s['script_ms_per_render']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="tokens per second")
    parser.add_argument("--renderer", choices=["incremental", "full"], default="incremental")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    result = run(args.tokens, args.rate, args.renderer)
    print(_table(result))
    end = result["end_of_reply"]
    print(
        f"\n{result['renderer']}: {result['tokens']} tokens ({result['chars']:,} chars) at "
        f"{result['rate']:g} tok/s; {result['frames']} frames, {result['renders']} renders; "
        f"lag frame→screen p50 {result['lag_ms']['p50']} ms, p95 {result['lag_ms']['p95']} ms, "
        f"max {result['lag_ms']['max']} ms; last 3 s: {end['script_ms_per_render']} ms script "
        f"per render, {end['script_ms_per_s']} ms/s, lag p50 {end['lag_p50_ms']} ms"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
