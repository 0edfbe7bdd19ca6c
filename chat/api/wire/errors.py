"""OpenAI's error shape: what every refusal of the API looks like."""

from __future__ import annotations

from typing import Any


class WireError(Exception):
    """An error OpenAI's way: an HTTP status and `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _shown(value: Any, limit: int = 100) -> str:
    """A client's value quoted in an error message, cut short: errors echo, never amplify."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> WireError:
    return WireError(400, message, param=param, code=code)
