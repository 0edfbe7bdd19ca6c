"""redis-py's internals: the asyncio stream writer of a pub/sub connection
(`PubSub.connection._writer`).

Cancelling a task blocked in `PubSub.get_message` can be swallowed inside redis-py
(redis/redis-py#2028, #2551, #2665); aborting the socket under it ends the read at once.
"""

from __future__ import annotations

import contextlib
from typing import Any


def abort_socket(pubsub: Any) -> None:
    """Close a pub/sub connection's socket at once (no await), ending a read blocked on it."""
    with contextlib.suppress(Exception):
        pubsub.connection._writer.transport.abort()
