"""The usage analytics page: an admin page of its own (it has no table to list), shown in the
index through the `UsageReport` proxy model and guarded by its view permission. Any period (a
preset or a date range), narrowed by provider, model, source and owner; with one user chosen it
is that user's page (their usage over time, caps and conversations)."""

from __future__ import annotations

import csv
import datetime
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from chat.admin.exports import Echo, attachment
from chat.analytics.colours import model_colours
from chat.analytics.filters import ANONYMOUS, SIGNED_IN, UsageFilter
from chat.analytics.report import MAX_PERIOD_DAYS, PRESETS, Period, UsageSummary
from chat.analytics.summary import usage_summary
from chat.costs.budgets import spending_cap_for, spent_microusd
from chat.models import Conversation, UsageDayModel, UsageReport
from chat.money import dollars_text

DEFAULT_PERIOD = 30
DATE_HELP = "Enter a date as YYYY-MM-DD, like 2026-11-21."


class PeriodForm(forms.Form):
    """A preset (`days`) or a range (`from`, `to`, both included). A range wins over a preset."""

    days = forms.TypedChoiceField(
        choices=[(str(days), f"{days} days") for days in PRESETS], coerce=int, required=False
    )
    start = forms.DateField(
        label="From",
        required=False,
        input_formats=["%Y-%m-%d"],
        error_messages={"invalid": f"The start date is not a date. {DATE_HELP}"},
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end = forms.DateField(
        label="To",
        required=False,
        input_formats=["%Y-%m-%d"],
        error_messages={"invalid": f"The end date is not a date. {DATE_HELP}"},
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, data: Any, *, today: datetime.date) -> None:
        super().__init__(data)
        self.today = today
        self.fields["days"].error_messages["invalid_choice"] = (
            "“%(value)s” is not a period this page offers (7, 30 or 90 days)."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if self.errors or not (start or end):
            return cleaned
        end = end or self.today
        start = start or end - datetime.timedelta(days=DEFAULT_PERIOD - 1)
        if start > end:
            raise forms.ValidationError(
                f"The start date ({start:%Y-%m-%d}) is after the end date ({end:%Y-%m-%d})."
            )
        if end > self.today:
            raise forms.ValidationError(
                f"The end date ({end:%Y-%m-%d}) is in the future; the last day with figures "
                f"is today, {self.today:%Y-%m-%d}."
            )
        length = (end - start).days + 1
        if length > MAX_PERIOD_DAYS:
            raise forms.ValidationError(
                f"The range is {length:,} days long; the longest this page shows is "
                f"{MAX_PERIOD_DAYS} days."
            )
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def period(self) -> Period:
        if not self.is_valid():
            return Period.last(DEFAULT_PERIOD, self.today)
        start, end = self.cleaned_data.get("start"), self.cleaned_data.get("end")
        if start and end:
            return Period(start, end)
        return Period.last(self.cleaned_data.get("days") or DEFAULT_PERIOD, self.today)


def _owner_valid(owner: str) -> bool:
    kind, _, ident = owner.partition(":")
    return owner in ("", SIGNED_IN, ANONYMOUS) or bool(
        (kind == "user" and ident.isascii() and ident.isdigit()) or (kind == "visitor" and ident)
    )


def usage_filter_from(request: HttpRequest) -> tuple[UsageFilter, list[str]]:
    """The filters in the query string, and what was wrong with any (those are dropped)."""
    problems = []
    values = {name: request.GET.get(name, "").strip() for name in ("provider", "model", "source")}
    owner = request.GET.get("owner", "").strip()
    if values["source"] and values["source"] not in Conversation.Source.values:
        problems.append(f"“{values['source']}” is not a source (page or api).")
        values["source"] = ""
    if not _owner_valid(owner):
        problems.append(f"“{owner}” is not an owner this page knows.")
        owner = ""
    for name in ("provider", "model"):
        if len(values[name]) > 100:
            problems.append(f"The {name} name is too long.")
            values[name] = ""
    return UsageFilter(owner=owner, **values), problems


def list_query(usage_filter: UsageFilter) -> dict[str, str]:
    """The conversation list's parameters for the same filters."""
    query = {
        "provider__exact": usage_filter.provider,
        "model__exact": usage_filter.model,
        "source": usage_filter.source,
        "owner": usage_filter.owner,
    }
    return {name: value for name, value in query.items() if value}


def models_seen() -> list[tuple[str, str]]:
    """The (provider, model) pairs of the replies rolled up so far, and of conversations: the
    roll-up table holds a few rows per day, so this never reads the message table."""
    pairs = set(UsageDayModel.objects.values_list("provider", "model").distinct())
    pairs |= set(Conversation.objects.values_list("provider", "model").distinct()[:200])
    return sorted(pairs)


@dataclass
class OwnerPanel:
    """One user's page: who they are, their caps and what they spent against them."""

    user: Any
    cap: Any
    spent_today_microusd: int
    spent_month_microusd: int
    recent_conversations: list[Conversation]


def owner_panel(usage_filter: UsageFilter) -> OwnerPanel | None:
    kind, _, ident = usage_filter.owner.partition(":")
    if kind != "user":
        return None
    user = get_user_model().objects.filter(pk=int(ident)).first()
    if user is None:
        return None
    today, month = spent_microusd(user_id=user.pk, visitor_id="", today=timezone.localdate())
    return OwnerPanel(
        user=user,
        cap=spending_cap_for(user_id=user.pk),
        spent_today_microusd=today,
        spent_month_microusd=month,
        recent_conversations=list(
            Conversation.objects.filter(user=user).order_by("-updated_at")[:10]
        ),
    )


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

    def _summary(self, request: HttpRequest) -> tuple[UsageSummary, PeriodForm, UsageFilter]:
        form = PeriodForm(request.GET, today=timezone.localdate())
        usage_filter, problems = usage_filter_from(request)
        if form.is_bound and not form.is_valid():
            reasons = " ".join(str(error) for errors in form.errors.values() for error in errors)
            problems.append(f"{reasons} Showing the last {DEFAULT_PERIOD} days.")
        for problem in problems:
            messages.error(request, problem)
        return usage_summary(period=form.period(), usage_filter=usage_filter), form, usage_filter

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        summary, form, usage_filter = self._summary(request)
        period = summary.period
        today = timezone.localdate()
        preset = next(
            (days for days in PRESETS if period == Period.last(days, today)),
            None,
        )
        panel = owner_panel(usage_filter)
        filters = {
            "provider": usage_filter.provider,
            "model": usage_filter.model,
            "source": usage_filter.source,
            "owner": usage_filter.owner,
        }
        period_query = (
            {"days": str(preset)}
            if preset
            else {"start": f"{period.start:%Y-%m-%d}", "end": f"{period.end:%Y-%m-%d}"}
        )
        query = urlencode({**{k: v for k, v in filters.items() if v}, **period_query})
        conversations_url = reverse("admin:chat_conversation_changelist")
        drill = {
            "url": conversations_url,
            "query": list_query(usage_filter),
        }
        pairs = models_seen()
        context = {
            **self.admin_site.each_context(request),
            "title": (
                f"Usage of {panel.user.get_username()}" if panel is not None else "Usage analytics"
            ),
            "subtitle": f"{period.start:%d %b %Y} – {period.end:%d %b %Y}",
            "opts": self.opts,
            "summary": summary,
            "changes": summary.changes(),
            "chart_data": {
                **summary.chart_data(),
                "drill": drill,
                # Over every model seen, so each keeps its colour on every page and filter.
                "colours": model_colours(
                    [f"{provider}:{model}" for provider, model in pairs]
                    + [model.label for model in summary.models]
                ),
            },
            "presets": PRESETS,
            "preset": preset,
            "form": form,
            "period": period,
            "usage_filter": usage_filter,
            "filters": filters,
            "filter_query": urlencode({k: v for k, v in filters.items() if v}),
            "period_query": urlencode(period_query),
            "query": query,
            "list_query": urlencode(
                {**list_query(usage_filter), "active_from": f"{period.start:%Y-%m-%d}"}
            ),
            # The daily table's links add the day ("...&active_from=...").
            "drill_query": "".join(
                f"{part}&" for part in [urlencode(list_query(usage_filter))] if part
            ),
            "providers": sorted({provider for provider, _ in pairs}),
            "model_names": sorted({model for _, model in pairs}),
            "owner_label": _owner_label(usage_filter.owner, panel),
            "panel": panel,
            "time_zone": settings.TIME_ZONE,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/chat/usage_report.html", context)

    def daily_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        summary, _, _ = self._summary(request)
        filename = f"usage-daily-{summary.start}-to-{summary.end}.csv"
        return attachment(request, _daily_csv_rows(summary), filename, "text/csv; charset=utf-8")


def _owner_label(owner: str, panel: OwnerPanel | None) -> str:
    if panel is not None:
        return str(panel.user.get_username())
    kind, _, ident = owner.partition(":")
    if kind == "visitor":
        return f"anonymous · {ident[:8]}"
    if kind == "user":
        return f"deleted user #{ident}"
    return ""


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
    "ttft_p99_ms",
    "duration_p50_ms",
    "duration_p95_ms",
    "duration_p99_ms",
    "rated_good",
    "rated_bad",
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
                _number(row.ttft_p99_ms),
                _number(row.duration_p50_ms),
                _number(row.duration_p95_ms),
                _number(row.duration_p99_ms),
                row.feedback_up,
                row.feedback_down,
            ]
        )


def _number(value: float | None) -> str:
    return "" if value is None else str(round(value))
