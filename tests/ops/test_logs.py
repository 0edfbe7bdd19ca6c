"""LOG_FORMAT=json: one JSON object per line, with the request's and the reply's ids."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import subprocess
import sys

from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from chat.telemetry.log_context import log_context_bind
from chatsite.ops.logs import JsonFormatter, RequestIdMiddleware


def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return logger, buffer, handler


def test_a_json_line_has_time_level_logger_message_and_the_reply_id():
    logger, buffer, handler = capture("chat.test_logs")

    def in_a_job() -> None:
        log_context_bind(reply_id=42)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("Reply %s failed", 42)

    try:
        contextvars.copy_context().run(in_a_job)
        logger.warning("outside the job")
    finally:
        logger.removeHandler(handler)

    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["level"] == "ERROR" and first["logger"] == "chat.test_logs"
    assert first["message"] == "Reply 42 failed" and first["reply_id"] == 42
    assert first["time"].endswith("+00:00") and "ValueError: boom" in first["exc_info"]
    assert "reply_id" not in second and second["message"] == "outside the job"


async def test_request_lines_carry_the_proxy_request_id_and_echo_it():
    logger, buffer, handler = capture("chat.test_logs.request")

    async def view(request: HttpRequest) -> HttpResponse:
        logger.warning("inside the request")
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    factory = RequestFactory()
    try:
        given = await middleware(factory.get("/", HTTP_X_REQUEST_ID="abc123def"))
        made = await middleware(factory.get("/", HTTP_X_REQUEST_ID="not allowed\nat all"))
        logger.warning("after the request")
    finally:
        logger.removeHandler(handler)

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert given["X-Request-ID"] == "abc123def" and lines[0]["request_id"] == "abc123def"
    # A header that is not a plain short token is replaced, never echoed into logs.
    assert len(made["X-Request-ID"]) == 32 and lines[1]["request_id"] == made["X-Request-ID"]
    assert "request_id" not in lines[2]


def test_log_format_json_makes_every_line_json(tmp_path, app_env, repo):
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('chat.replies.generation').warning('from the app'); "
        "logging.getLogger('django.request').error('from django')"
    )
    env = app_env(tmp_path, LOG_FORMAT="json", DJANGO_SETTINGS_MODULE="chatsite.settings")
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("chat.replies.generation", "from the app"),
        ("django.request", "from django"),
    ]
