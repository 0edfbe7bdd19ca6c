"""WhiteNoise for an ASGI site: compressed, hashed, long-cached static files, served async.

WhiteNoise's own middleware is synchronous only. Django adapts a sync middleware under ASGI by
running it — and, through it, everything below it, including our async views — behind one shared
thread: every request, even a no-JavaScript POST that waits for a whole reply, would queue for it.
This subclass keeps WhiteNoise's file index, headers (Cache-Control, Vary, ETag, the `.br` and
`.gz` variants) and settings, but answers in async mode: the lookup is a dict read, the file is
read in a worker thread, and requests that are not static files go straight on, still async.

It also streams the body through an async iterator, since Django's ASGI handler would otherwise
read a synchronous file iterator whole and warn on every static file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage

from chat.web.middleware import BothStacksMiddleware

CHUNK_BYTES = 64 * 1024


class AsyncWhiteNoiseMiddleware(BothStacksMiddleware, WhiteNoiseMiddleware):
    # Hashed names are cached "forever": one year, the longest max-age caches are asked to honour
    # (WhiteNoise's own default is ten).
    FOREVER = 365 * 24 * 60 * 60

    def __init__(self, get_response: Callable[[HttpRequest], Any], **kwargs: Any) -> None:
        WhiteNoiseMiddleware.__init__(self, get_response, **kwargs)
        BothStacksMiddleware.__init__(self, get_response)

    def sync_call(self, request: HttpRequest) -> HttpResponseBase:
        return WhiteNoiseMiddleware.__call__(self, request)

    async def async_call(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
        response_ = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        file = getattr(response_, "file_to_stream", None)
        if file is not None:
            # The file stays registered for closing with the response (Django closes it).
            response_.streaming_content = _read_chunks(file)  # type: ignore[attr-defined]
        return response_


async def _read_chunks(file: Any) -> AsyncIterator[bytes]:
    read = sync_to_async(file.read, thread_sensitive=False)
    while chunk := await read(CHUNK_BYTES):
        yield chunk


def _without_source_maps(patterns: Any) -> Any:
    return tuple(
        (
            glob,
            tuple(
                p for p in rules if "sourceMappingURL" not in (p if isinstance(p, str) else p[0])
            ),
        )
        for glob, rules in patterns
    )


class ManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's hashed + compressed storage, minus the rewriting of source-map comments: the
    vendored libraries name `.map` files that are not vendored (nothing needs them to run), and
    a missing one would stop collectstatic."""

    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)
