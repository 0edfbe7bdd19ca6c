"""Django's internal list of a response's closers (`HttpResponseBase._resource_closers`).

Django calls `close()` on every response it sent — even a streaming one whose stream never
started — and `close()` calls each closer. There is no public hook for "this response is done".
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpResponseBase


def on_close(response: HttpResponseBase, closer: Callable[[], None]) -> None:
    """Call `closer` when Django closes `response`."""
    response._resource_closers.append(closer)  # type: ignore[attr-defined]
