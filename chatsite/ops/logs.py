"""Logs a collector can parse (LOG_FORMAT=json), and the ids that tie their lines together.

Every line of the JSON format is one object: time (UTC, ISO 8601), level, logger, message, and,
where known, `request_id` (the proxy's X-Request-ID, or one made here, echoed in the response)
and `reply_id` (the assistant message a generation job works on), plus `exc_info` for errors.
"""

from __future__ import annotations

import json
import logging
import random
import re
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from chat.telemetry.log_context import log_context_end, log_context_get, log_context_start

# Loaded with the logging configuration, before the apps are ready: chat.web.middleware imports no
# models.
from chat.web.middleware import BothStacksMiddleware

# A request id is echoed into logs and headers: accept only a short, plain token from outside.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_RECORD_FIELDS = ("request_id", "reply_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(log_context_get())
        for name in _RECORD_FIELDS:  # passed with `extra=`
            if (value := getattr(record, name, None)) is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class RequestIdMiddleware(BothStacksMiddleware):
    """Give each request an id for its log lines: the proxy's X-Request-ID (nginx's
    $request_id, also in its access log) or a fresh one, echoed as X-Request-ID."""

    def sync_call(self, request: HttpRequest) -> HttpResponseBase:
        token = log_context_start(request_id=_request_id(request))
        try:
            return self._tag(self.get_response(request))
        finally:
            log_context_end(token)

    async def async_call(self, request: HttpRequest) -> HttpResponseBase:
        token = log_context_start(request_id=_request_id(request))
        try:
            return self._tag(await self.get_response(request))
        finally:
            log_context_end(token)

    @staticmethod
    def _tag(response: HttpResponseBase) -> HttpResponseBase:
        context = log_context_get()
        response.headers.setdefault("X-Request-ID", context.get("request_id", ""))
        return response


def _request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    # Not a secret: a log's correlation id. uuid4() reads os.urandom, a system call that hands
    # the GIL to another thread on every request; under load the event loop then waits for it.
    return given if _REQUEST_ID.match(given) else f"{random.getrandbits(128):032x}"  # noqa: S311
