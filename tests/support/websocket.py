"""The chat WebSocket driven in-process through the real ASGI stack, as the page's hx-ws does."""

from __future__ import annotations

import json
import re

from channels.testing import WebsocketCommunicator

from tests.support.transport import deltas

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


async def connect(cookie: str | None = None, origin=ORIGIN) -> WebsocketCommunicator:
    from chatsite.asgi import application

    headers = [(b"host", b"127.0.0.1:8000")]
    if origin:
        headers.append(origin)
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def send(communicator, **frame):
    # hx-ws sends the form values plus a "headers" object.
    await communicator.send_to(text_data=json.dumps({**frame, "headers": {"HX-Request": "true"}}))


async def read_reply(communicator, timeout=5) -> tuple[list[tuple[int, str]], str]:
    """Frames until the final one: the (seq, text) deltas and the final fragment."""
    pieces: list[tuple[int, str]] = []
    while True:
        frame = await communicator.receive_from(timeout)
        if 'hx-swap-oob="outerHTML"' in frame and "<article" in frame:
            return pieces, frame
        pieces += deltas(frame)


async def start_reply(communicator, text: str) -> int:
    await send(communicator, action="send", message=text, model="demo:demo", conversation="")
    started = await communicator.receive_from(5)
    message_id = int(
        re.search(
            r'data-role="assistant" data-status="streaming" '
            r'data-message-id="(\d+)"',
            started,
        ).group(1)
    )
    return message_id
