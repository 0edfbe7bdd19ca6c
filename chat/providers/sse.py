"""Server-sent events read from raw body bytes, for the providers that parse their own stream.

Bytes rather than the HTTP client's decoded lines: splitting the body once per chunk and
handing each event's data to `json.loads` as bytes is about a fifth of what the client's line
decoder costs per token (docs/performance.md, the third pass).
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The data of each event in a text/event-stream body: its `data:` lines joined by
    newlines. Lines end with LF or CRLF (a lone CR, which the format also allows, is not used
    by any provider we speak to). Other fields (`event:`, `id:`, comments) are skipped."""
    pending = b""
    data: list[bytes] = []
    async for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
    if pending.startswith(b"data:"):
        data.append(pending[6:] if pending[5:6] == b" " else pending[5:])
    if data:
        yield b"\n".join(data)
