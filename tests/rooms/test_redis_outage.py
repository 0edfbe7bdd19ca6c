"""Redis restarts while a room's sockets are open (channels-redis on a Redis of the test's own):
the sockets stay open (never 1011) and keep answering frames while it is down, and once Redis
is back — empty, as a restarted Redis without persistence is — the room works again by itself:
a member's typing and send reach the owner's page."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from chat.replies.registry import live_jobs
from chat.replies.stream import reset_reply_stream
from chat.rooms.layer import redis_layer_hosts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def _outputs(socket, wait: float = 0.2) -> list[dict]:
    """What the socket has sent by now (never waits into a timeout, which would cancel it)."""
    outputs = []
    while not await socket.receive_nothing(wait):
        outputs.append(await socket.receive_output(1))
    return outputs


def _sent(outputs: list[dict]) -> str:
    # Every output a frame: a close (1011 above all) fails the test here.
    assert all(o["type"] == "websocket.send" for o in outputs), outputs
    return "".join(o.get("text", "") for o in outputs)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_redis_restart_keeps_room_sockets_open_and_the_room_comes_back(
    settings, tmp_path, redis_server, shared_room, room_socket
):
    # On the root logger once the sockets are open (the ASGI app's set-up configures logging,
    # which would drop a handler added before).
    logs = _Records()
    settings.CHAT_DEMO_TOKENS_PER_SECOND = 200
    with redis_server(tmp_path) as (url, server):
        settings.REDIS_URL = url
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "chat.rooms.redis_layer.ResilientRedisChannelLayer",
                "CONFIG": {"hosts": redis_layer_hosts(url)},
            }
        }
        reset_reply_stream()
        try:
            room = await shared_room()
            owner, member = await room_socket.enter_all(room)
            logging.getLogger().addHandler(logs)

            server.kill()
            server.wait(5)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            await asyncio.sleep(1)  # the layer's blocking pop has failed by now

            # Redis down: typing is skipped, and both sockets still answer frames.
            await room_socket.frame(member, action="typing", conversation=room.id)
            await room_socket.frame(member, action="watch", message_id=999999, after=0)
            assert "Not found." in _sent(await _outputs(member, 1))
            await room_socket.frame(owner, action="watch", message_id=999999, after=0)
            assert "Not found." in _sent(await _outputs(owner, 1))
            assert "is typing" not in _sent(await _outputs(owner))

            with redis_server(tmp_path, port=port):
                # Back, and empty: the room hears typing again once the layer has re-added
                # its connections (typing is relayed at most once a second per connection).
                deadline = asyncio.get_running_loop().time() + 20
                heard = ""
                while "is typing" not in heard:
                    assert asyncio.get_running_loop().time() < deadline, heard
                    await room_socket.frame(member, action="typing", conversation=room.id)
                    heard += _sent(await _outputs(owner, 1.1))
                assert room.member.username in heard

                # And a member's send reaches the owner's page.
                await room_socket.frame(
                    member,
                    action="send",
                    message="after the outage",
                    model="demo:demo",
                    conversation=room.id,
                )
                seen = ""
                while "after the outage" not in seen:
                    assert asyncio.get_running_loop().time() < deadline + 10, seen
                    seen += _sent(await _outputs(owner, 0.5))
                for job in live_jobs():
                    await job
                _sent(await _outputs(member))
                await member.disconnect()
                await owner.disconnect()
                await room_socket.leaves_done()
        finally:
            logging.getLogger().removeHandler(logs)
            reset_reply_stream()

    # Said at WARNING, once when it went and once when it came back; nothing at ERROR.
    outage = [r.getMessage() for r in logs.records if r.name == "chat.rooms.redis_layer"]
    assert any("unreachable" in m for m in outage), outage
    assert any("answers again" in m for m in outage), outage
    errors = [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR]
    assert not errors, errors


async def test_a_message_received_just_before_redis_goes_leaves_no_unretrieved_error(
    tmp_path, redis_server
):
    """channels-redis cleans a received message from its backup queue in a task of its own; when
    Redis goes before that task runs, its ConnectionError was never retrieved, and asyncio logged
    it at ERROR whenever the task was garbage-collected (in CI: inside a later test)."""
    import gc

    from chat.rooms.redis_layer import ResilientRedisChannelLayer

    logs = _Records()
    with redis_server(tmp_path) as (url, server):
        layer = ResilientRedisChannelLayer(hosts=redis_layer_hosts(url))
        await layer.send("cleaned", {"type": "hello"})
        logging.getLogger().addHandler(logs)
        try:
            # No await between the receive and the kill: the cleaner has not run yet.
            assert (await layer.receive("cleaned"))["type"] == "hello"
            server.kill()
            server.wait(5)
            while layer.receive_cleaners:
                await asyncio.sleep(0.05)
            gc.collect()
            await asyncio.sleep(0)
        finally:
            logging.getLogger().removeHandler(logs)
            with contextlib.suppress(Exception):
                await layer.close_pools()
    errors = [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR]
    assert not errors, errors
