"""What one request and one reply cost the server in CPU, piece by piece, in-process.

    .venv/bin/python -m benchmarks.request_cost [--runs 200]

The relay benchmark (`benchmarks/relay/`) measures the whole server under load; this one
separates the fixed costs it cannot: a request through the full ASGI stack (Daphne's part
excluded) and each database step of a reply, each run `--runs` times one after another on an
otherwise idle process, as CPU time (`time.process_time`: every thread of the process). SQLite
in a temporary directory, the demo model, limits off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

DATA_DIR = tempfile.mkdtemp(prefix="chatsite-request-cost-")
os.environ.update(
    CHATSITE_DATA_DIR=DATA_DIR,
    DJANGO_SETTINGS_MODULE="chatsite.settings",
    LOG_LEVEL="WARNING",
    CHAT_RATE_LIMIT="",
    CHAT_IP_RATE_LIMIT="",
    CHAT_MAX_STREAMING_PER_IP="0",
    CHAT_MAX_STREAMING_PER_PERSON="0",
    CHAT_MAX_READERS_PER_IP="0",
    # A priced model (no request is made): a send reads its prices and the caps, as in the relay
    # benchmark, where the free demo model would skip both.
    OPENAI_API_KEY="bench-key",
    OPENAI_MODELS="gpt-4.1-mini",
)


async def _request(application: Any, path: str) -> int:
    from tests.support.transport import asgi_get

    return await asgi_get(application, path)


def _cpu_ms(function: Callable[[], Any], runs: int) -> float:
    function()  # warm: templates compiled, connections open
    started = time.process_time()
    for _ in range(runs):
        function()
    return (time.process_time() - started) / runs * 1000


async def _acpu_ms(function: Callable[[], Any], runs: int) -> float:
    await function()
    started = time.process_time()
    for _ in range(runs):
        await function()
    return (time.process_time() - started) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth.models import AnonymousUser
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from chat.conversations import reads as selectors
    from chat.models import Message
    from chat.replies import endings
    from chat.replies import start as services
    from chat.replies.context import job_context_load
    from chat.web.rendering import final_fragment, started_fragment
    from chatsite.asgi import application

    rows: list[tuple[str, float]] = []
    for path in ("/healthz", "/streaming-demo"):
        if (status := asyncio.run(_request(application, path))) != 200:
            raise SystemExit(f"GET {path} answered {status}")

        async def request(path: str = path) -> int:
            return await _request(application, path)

        async def timed() -> float:
            return await _acpu_ms(request, args.runs)

        rows.append((f"GET {path} through the ASGI application", asyncio.run(timed())))

    visitor = selectors.Visitor(
        user=AnonymousUser(), visitor_id=uuid.uuid4().hex, client_ip="127.0.0.1"
    )
    started: list[services.ReplyStarted] = []

    def start() -> None:
        started.append(
            services.reply_start(
                visitor=visitor,
                conversation_id=None,
                text="hello there",
                model_choice="openai:gpt-4.1-mini",
            )
        )

    rows.append(
        (
            "reply_start (send: checks, 2 inserts, totals, the job's context)",
            _cpu_ms(start, args.runs),
        )
    )
    latest = started[-1]
    message_id = latest.assistant_message.pk
    pending = iter(started)
    ended: list[Any] = []

    def end() -> None:
        reply = next(pending)
        state = endings.ReplyState()
        state.parts, state.seq, state.first_token_at = ["word " * 100], 100, time.monotonic()
        # As the job records it: with the versions its send knew.
        versions = reply.job_context.versions if reply.job_context else None
        ended.append(
            endings.record_ending(reply.assistant_message.pk, state, "completed", "", versions)
        )

    runs = args.runs
    # Every reply: its send, the send's answer, its ending, the finished message the job renders.
    per_reply: list[tuple[str, Callable[[], Any], int]] = [
        ("started_fragment (the send's answer)", lambda: started_fragment(latest), runs),
        ("record_ending (usage, price, totals)", end, min(runs, len(started) - 1)),
        (
            "final_fragment (the finished message, rendered once per process for its readers)",
            lambda: final_fragment(ended[-1]),
            runs,
        ),
    ]
    # Only sometimes: another tab's watch, a regenerate's or an edit's context (a send hands its
    # job the context it read), a reader that came after the stream's retention.
    occasional: list[tuple[str, Callable[[], Any], int]] = [
        (
            "message_get (another tab's watch)",
            lambda: selectors.message_get(visitor, message_id),
            runs,
        ),
        ("job_context_load (a regenerate's or edit's)", lambda: job_context_load(message_id), runs),
        (
            "final_fragment from the database (a late reader's)",
            lambda: final_fragment(
                Message.objects.select_related("conversation").get(pk=message_id)
            ),
            runs,
        ),
    ]
    rows += [(label, _cpu_ms(function, runs)) for label, function, runs in per_reply]
    summed = sum(ms for _label, ms in rows[2:])
    rows += [(label, _cpu_ms(function, runs)) for label, function, runs in occasional]

    print(f"\nCPU per call, {args.runs} calls each (Python {sys.version.split()[0]}):\n")
    print("| step | CPU per call |\n|---|---|")
    for label, ms in rows[: 3 + len(per_reply)]:
        print(f"| {label} | {ms:.2f} ms |")
    print(f"| **every reply's database steps, summed** | {summed:.1f} ms |")
    for label, ms in rows[3 + len(per_reply) :]:
        print(f"| {label} | {ms:.2f} ms |")


if __name__ == "__main__":
    main()
