"""Why an upload was refused, in words the person can act on."""

from __future__ import annotations


class AttachmentRefused(Exception):
    """A file chatsite will not take; the message says why (HTTP 400 unless said otherwise)."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class AttachmentTooLarge(AttachmentRefused):
    status = 413


class AttachmentRateLimited(AttachmentRefused):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
