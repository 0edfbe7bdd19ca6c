"""Room frames a page (or anyone) may send: generated `typing`, `join`, unknown actions and
junk never close the socket with 1011, never log a traceback, and never lose what a member
sends; and a socket left idle 60 s on channels-redis stays open (django/channels_redis#422)."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.models import Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 200 if os.environ.get("CI") == "true" else 25))

junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def room_frames(draw, conversation_id: str) -> str:
    kind = draw(st.sampled_from(["typing", "typing", "join", "unknown", "junk"]))
    if kind in ("typing", "join"):
        target = draw(st.one_of(st.just(conversation_id), junk, st.uuids().map(str)))
        frame = {"action": kind, "conversation": target}
        if kind == "join" and draw(st.booleans()):
            frame["client"] = draw(junk)
    elif kind == "unknown":
        frame = {"action": draw(st.text(max_size=12)), "conversation": conversation_id}
    else:
        frame = draw(st.dictionaries(st.text(max_size=8), junk, max_size=4))
        frame["action"] = draw(st.sampled_from(["typing", "join", "watch", None, 7]))
    frame["headers"] = {"HX-Request": "true"}
    return json.dumps(frame, allow_nan=True)


class _Bad(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


async def test_room_frames_never_break_the_socket_or_lose_a_message(shared_room, room_socket):
    room = await shared_room()
    bad = _Bad()
    logging.getLogger().addHandler(bad)
    sent: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(frames=st.lists(room_frames(room.id), min_size=1, max_size=8))
    def run(frames: list[str]) -> None:
        # Hypothesis draws the examples; they run on the test's own event loop below.
        examples.append(frames)

    examples: list[list[str]] = []
    run()
    try:
        for n, frames in enumerate(examples):
            member = await room_socket.open(room.cookies[1], room.id)
            for raw in frames:
                await member.send_to(text_data=raw)
            # Still serving: a send afterwards is stored and answered.
            text = f"still here {n}"
            await room_socket.frame(
                member, action="send", message=text, model="demo:demo", conversation=room.id
            )
            while True:
                output = await member.receive_output(10)
                assert output["type"] == "websocket.send", output  # never closed (no 1011)
                if text in output.get("text", ""):
                    break
            sent.append(text)
            await member.disconnect()
            from chat.replies.registry import live_jobs

            for job in live_jobs():
                await job
    finally:
        logging.getLogger().removeHandler(bad)
    await room_socket.leaves_done()
    stored = [
        m.content
        async for m in Message.objects.filter(
            conversation_id=room.id, role="user", author=room.member
        ).order_by("id")
    ]
    assert stored == sent
    assert not bad.records, [r.getMessage() for r in bad.records]


@pytest.mark.redis
async def test_a_socket_idle_for_60_seconds_on_redis_stays_open_and_hears_the_room(
    room_redis, shared_room, room_socket
):
    room = await shared_room()
    owner = await room_socket.open(room.cookies[0], room.id)
    await room_socket.until(owner, "joined")
    # Longer than the layer's blocking pop (5 s) many times over: redis-py 8's default socket
    # timeout would have closed it with 1011 about every 5 s.
    await asyncio.sleep(61)
    while not await owner.receive_nothing(0.1):  # nothing but room frames, never a close
        output = await owner.receive_output(1)
        assert output["type"] == "websocket.send", output
    member = await room_socket.open(room.cookies[1], room.id)
    await room_socket.frame(member, action="typing", conversation=room.id)
    assert "is typing" in (await room_socket.until(owner, "is typing", timeout=5))[-1]
    await member.disconnect()
    await owner.disconnect()
    await room_socket.leaves_done()
