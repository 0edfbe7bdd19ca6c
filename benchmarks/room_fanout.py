"""A shared conversation's live room under load: one reply fanned out to its 50 members' sockets,
beside 50 one-person replies on the same server; and 100 people coming and going in 10 s.

    .venv/bin/python -m benchmarks.room_fanout                # both modes (about 3 minutes)
    .venv/bin/python -m benchmarks.room_fanout --quick        # 10 members, 20 comings and goings
    .venv/bin/python -m benchmarks.room_fanout --write-docs   # ... and put the tables in docs/

Built on the relay benchmark (benchmarks/relay/): its fake OpenAI-compatible upstream stamps
every token with its send time (100 tokens at 20 tokens/s), its load client reads the page's
WebSocket as chat.js does and counts, per token, receive time minus stamp ("added latency") and
what was lost or doubled; its servers run chatsite under Daphne on core 0, the upstream, Redis
and this client on core 1; its meter reads the server's CPU from /proc.

Two modes: one Daphne worker with the in-memory layer and reply stream, and two workers sharing
Redis (REDIS_URL), people alternating between them. In each, through the sharing domain in the
app's database (`manage.py shell -c`, as tests/e2e/test_rooms.py does): people with a session
each, and a conversation whose owner invited the others.

- The room: all 50 open the conversation's page (the socket, then `join`); the owner sends one
  message; the reply streams to all 50 — the owner's socket follows it from its send, every
  other member's from the room's "reply started" event.
- Beside it, the same 50 people each send a message in a conversation of their own at once
  (50 one-person replies at the same rate).
- Comings and goings (two workers): 20 people stay in a room while 100 others each join (one
  every 0.1 s), stay 1 s and leave; measured against the same room left idle for as long. Server
  CPU, Redis commands (INFO commandstats deltas, by command) and the room frames each person
  present received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.relay import client, report, servers
from benchmarks.relay.run import Load, Meter, gather_limited, rss_bytes, summarize
from chat.rooms.presence import LEAVE_DEBOUNCE_SECONDS

DOC_START, DOC_END = "<!-- bench:rooms -->", "<!-- /bench:rooms -->"

# People with a session, and conversations shared among the first n of them (the first owns
# them; the others joined by the owner's invite link), made through the sharing domain.
SETUP = """
import json, os
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from chat.conversations import sharing
from chat.conversations.reads import Visitor
from chat.models import Conversation
plan = json.loads(os.environ["ROOM_BENCH_PLAN"])
U = get_user_model()
def session(user):
    s = SessionStore(); s[SESSION_KEY] = str(user.pk)
    s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    s[HASH_SESSION_KEY] = user.get_session_auth_hash(); s.create(); return s.session_key
people = [
    U.objects.create_user(f"person{n:03d}", first_name="Person", last_name=f"{n:03d}")
    for n in range(plan["people"])
]
rooms = []
for size in plan["rooms"]:
    c = Conversation.objects.create(
        user=people[0], provider=plan["provider"], model=plan["model"], title="Bench room"
    )
    owner = Visitor(user=people[0], visitor_id="")
    invite = sharing.invite_create(visitor=owner, conversation_id=c.pk)
    for person in people[1:size]:
        sharing.invite_join(visitor=Visitor(user=person, visitor_id=""), token=invite.token)
    rooms.append(str(c.pk))
print(json.dumps({"sessions": [session(p) for p in people], "rooms": rooms}))
"""

ANNOUNCED = re.compile(r'id="room-event"[^>]*>([^<]*)<')


def _setup(server: servers.Server, *, people: int, rooms: list[int]) -> dict[str, Any]:
    provider, model = server.model.split(":", 1)
    plan = {"people": people, "rooms": rooms, "provider": provider, "model": model}
    out = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=servers.REPO,
        env={**server.env, "ROOM_BENCH_PLAN": json.dumps(plan)},
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # after the shell's own lines


class RoomSocket(client.ChatsiteSocket):
    """A signed-in person's page: its socket, joined to a conversation's room or not, reading
    replies as the relay's client does; it also counts the room's presence frames it gets."""

    def __init__(self, port: int, session_key: str) -> None:
        super().__init__(port, client.Visitor({"sessionid": session_key}))
        self.here = asyncio.Event()
        self.presence_frames = 0
        self.presence_bytes = 0
        self.announced: list[str] = []

    def on_message(self, text: str, received_ns: int) -> None:
        if 'id="room-presence"' in text:
            self.presence_frames += 1
            self.presence_bytes += len(text.encode())
            if announced := ANNOUNCED.search(text):
                self.announced.append(announced.group(1))
            self.here.set()
            return
        super().on_message(text, received_ns)

    async def enter(self, conversation: str, page: str) -> None:
        """Open the conversation's page: the socket, then `join`; back once the room said who is
        here (to this socket: it is in the room's group)."""
        await self.open()
        self.join(conversation, page)
        await asyncio.wait_for(self.here.wait(), 30)

    def forget_frames(self) -> None:
        self.presence_frames, self.presence_bytes, self.announced = 0, 0, []


async def _to_end(reading: Awaitable[Any], result: client.StreamResult, seconds: float) -> Any:
    try:
        await asyncio.wait_for(reading, seconds)
    except Exception as exc:  # counted as lost tokens, and reported
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    return result


def _port(server: servers.Server, person: int) -> int:
    """People alternate between the workers."""
    return server.ports[person % len(server.ports)]


def _rss(server: servers.Server) -> int:
    return sum(rss_bytes(pid) for pid in server.pids)


def _exact(result: client.StreamResult, tokens: int) -> bool:
    """Every token once, and the reply's end."""
    return (
        result.finished
        and not result.error
        and sorted(result.seen) == list(range(tokens))
        and all(count == 1 for count in result.seen.values())
    )


def _summary(
    server: servers.Server,
    load: Load,
    results: list[client.StreamResult],
    meter: Meter,
    **labels: Any,
) -> dict[str, Any]:
    summary = summarize(server, load, results, **meter.figures())
    summary.update(labels)
    summary["exact_readers"] = sum(1 for r in results if _exact(r, load.tokens))
    summary["server_cpu_ms_per_reader"] = round(summary["server_cpu_s"] * 1000 / load.streams, 1)
    print(report.line({**summary, "passes": True}), flush=True)
    return summary


async def room_reply(
    server: servers.Server,
    sessions: list[str],
    room: str,
    args: argparse.Namespace,
    *,
    upstream_pid: int,
) -> dict[str, Any]:
    """All members on the room's page; the owner sends; every member reads the reply."""
    members = [RoomSocket(_port(server, i), key) for i, key in enumerate(sessions)]
    # One after the other: a join heard by all before the next (as a room fills up in life).
    rss_start = _rss(server)
    for index, member in enumerate(members):
        await member.enter(room, f"member{index}")
    await asyncio.sleep(1.0)  # the last joins' frames, then quiet
    load = Load("ws", len(members), 0.0, args.tokens, args.rate)
    deadline = args.tokens / args.rate + 60
    owner, others = members[0], members[1:]
    async with Meter(
        server, upstream_pid=upstream_pid, rss_start=rss_start, rss_idle=_rss(server)
    ) as meter:
        send = owner.run("Benchmark question: tell the room a story.", server.model, room)
        results = await asyncio.gather(
            _to_end(send, owner.result, deadline),
            *(_to_end(m.ended, m.result, deadline) for m in others if m.ended is not None),
        )
    for member in others:
        member.result.sent_ns = owner.result.sent_ns  # first token: after the owner's send
    for member in members:
        member.close()
    await asyncio.sleep(LEAVE_DEBOUNCE_SECONDS + 1.0)  # their leaves announced: a quiet server
    return _summary(server, load, results, meter, kind="room")


async def separate_replies(
    server: servers.Server,
    sessions: list[str],
    args: argparse.Namespace,
    *,
    upstream_pid: int,
) -> dict[str, Any]:
    """The same people each send a message of their own (a new conversation), all at once."""
    sockets = [RoomSocket(_port(server, i), key) for i, key in enumerate(sessions)]
    rss_start = _rss(server)
    await gather_limited([s.open() for s in sockets], 16)
    await asyncio.sleep(1.0)
    load = Load("ws", len(sockets), 0.0, args.tokens, args.rate)
    deadline = args.tokens / args.rate + 60
    async with Meter(
        server, upstream_pid=upstream_pid, rss_start=rss_start, rss_idle=_rss(server)
    ) as meter:
        results = await asyncio.gather(
            *(
                _to_end(
                    s.run(f"Benchmark question {i}: tell me a story.", server.model),
                    s.result,
                    deadline,
                )
                for i, s in enumerate(sockets)
            )
        )
    for s in sockets:
        s.close()
    await asyncio.sleep(LEAVE_DEBOUNCE_SECONDS + 1.0)
    return _summary(server, load, results, meter, kind="separate")


def _left_people(announced: list[str]) -> int:
    """How many people the room's notices said left ("A left, B left" is one notice)."""
    return sum(line.count(" left") for line in announced if line.endswith(" left"))


def _commands(redis_url: str) -> Counter[str]:
    import redis

    stats = redis.Redis.from_url(redis_url, decode_responses=True).info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name not in ("cmdstat_info", "cmdstat_config")
        }
    )


async def _window(
    server: servers.Server,
    redis_url: str,
    present: list[RoomSocket],
    happening: Awaitable[list[RoomSocket]],
    *,
    upstream_pid: int,
) -> dict[str, Any]:
    """Measure the server and Redis while `happening` runs (it returns the sockets that came
    and went); the room frames each person present received."""
    for socket in present:
        socket.forget_frames()
    commands_before = _commands(redis_url)
    rss = _rss(server)
    async with Meter(server, upstream_pid=upstream_pid, rss_start=rss, rss_idle=rss) as meter:
        visitors = await happening
    commands = _commands(redis_url) - commands_before
    frames = [s.presence_frames for s in present]
    everyone = present + visitors
    announced = list(present[0].announced)
    joins = sum(1 for line in announced if line.endswith(" joined"))
    return {
        "wall_s": round(meter.wall, 2),
        "server_cpu_s": round(meter.cpu, 3),
        "load_average_1m": meter.load_before,
        "redis_commands": dict(commands.most_common()),
        "redis_commands_total": sum(commands.values()),
        "join_events": joins,
        "left_events": sum(1 for line in announced if line.endswith(" left")),
        "left_people": _left_people(announced),
        "present_people": len(present),
        "frames_per_present_person": {
            "mean": round(sum(frames) / len(frames), 1),
            "min": min(frames),
            "max": max(frames),
        },
        "room_frames_total": sum(s.presence_frames for s in everyone),
        "bytes_per_room_frame": round(
            sum(s.presence_bytes for s in everyone)
            / max(1, sum(s.presence_frames for s in everyone))
        ),
        "errors": sorted({s.result.error for s in visitors if s.result.error})[:5],
    }


async def comings_and_goings(
    server: servers.Server,
    sessions: list[str],
    room: str,
    redis_url: str,
    args: argparse.Namespace,
    *,
    upstream_pid: int,
) -> dict[str, Any]:
    """`args.present` people stay in the room; `args.churn` others each join and leave within
    `args.churn_seconds`; beside it, the room left idle for as long."""
    present = [RoomSocket(_port(server, i), sessions[i]) for i in range(args.present)]
    for index, socket in enumerate(present):
        await socket.enter(room, f"present{index}")
    await asyncio.sleep(1.0)

    async def churn() -> list[RoomSocket]:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(k: int) -> RoomSocket:
            person = args.present + k
            await asyncio.sleep(max(0.0, start + k * args.churn_seconds / args.churn - loop.time()))
            socket = RoomSocket(_port(server, person), sessions[person])
            try:
                await socket.enter(room, f"visitor{k}")
                await asyncio.sleep(args.stay)
            except Exception as exc:
                socket.result.error = f"{type(exc).__name__}: {exc}"[:300]
            socket.close()
            return socket

        visitors = await asyncio.gather(*(one(k) for k in range(args.churn)))
        # Until every leave has been announced (each LEAVE_DEBOUNCE_SECONDS after it), or not.
        deadline = loop.time() + LEAVE_DEBOUNCE_SECONDS + 30
        while _left_people(present[0].announced) < args.churn and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return list(visitors)

    busy = await _window(server, redis_url, present, churn(), upstream_pid=upstream_pid)
    # The same room, as long, with nobody coming or going: its heartbeats.
    idle = asyncio.sleep(busy["wall_s"], result=[])
    quiet = await _window(server, redis_url, present, idle, upstream_pid=upstream_pid)
    for socket in present:
        socket.close()
    changes = Counter(busy["redis_commands"])
    changes.subtract(quiet["redis_commands"])
    result = {
        "kind": "churn",
        "churn": args.churn,
        "churn_seconds": args.churn_seconds,
        "stay_s": args.stay,
        "idle": quiet,
        "busy": busy,
        "redis_commands_per_join_and_leave": {
            name: round(n / args.churn, 2) for name, n in changes.most_common() if n > 0
        },
        "server_cpu_ms_per_join_and_leave": round(
            (busy["server_cpu_s"] - quiet["server_cpu_s"]) * 1000 / args.churn, 2
        ),
    }
    print(
        f"  comings and goings: {args.churn} in {args.churn_seconds:g} s, CPU "
        f"{busy['server_cpu_s']} s vs {quiet['server_cpu_s']} s idle "
        f"({result['server_cpu_ms_per_join_and_leave']} ms per join and leave), Redis "
        f"{busy['redis_commands_total']} vs {quiet['redis_commands_total']} commands, "
        f"{busy['join_events']} joined / {busy['left_people']} left in "
        f"{busy['left_events']} events, frames per person present "
        f"{busy['frames_per_present_person']}"
        + (f"\n    errors: {busy['errors']}" if busy["errors"] else ""),
        flush=True,
    )
    return result


@contextlib.contextmanager
def _mode(workdir: Path, upstream_port: int, workers: int) -> Iterator[tuple[servers.Server, str]]:
    """chatsite on `workers` workers: one with the in-memory layer and stream, more on Redis."""
    workdir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(servers.redis_server(workdir)) if workers > 1 else ""
        server = stack.enter_context(
            servers.chatsite(workdir, upstream_port, workers=workers, redis_url=redis_url)
        )
        server.name = "two workers, Redis" if workers > 1 else "one worker, in memory"
        yield server, redis_url


async def _run_mode(
    workers: int, workdir: Path, upstream: tuple[int, int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    upstream_port, upstream_pid = upstream
    people = max(args.members, args.present + args.churn)
    with _mode(workdir, upstream_port, workers) as (server, redis_url):
        print(f"chatsite, {server.name}", flush=True)
        made = _setup(server, people=people, rooms=[args.members, people])
        sessions, (room, churn_room) = made["sessions"], made["rooms"]
        # First requests import and build things (the SDK client, templates): not measured.
        await separate_replies(server, sessions[-2 * workers :], args, upstream_pid=upstream_pid)
        mode = {"mode": server.name, "workers": workers}
        results: list[dict[str, Any]] = []
        if "fanout" in args.parts:
            members = sessions[: args.members]
            room_results = await room_reply(server, members, room, args, upstream_pid=upstream_pid)
            separate = await separate_replies(server, members, args, upstream_pid=upstream_pid)
            results += [{**mode, **room_results}, {**mode, **separate}]
        if redis_url and "churn" in args.parts:
            churn = await comings_and_goings(
                server, sessions, churn_room, redis_url, args, upstream_pid=upstream_pid
            )
            results.append({**mode, **churn})
    return results


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    servers.pin_client()
    started = time.monotonic()
    load_at_start = report.load_averages()
    workdir = args.json.parent / "room-fanout-work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results: list[dict[str, Any]] = []
    with servers.upstream(workdir, tokens=args.tokens, rate=args.rate) as upstream:
        for workers in args.workers:
            results += await _run_mode(workers, workdir / f"workers-{workers}", upstream, args)
    record = report.run_record("benchmarks.room_fanout", started)
    record["machine"]["load_average_at_start"] = load_at_start
    return {
        **record,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "write_docs")},
        "results": results,
    }


# --- Report ------------------------------------------------------------------------------------


def _ms(values: dict[str, float | None], *keys: str) -> str:
    return " / ".join(report.number(values.get(k)) for k in keys) + " ms"


FANOUT_ROWS: list[tuple[str, Any]] = [
    ("added per token, p50 / p99 / max", lambda r: _ms(r["added_ms"], "p50", "p99", "max")),
    ("first token after the send, p50 / p99", lambda r: _ms(r["first_token_ms"], "p50", "p99")),
    ("readers with the exact text", lambda r: f"{r['exact_readers']} / {r['streams']}"),
    ("tokens lost / doubled", lambda r: f"{r['lost']} / {r['doubled']}"),
    ("frames per token, per reader", lambda r: f"{r['frames_per_token']:.2f}"),
    ("server CPU, all workers", lambda r: f"{r['server_cpu_s']:.2f} s"),
    ("server CPU per reader", lambda r: f"{report.number(r['server_cpu_ms_per_reader'])} ms"),
    ("load average (1 min) at start", lambda r: str(r["load_average_1m"])),
]


def markdown(output: dict[str, Any]) -> str:
    results = output["results"]
    fanouts = [r for r in results if r["kind"] in ("room", "separate")]
    members = output["settings"]["members"]
    heads = [
        f"{r['mode']}: "
        + (f"one reply to {members}" if r["kind"] == "room" else f"{members} one-person replies")
        for r in fanouts
    ]
    lines = ["| | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for label, cell in FANOUT_ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in fanouts) + " |")
    parts = ["\n".join(lines)] if fanouts else []
    for churn in (r for r in results if r["kind"] == "churn"):
        parts.append(_churn_table(churn))
    return "\n\n".join(parts)


def _churn_table(r: dict[str, Any]) -> str:
    idle, busy = r["idle"], r["busy"]
    title = (
        f"{r['mode']}: {busy['present_people']} present, {r['churn']} join and leave in "
        f"{r['churn_seconds']:g} s"
    )
    commands = ", ".join(f"{k} {v:g}" for k, v in r["redis_commands_per_join_and_leave"].items())

    def per_person(w: dict[str, Any]) -> str:
        f = w["frames_per_present_person"]
        return f"{f['mean']:g} ({f['min']}–{f['max']})"

    rows = [
        ("window", f"{idle['wall_s']:.1f} s", f"{busy['wall_s']:.1f} s", "—"),
        (
            "server CPU, both workers",
            f"{idle['server_cpu_s']:.2f} s",
            f"{busy['server_cpu_s']:.2f} s",
            f"{r['server_cpu_ms_per_join_and_leave']:.1f} ms",
        ),
        (
            "Redis commands",
            f"{idle['redis_commands_total']:,}",
            f"{busy['redis_commands_total']:,}",
            f"{(busy['redis_commands_total'] - idle['redis_commands_total']) / r['churn']:.1f}",
        ),
        ("Redis commands by name", "—", "—", commands or "—"),
        (
            "changes announced: joined / left (in events)",
            f"{idle['join_events']} / {idle['left_people']} ({idle['left_events']})",
            f"{busy['join_events']} / {busy['left_people']} ({busy['left_events']})",
            "—",
        ),
        ("room frames per person present, mean (min–max)", per_person(idle), per_person(busy), "—"),
        (
            "room frames, everyone / bytes each",
            f"{idle['room_frames_total']} / {idle['bytes_per_room_frame']} B",
            f"{busy['room_frames_total']} / {busy['bytes_per_room_frame']} B",
            "—",
        ),
        (
            "load average (1 min) at start",
            str(idle["load_average_1m"]),
            str(busy["load_average_1m"]),
            "—",
        ),
    ]
    lines = [
        f"| {title} | idle room | comings and goings | per join and leave |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {a} | {b} | {c} |" for label, a, b, c in rows]
    return "\n".join(lines)


def write_docs(output: dict[str, Any]) -> None:
    machine = output["machine"]
    block = (
        f"{DOC_START}\n"
        f"Measured {output['date']} with `{output['command']}` ({output['duration_s']:.0f} s; "
        f"{machine['cpus']} cores, Python {machine['python']}; load average (`uptime`) "
        f"{' / '.join(machine['load_average_at_start'])} at the start, "
        f"{' / '.join(machine['load_average_at_end'])} at the end).\n\n"
        f"{markdown(output)}\n{DOC_END}"
    )
    report.put_block(block, DOC_START, DOC_END, anchor="## Other benchmarks")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 members, 20 comings and goings")
    parser.add_argument("--workers", default="1,2", help="the modes: 1 (in memory), 2 (Redis)")
    parser.add_argument(
        "--parts", default="fanout,churn", help="fanout (a reply), churn (joins and leaves)"
    )
    parser.add_argument("--members", type=int, default=50, help="people in the room")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second")
    parser.add_argument("--present", type=int, default=20, help="people who stay in the room")
    parser.add_argument("--churn", type=int, default=100, help="people who join and leave")
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--stay", type=float, default=1.0, help="seconds each of them stays")
    parser.add_argument("--json", type=Path, default=Path("var/bench/room_fanout.json"))
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    args.parts = args.parts.split(",")
    if args.quick:
        args.members, args.tokens, args.present, args.churn, args.churn_seconds = 10, 40, 5, 20, 2.0
    report.run_and_report(_main(args), args, markdown, write_docs)


if __name__ == "__main__":
    main()
