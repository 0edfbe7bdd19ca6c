"""Probes for the proxy, the orchestrator and the monitoring: /healthz, /readyz, /metrics.

They are cheap and side-effect free: no session is read or written (so no cookie is set and no
session row is created), nothing is rate limited, and nothing is rendered.
"""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chat.telemetry import metrics

# A probe must answer before the orchestrator's own timeout (typically 1-5 s), even when a
# dependency hangs rather than refuses.
PROBE_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    """Alive: the process answers. Touches nothing else, so a database outage does not make an
    orchestrator restart workers that would recover by themselves."""
    return JsonResponse({"status": "ok"})


def _database_check() -> None:
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _redis_check() -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=PROBE_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """Ready: the database and (when configured) Redis answer. 503 names what failed."""
    checks: dict[str, str] = {}
    try:
        await sync_to_async(_database_check)()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            await _redis_check()
            checks["redis"] = "ok"
        except Exception as exc:
            metrics.redis_error("readyz")
            checks["redis"] = f"error: {type(exc).__name__}"
    else:
        checks["redis"] = "not configured"
    ready = all(value in ("ok", "not configured") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for a scraper holding CHAT_METRICS_TOKEN; 404 while it is unset."""
    token = settings.CHAT_METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off.")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse(
            "A bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.metrics_render()
    return HttpResponse(body, content_type=content_type)
