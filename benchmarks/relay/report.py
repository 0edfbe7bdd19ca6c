"""Tables from the benchmark's results: a line per run as it goes, markdown at the end, and the
same markdown written into docs/performance.md between markers (so a re-run replaces it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from benchmarks.relay import profile

DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE"}


def load_averages() -> list[str]:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return Path("/proc/loadavg").read_text().split()[:3]


def run_record(module: str, started: float) -> dict[str, Any]:
    """What a benchmark's JSON says of its run: the command, when, the machine, how long (from
    `started`, a time.monotonic())."""
    return {
        "command": " ".join([f"python -m {module}", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": load_averages(),
        },
        "duration_s": round(time.monotonic() - started, 1),
    }


def run_and_report(
    run: Coroutine[Any, Any, dict[str, Any]],
    args: argparse.Namespace,
    markdown: Callable[[dict[str, Any]], str],
    write_docs: Callable[[dict[str, Any]], None],
) -> None:
    """Run a benchmark, keep its JSON (`args.json`), print its tables, and with
    `args.write_docs` put them in docs/performance.md."""
    # A SIGTERM must still stop the servers it started (the context managers' exits).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    output = asyncio.run(run)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=1))
    print(f"\n{markdown(output)}\nJSON: {args.json}")
    if args.write_docs:
        write_docs(output)
        print("docs/performance.md updated")


def line(r: dict[str, Any]) -> str:
    return (
        f"  {r['streams']:>4} streams: added p50 {number(r['added_ms']['p50'])} / p99 "
        f"{number(r['added_ms']['p99'])} / max {number(r['added_ms']['max'])} ms, first token p50 "
        f"{number(r['first_token_ms']['p50'])} ms (send answered "
        f"{number((r.get('send_answered_ms') or {}).get('p50'))} ms), "
        f"lost {r['lost']}, doubled {r['doubled']}, "
        f"frames/token {r['frames_per_token']}, CPU {r['server_cpu_ms_per_1000_tokens']} ms/1k "
        f"tokens ({_pct(r['server_cpu_busy'])} busy, "
        f"{_pct(r.get('server_waiting_for_cpu'))} loop waiting for the CPU), "
        f"client core {_pct(r['client_core_busy'])}, "
        + (f"CPU ms/reply: {_kinds(r)}, " if _kinds(r) else "")
        + f"load {r['load_average_1m']}"
        + ("" if r["passes"] else "  ✗")
        + _errors(r)
    )


SHORT_KINDS = {
    "event loop": "loop",
    "writer": "writer",
    "reply database threads": "db",
    "request and socket threads": "request",
    "other": "other",
}


def _kinds(r: dict[str, Any]) -> str:
    by_kind = r.get("server_cpu_ms_per_reply_by_thread") or {}
    return " · ".join(f"{SHORT_KINDS.get(k, k)} {number(v)}" for k, v in by_kind.items() if v)


def _errors(r: dict[str, Any]) -> str:
    return f"\n    errors: {r['errors']}" if r["errors"] else ""


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if digits == 0 and abs(value) < 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return ""
    return f" ({ours / theirs:.1f}×)"


def _pick(r: dict[str, Any], path: str) -> Any:
    value: Any = r
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


ROWS: list[tuple[str, str, str]] = [
    # (label, field, unit)
    ("added per token, p50", "added_ms.p50", "ms"),
    ("added per token, p99", "added_ms.p99", "ms"),
    ("added per token, max", "added_ms.max", "ms"),
    ("first token after send, p50", "first_token_ms.p50", "ms"),
    ("first token after send, p99", "first_token_ms.p99", "ms"),
    ("send answered (started fragment), p50", "send_answered_ms.p50", "ms"),
    ("frames per token", "frames_per_token", ""),
    ("server CPU per 1,000 tokens", "server_cpu_ms_per_1000_tokens", "ms"),
    ("server CPU per reply by thread (ms)", "server_cpu_ms_per_reply_by_thread", "kinds"),
    ("server core busy", "server_cpu_busy", "%"),
    ("event loop runnable but waiting for the CPU", "server_waiting_for_cpu", "%"),
]


def _cell(ours: dict[str, Any] | None, theirs: dict[str, Any] | None, field: str, unit: str) -> str:
    def fmt(r: dict[str, Any] | None) -> str:
        if r is None:
            return "—"
        value = _pick(r, field)
        if unit == "kinds":
            return _kinds(r) or "—"
        if unit == "%":
            return _pct(value)
        if field == "frames_per_token":
            return "—" if value is None else f"{value:.2f}"
        return number(value)

    plain = unit in ("%", "kinds")
    if theirs is None:
        return fmt(ours) + (f" {unit}" if unit and not plain and ours else "")
    ratio = "" if plain else _ratio(_pick(ours or {}, field), _pick(theirs, field))
    suffix = f" {unit}" if unit and not plain else ""
    return f"{fmt(ours)} vs {fmt(theirs)}{suffix}{ratio}"


def _capacity(results: list[dict[str, Any]]) -> int | None:
    """The largest K that passed, with every smaller K tried also passing."""
    best = None
    for r in sorted(results, key=lambda r: r["streams"]):
        if not r["passes"]:
            break
        best = r["streams"]
    return best


def _table(
    title: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]], columns: list[int]
) -> str:
    by_k = {r["streams"]: r for r in ours}
    base_k = {r["streams"]: r for r in theirs}
    versus = " vs baseline" if theirs else ""
    head = f"| {title}{versus} | " + " | ".join(
        f"{k} stream{'s' if k != 1 else ''}" for k in columns
    )
    lines = [head + " |", "|---" * (len(columns) + 1) + "|"]
    for label, field, unit in ROWS:
        cells = [_cell(by_k.get(k), base_k.get(k), field, unit) for k in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lost = []
    for k in columns:
        mine = by_k.get(k)
        other = base_k.get(k)
        text = "—" if mine is None else f"{mine['lost']} / {mine['doubled']}"
        if other is not None:
            text += f" vs {other['lost']} / {other['doubled']}"
        lost.append(text)
    lines.append("| tokens lost / doubled | " + " | ".join(lost) + " |")
    if any(r.get("db_transactions_per_reply") is not None for r in ours):
        lines.append(
            "| DB write statements / transactions per reply | "
            + " | ".join(
                "—"
                if k not in by_k
                else f"{by_k[k]['db_write_statements_per_reply']} / "
                f"{by_k[k]['db_transactions_per_reply']}"
                for k in columns
            )
            + " |"
        )
        lines.append(
            "| DB transactions per second | "
            + " | ".join(
                "—" if k not in by_k else number(by_k[k]["db_transactions_per_second"])
                for k in columns
            )
            + " |"
        )
    lines.append(
        "| load average (1 min) at start | "
        + " | ".join(
            "—"
            if k not in by_k
            else f"{by_k[k]['load_average_1m']}"
            + (f" / {base_k[k]['load_average_1m']}" if k in base_k else "")
            for k in columns
        )
        + " |"
    )
    return "\n".join(lines)


def markdown(output: dict[str, Any]) -> str:
    results = output["results"]
    servers = list(dict.fromkeys(r["server"] for r in results))
    baseline = "baseline"
    ours_names = [s for s in servers if s != baseline] or [baseline]
    parts = []
    for name in ours_names:
        for transport in ("ws", "sse"):
            ours = [r for r in results if r["server"] == name and r["transport"] == transport]
            if not ours:
                continue
            theirs = [
                r
                for r in results
                if r["server"] == baseline and r["transport"] == transport and name != baseline
            ]
            columns = sorted({r["streams"] for r in ours} & {1, 50, 100, 200}) or sorted(
                {r["streams"] for r in ours}
            )
            parts.append(_table(f"{name}, {TRANSPORT_NAMES[transport]}", ours, theirs, columns))
    parts.append(_summary(results, ours_names, baseline))
    for r in results:
        if r.get("profile"):
            shares = (
                "only the thread holding the GIL sampled: share of all samples, i.e. of the "
                "process's CPU"
                if r.get("profile_gil")
                else "share of the event loop's samples; for a pool of threads, how many threads "
                "were inside the frame on average"
            )
            parts.append(
                f"py-spy profile of {r['server']} during the {r['streams']}-stream "
                f"{TRANSPORT_NAMES[r['transport']]} run ({shares}):\n\n"
                + profile.markdown(r["profile"], top=10)
            )
    return "\n\n".join(parts)


def _summary(results: list[dict[str, Any]], ours_names: list[str], baseline: str) -> str:
    lines = [
        "| capacity and memory | "
        + " | ".join(f"{name} {TRANSPORT_NAMES[t]}" for name in ours_names for t in ("ws", "sse"))
        + " |",
        "|---" * (1 + 2 * len(ours_names)) + "|",
    ]

    def group(name: str, transport: str) -> list[dict[str, Any]]:
        return [r for r in results if r["server"] == name and r["transport"] == transport]

    def memory(rs: list[dict[str, Any]], field: str) -> float | None:
        runs = [r for r in rs if r["streams"] == 100] or rs[-1:]
        return runs[0][field] if runs else None

    cap_cells, idle_cells, active_cells = [], [], []
    for name in ours_names:
        for transport in ("ws", "sse"):
            ours = group(name, transport)
            theirs = group(baseline, transport) if name != baseline else []
            if not ours:
                cap_cells.append("—")
                idle_cells.append("—")
                active_cells.append("—")
                continue
            cap, base_cap = _capacity(ours), _capacity(theirs) if theirs else None
            tried = max(r["streams"] for r in ours)
            text = str(cap) if cap is not None else "< 1"
            if cap == tried:
                text = f"≥ {text}"
            if theirs:
                base_tried = max(r["streams"] for r in theirs)
                base_text = str(base_cap) if base_cap is not None else "< 1"
                if base_cap == base_tried:
                    base_text = f"≥ {base_text}"
                text += f" vs {base_text}"
                if cap and base_cap:
                    text += f" ({cap / base_cap:.2f}×)"
            cap_cells.append(text)
            for cells, field in (
                (idle_cells, "rss_kib_per_idle_socket"),
                (active_cells, "rss_kib_per_active_stream"),
            ):
                mine = memory(ours, field)
                other = memory(theirs, field) if theirs else None
                value = "—" if mine is None else f"{number(mine)} KiB"
                if other is not None:
                    value += f" vs {number(other)} KiB"
                cells.append(value)
    lines.append(
        "| capacity: largest K with p99 added ≤ 100 ms, nothing lost | "
        + " | ".join(cap_cells)
        + " |"
    )
    lines.append("| RSS per idle WebSocket (100 open) | " + " | ".join(idle_cells) + " |")
    lines.append("| RSS per active stream (100 streams) | " + " | ".join(active_cells) + " |")
    return "\n".join(lines)


def _slug(output: dict[str, Any]) -> str:
    names = sorted({r["server"] for r in output["results"]})
    return re.sub(r"[^a-z0-9]+", "-", " ".join(names).lower()).strip("-")


def write_docs(output: dict[str, Any]) -> None:
    slug = _slug(output)
    start, end = f"<!-- bench:relay:{slug} -->", f"<!-- /bench:relay:{slug} -->"
    machine = output["machine"]
    block = (
        f"{start}\n"
        f"Measured {output['date']} with `{output['command']}` "
        f"({output['duration_s']:.0f} s; {machine['cpus']} cores, Python {machine['python']}, "
        f"{output['settings'].get('event_loop', 'asyncio')} under Daphne for both servers; "
        f"load average at the end {' / '.join(machine['load_average_at_end'])}). "
        + (
            "Cells are chatsite vs the baseline (ratio)."
            if any(r["server"] == "baseline" for r in output["results"])
            else "chatsite alone (no baseline in this run)."
        )
        + f"\n\n{markdown(output)}\n{end}"
    )
    put_block(block, start, end, anchor="<!-- bench:relay:insert-here -->")


def put_block(block: str, start: str, end: str, *, anchor: str) -> None:
    """Put `block` (which begins with `start` and ends with `end`) into docs/performance.md: in
    place of the one between those markers, else before `anchor`, else at the end."""
    text = DOC.read_text()
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    elif anchor in text:
        text = text.replace(anchor, f"{block}\n\n{anchor}")
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    DOC.write_text(text)
