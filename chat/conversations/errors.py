"""Errors a send can end with, shared by the services, the limits and every transport."""

from __future__ import annotations


class ChatInputError(Exception):
    """Input the user can fix; the message says how."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RateLimited(ChatInputError):
    """Too many sends, or too many replies at once: wait `retry_after` seconds (HTTP 429)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class SpendingCapReached(RateLimited):
    """The person's spending cap is used up until it resets in `retry_after` seconds (HTTP 429)."""


class ServiceUnavailable(ChatInputError):
    """A part of chatsite itself (the cache or Redis, the database) is down (HTTP 503)."""

    status = 503

    def __init__(self, message: str = "", *, retry_after: int = 5) -> None:
        super().__init__(
            message or "The chat service is briefly unavailable. Try again in a few seconds."
        )
        self.retry_after = retry_after


class NotAllowed(ChatInputError):
    """The visitor may see the conversation but not do this in it (a member renaming it, or
    stopping someone else's reply): HTTP 403, with the reason in words."""

    status = 403
