"""A py-spy profile of the server while a load runs, and what takes the time in it.

py-spy samples the server from outside (`pip install py-spy`; it needs ptrace rights, e.g. root
or `kernel.yama.ptrace_scope=0`). Recorded with `--idle --threads -f raw`: one line per distinct
stack with its sample count, so both busy frames (CPU) and waits (a thread sleeping in SQLite's
busy handler, a lock) show. The summary counts, per thread kind (the event loop vs the database
threads), the frames that are on the stack: inclusive samples, so "reply_start 40 %" means a
thread was inside reply_start in 40 % of the samples.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

THREAD = re.compile(r"^thread \(\d+\): (?P<name>[^;]*)")
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Frames that tell nothing: the loop and thread machinery every sample sits in.
PLUMBING = {
    "<module>", "CommandLineInterface.entrypoint", "CommandLineInterface.run", "Server.run",
    "AsyncioSelectorReactor.run", "BaseEventLoop.run_forever", "BaseEventLoop._run_once",
    # Under chatsite.serving.server (uvloop), the loop itself is C: an idle loop's stack ends here.
    "_run_module_as_main", "_run_code", "main",
    "Handle._run", "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker",
    "_WorkItem.run", "Task.__step", "Task.__wakeup",
}  # fmt: skip
KINDS = {
    "MainThread": "event loop",
    "reply-db": "job database threads",
    "reply-writer": "writer thread",
    "ThreadPoolExecutor": "sync_to_async threads",
}


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


@contextlib.contextmanager
def recording(pid: int, output: Path, seconds: float, *, gil: bool = False) -> Iterator[None]:
    """`gil`: sample only the thread holding the GIL (where the process's CPU goes, across its
    threads) instead of every thread, waits included."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    process = subprocess.Popen(  # noqa: S603 - our own command
        [tool, "record", "--gil" if gil else "--idle", "--threads", "-r", "100", "-f", "raw", "-d"]
        + [str(int(seconds) + 1), "-o", str(output), "--pid", str(pid), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        try:
            process.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            process.terminate()


def summarize(raw: Path, top: int = 20, *, gil: bool = False) -> dict[str, list[tuple[str, float]]]:
    """Per thread kind, the frames on the stack, as a share of the event loop's samples: for the
    loop that is the share of the time it spent inside the frame; for a pool of threads it is
    how many threads were inside it on average (150 % = one and a half). From a `gil` recording
    (only the thread holding the GIL is sampled), shares are of all samples: where the process's
    CPU went, with "all threads" summing the kinds."""
    inclusive: dict[str, Counter[str]] = {}
    leaves: Counter[str] = Counter()
    loop_samples = total_samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        thread = THREAD.match(stack)
        if thread is None or not count_text.isdigit():
            continue
        count = int(count_text)
        total_samples += count
        name = thread.group("name")
        kind = next((k for prefix, k in KINDS.items() if name.startswith(prefix)), "other")
        labels = []
        for frame in stack.split(";")[1:]:
            match = FRAME.match(frame)
            if match and match.group("function") not in PLUMBING:
                labels.append(f"{match.group('function')} ({_short(match.group('file'))})")
        if kind == "event loop":
            loop_samples += count
            if labels:
                leaves[labels[-1]] += count
        kinds = [kind, "all threads"] if gil else [kind]
        for counted in kinds:
            counter = inclusive.setdefault(counted, Counter())
            for label in dict.fromkeys(labels):
                counter[label] += count
    scale = 100 / max(1, total_samples if gil else loop_samples)
    summary = {
        kind: [(label, round(n * scale, 1)) for label, n in counter.most_common(top)]
        for kind, counter in inclusive.items()
    }
    summary["event loop, innermost frame"] = [
        (label, round(n * scale, 1)) for label, n in leaves.most_common(top)
    ]
    return summary


def _short(file: str) -> str:
    parts = Path(file).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else file


def markdown(summary: dict[str, list[tuple[str, float]]], top: int = 12) -> str:
    lines = []
    for kind in (
        "all threads",
        "event loop",
        "event loop, innermost frame",
        "job database threads",
        "writer thread",
        "sync_to_async threads",
    ):
        rows = summary.get(kind, [])[:top]
        if not rows:
            continue
        lines.append(f"| {kind}: frame on the stack | share of samples |")
        lines.append("|---|---|")
        lines += [f"| `{label}` | {share} % |" for label, share in rows]
        lines.append("")
    return "\n".join(lines)
