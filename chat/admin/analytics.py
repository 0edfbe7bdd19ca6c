"""The usage analytics page: an admin page of its own (it has no table to list), shown in the
index through the `UsageReport` proxy model and guarded by its view permission."""

from __future__ import annotations

import csv
from collections.abc import Generator
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from chat.admin.exports import Echo, attachment
from chat.analytics import PERIODS, UsageSummary, usage_summary
from chat.models import UsageReport
from chat.money import dollars_text

DEFAULT_PERIOD = 30


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        csv_view = self.admin_site.admin_view(self.daily_csv_view)
        return [
            path("daily.csv", csv_view, name="chat_usagereport_daily_csv"),
            path(
                "",
                self.admin_site.admin_view(self.changelist_view),
                name="chat_usagereport_changelist",
            ),
        ]

    def _period(self, request: HttpRequest) -> int:
        raw = request.GET.get("days", "")
        if not raw:
            return DEFAULT_PERIOD
        if raw.isdigit() and int(raw) in PERIODS:
            return int(raw)
        messages.warning(
            request,
            f"“{raw}” is not a period this page offers (7, 30 or 90 days); "
            f"showing the last {DEFAULT_PERIOD} days.",
        )
        return DEFAULT_PERIOD

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = self._period(request)
        summary = usage_summary(days=days)
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage analytics",
            "subtitle": f"Last {days} days",
            "opts": self.opts,
            "summary": summary,
            "chart_data": summary.chart_data(),
            "periods": PERIODS,
            "days": days,
            "time_zone": settings.TIME_ZONE,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/chat/usage_report.html", context)

    def daily_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = self._period(request)
        summary = usage_summary(days=days)
        filename = f"usage-daily-{summary.start}-to-{summary.end}.csv"
        return attachment(request, _daily_csv_rows(summary), filename, "text/csv; charset=utf-8")


DAILY_COLUMNS = [
    "day",
    "replies",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_usd",
    "unpriced_replies",
    "estimated_replies",
    "errors",
    "stops",
    "budget_stops",
    "ttft_p50_ms",
    "ttft_p95_ms",
]


def _daily_csv_rows(summary: UsageSummary) -> Generator[str, None, None]:
    writer = csv.writer(Echo())
    yield writer.writerow(DAILY_COLUMNS)
    for row in summary.days:
        yield writer.writerow(
            [
                row.day.isoformat(),
                row.replies,
                row.input_tokens,
                row.output_tokens,
                row.cached_input_tokens,
                dollars_text(row.cost_microusd),
                row.unpriced_replies,
                row.estimated_replies,
                row.errors,
                row.stops,
                row.budget_stops,
                _number(row.ttft_p50_ms),
                _number(row.ttft_p95_ms),
            ]
        )


def _number(value: float | None) -> str:
    return "" if value is None else str(round(value))
