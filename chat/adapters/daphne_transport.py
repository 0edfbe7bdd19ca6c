"""Daphne's and Twisted's internals: the TCP transport behind an ASGI `send`, and how much it
holds unsent.

Daphne passes `functools.partial(server.handle_reply, protocol)` as `send`; the protocol (or, for
HTTP, its channel) has the Twisted transport. A Twisted `FileDescriptor` keeps what the kernel
has not taken in `dataBuffer` from `offset` on, plus `_tempDataLen` bytes not yet joined into it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from autobahn.exception import Disconnected

# What a send on a WebSocket whose client has closed raises until the app has handled its
# `websocket.disconnect`: Daphne's comes from autobahn (the ASGI spec asks servers for an
# OSError subclass, which others raise).
SEND_ON_CLOSED_ERRORS: tuple[type[Exception], ...] = (Disconnected, OSError)


def transport_of(send: Any) -> Any | None:
    """The Twisted transport behind Daphne's `send`; None under any other server."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    transport = getattr(protocol, "transport", None)
    if transport is None:  # an HTTP request: the connection is its channel's
        transport = getattr(getattr(protocol, "channel", None), "transport", None)
    return transport


def buffered_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport has accepted but not yet handed to the kernel (0 if the
    transport is not one)."""
    try:
        pending = len(transport.dataBuffer) - transport.offset
        return int(pending + transport._tempDataLen)
    except (AttributeError, TypeError):
        return 0


def aborter(transport: Any) -> Callable[[], None] | None:
    """Drops the connection and whatever is still queued for it (Twisted runs on the same
    asyncio loop under Daphne, so this is safe to call from the app)."""
    return getattr(transport, "abortConnection", None)
