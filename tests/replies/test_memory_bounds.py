"""Memory a visitor who never reads can make the server hold (issue 7, part 2), measured on a
real Daphne process: its resident memory is read from /proc while raw sockets that never read
ask for a large reply again and again, over WebSocket and over SSE.

Before the bounds, 300 watch frames for a finished 1 MB reply grew the server by ~292 MB, and
each non-reading SSE reader of a 4 MB reply by ~13 MB. Now a socket never gets a reply twice, the
number of readers per person is capped, and a connection Daphne holds more than
CHAT_MAX_CONNECTION_BUFFER_BYTES for is dropped.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import time
from pathlib import Path

import pytest

MB = 2**20
BUFFER_CAP = 256 * 1024
# The default CHAT_MAX_REPLY_CHARS: the largest reply a default installation keeps.
REPLY_CHARS = 200_000


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def server_pid(port: int) -> int:
    """The Daphne process listening on `port` (found through /proc, no extra tools)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
    assert inode, "no listening socket"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError("no process owns the socket")


def non_reading_socket(port: int) -> socket.socket:
    sock = socket.socket()
    # A small receive window: the kernel holds little, so what piles up is the server's.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def ws_open(port: int, cookie: str) -> socket.socket:
    sock = non_reading_socket(port)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0], response
    return sock


def ws_frame(payload: dict) -> bytes:
    data = json.dumps(payload).encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    if len(data) < 126:
        header += bytes([0x80 | len(data)])
    else:
        header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        # Drain what is there; an orderly close shows as b"" once the data is read.
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@pytest.fixture(scope="module")
def big_reply_server(
    tmp_path_factory, app_env, browser_class, daphne, fake_upstream_server, migrate
):
    """One Daphne serving a finished 200,000-character reply from the fake upstream."""
    tmp = tmp_path_factory.mktemp("memory")
    with fake_upstream_server() as upstream:
        upstream.script(text=("lorem ipsum dolor sit amet " * 8_000)[:REPLY_CHARS], chunks=200)
        env = app_env(
            tmp,
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=upstream.openai_base_url,
            OPENAI_MODELS="gpt-4.1-mini",
            CHAT_MAX_REPLY_CHARS=str(REPLY_CHARS + 1),
            CHAT_MAX_CONNECTION_BUFFER_BYTES=str(BUFFER_CAP),
            CHAT_MAX_READERS_PER_PERSON="8",
            CHAT_WATCH_RATE_PER_MINUTE="1000",
            CHAT_SSE_DRAIN_SECONDS="20",
        )
        migrate(env)
        with daphne(env, tmp / "server.log") as url:
            port = int(url.rsplit(":", 1)[1])
            browser = browser_class()
            browser.get(f"{url}/streaming-demo")
            status, html = browser.post(
                f"{url}/streaming-demo/messages",
                {"message": "a long one", "model": "openai:gpt-4.1-mini"},
            )
            assert status == 200
            message_id = int(
                re.search(r'data-status="streaming" data-message-id="(\d+)"', html).group(1)
            )
            cookie = "; ".join(f"{c.name}={c.value}" for c in browser.jar)
            deadline = time.monotonic() + 60
            while 'data-status="streaming"' in browser.get(f"{url}/streaming-demo"):
                assert time.monotonic() < deadline, "the big reply did not finish"
                time.sleep(0.2)
            yield {"port": port, "url": url, "cookie": cookie, "message_id": message_id}


def test_repeated_watches_on_a_non_reading_socket_do_not_grow_the_server(big_reply_server):
    port, cookie = big_reply_server["port"], big_reply_server["cookie"]
    pid = server_pid(port)
    baseline = rss_bytes(pid)

    sock = ws_open(port, cookie)
    watch = ws_frame({"action": "watch", "message_id": big_reply_server["message_id"], "after": 0})
    for _ in range(1000):
        try:
            sock.sendall(watch)
        except OSError:
            break  # dropped: fine, that is one of the bounds
    time.sleep(2)
    grown = rss_bytes(pid) - baseline
    print(
        f"\nWS: 1000 watches of a 200k-character reply, never read: server RSS +{grown / MB:.1f} MB"
    )
    sock.close()
    # One copy of the reply on its way, plus the buffer cap, plus noise; not 1000 copies
    # (which were ~200 MB before).
    assert grown < 30 * MB


def test_non_reading_sse_readers_are_capped_and_bounded(big_reply_server):
    port, cookie = big_reply_server["port"], big_reply_server["cookie"]
    pid = server_pid(port)
    baseline = rss_bytes(pid)

    sockets, refused = [], 0
    for _ in range(20):
        sock = non_reading_socket(port)
        sock.sendall(
            (
                f"GET /streaming-demo/replies/{big_reply_server['message_id']}/events HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        sockets.append(sock)
    time.sleep(3)
    for sock in sockets:
        head = sock.recv(64)
        refused += b" 429 " in head
    grown = rss_bytes(pid) - baseline
    print(
        f"\nSSE: 20 non-reading readers of a 200k-character reply: {refused} refused, "
        f"RSS +{grown / MB:.1f} MB"
    )
    for sock in sockets:
        sock.close()
    assert refused >= 12  # 8 readers per person
    assert grown < 30 * MB
