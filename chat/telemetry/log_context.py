"""Fields every log line of the current context carries (a request's id, a job's reply id).

The context lives here, beside the code that binds it, so the app needs nothing from the project
package to tag its log lines; `chatsite.ops.logs` reads it when it formats a line.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

_log_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)


def log_context_bind(**fields: Any) -> None:
    """Add fields to every log line of the current context (a request, or a job's task)."""
    _log_context.set({**(_log_context.get() or {}), **fields})


def log_context_get() -> dict[str, Any]:
    return _log_context.get() or {}


def log_context_start(**fields: Any) -> Token[dict[str, Any] | None]:
    """A fresh context (a request's); pass the token to `log_context_end`."""
    return _log_context.set(dict(fields))


def log_context_end(token: Token[dict[str, Any] | None]) -> None:
    _log_context.reset(token)
