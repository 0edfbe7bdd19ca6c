"""Redis client settings, chosen together with how long our blocking reads wait.

redis-py's default socket timeout (5 s) bounds every call, blocking ones included: an
`XREAD BLOCK 15000` on such a socket raises a timeout after 5 s instead of returning empty, so a
silence of 5 s (a slow first token, a stall) used to strand every reader. Here every blocking
read asks Redis to wait at most MAX_BLOCK_SECONDS, and the socket gives up only
SOCKET_MARGIN_SECONDS after that, so no read can outlive its socket, however long the silence:
readers just read again. tests/replies/test_streams.py asserts the relationship.

No Django imports: chatsite/settings.py uses these for the cache, chat/replies/streams.py for the
reply stream.
"""

from __future__ import annotations

from typing import Any

# The longest any of our commands blocks in Redis (XREAD BLOCK of a reader).
MAX_BLOCK_SECONDS = 15.0
# How much longer than that the socket waits for an answer before calling the server gone.
SOCKET_MARGIN_SECONDS = 10.0
STREAM_SOCKET_TIMEOUT = MAX_BLOCK_SECONDS + SOCKET_MARGIN_SECONDS
# A Redis that is down refuses at once; one that is unreachable should not hold a request long.
CONNECT_TIMEOUT_SECONDS = 2.0
# PING a connection that sat idle this long before using it, so a dead one is replaced up front.
HEALTH_CHECK_SECONDS = 10
# Each waiting reader holds a connection for its blocking read (redis-py's pool allows only 100
# by default, then raises MaxConnectionsError); Redis itself allows 10,000 clients by default.
MAX_CONNECTIONS = 5000
# The Django cache (rate limits) only runs quick commands: fail fast so a send gets its 503 soon.
CACHE_SOCKET_TIMEOUT = 2.0
CACHE_CONNECT_TIMEOUT = 1.0


def _retry(retries: int) -> Any:
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries)


def stream_client_options() -> dict[str, Any]:
    """For the reply stream's clients (asyncio and sync)."""
    from redis.exceptions import ConnectionError, TimeoutError

    return {
        "socket_timeout": STREAM_SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "max_connections": MAX_CONNECTIONS,
        "retry": _retry(2),
        "retry_on_error": [ConnectionError, TimeoutError],
    }


def cache_options() -> dict[str, Any]:
    """OPTIONS for django.core.cache.backends.redis.RedisCache (passed to its connection pool)."""
    return {
        "socket_timeout": CACHE_SOCKET_TIMEOUT,
        "socket_connect_timeout": CACHE_CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "retry": _retry(1),
    }
