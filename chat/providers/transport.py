"""What the SDKs' aiohttp transport hides about a failed connection.

Both SDKs read through aiohttp (`openai[aiohttp]`, `anthropic[aiohttp]`: see the adapters). Their
transport translates aiohttp's errors into httpx2's, and translates every
`aiohttp.ClientConnectionError` (a refused connection, a server that hung up) into
`httpx2.ConnectTimeout`, which the SDKs report as a timeout. The original error is kept as the
cause, so the adapters look there before telling the person chatting that the provider was slow.
"""

from __future__ import annotations

import aiohttp


def connection_failed(exc: BaseException) -> bool:
    """True when `exc` (an SDK or httpx2 timeout) was really a connection that could not be made
    or was lost, not a provider that took too long."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
            return False
        if isinstance(cause, aiohttp.ClientConnectionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
