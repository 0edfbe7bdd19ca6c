"""The conversation list's filters: owner, ended reason, last-activity range, provider, model,
source and feedback. Each filters on the conversation's own columns, never the message table."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import capfirst

from chat.analytics.figures import owner_key
from chat.models import Conversation, Message

SIGNED_IN = "signed-in"
ANONYMOUS = "anonymous"
REASON_LABELS = {value: capfirst(label) for value, label in Message.EndedReason.choices}


# --- Owners: "user:<id>" or "visitor:<visitor id>", as the analytics pages link them ------------


def owner_of(conversation: Conversation) -> str:
    return owner_key(conversation.user_id, conversation.visitor_id)


def owner_label(conversation: Conversation) -> str:
    if conversation.user is not None:
        return conversation.user.get_username()
    return f"anonymous · {conversation.visitor_id[:8]}"


def _owner_q(value: str) -> Q | None:
    if value == SIGNED_IN:
        return Q(user__isnull=False)
    if value == ANONYMOUS:
        return Q(user__isnull=True)
    kind, _, ident = value.partition(":")
    if kind == "user" and ident.isascii() and ident.isdigit():
        return Q(user_id=int(ident))
    if kind == "visitor" and ident:
        return Q(user__isnull=True, visitor_id=ident)
    return None


# --- List filters ----------------------------------------------------------------------------


class DeletedFilter(admin.SimpleListFilter):
    """Conversations their owners deleted (kept for review unless CHAT_PURGE_DELETED)."""

    title = "deleted by owner"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Deleted"), ("no", "Not deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


class OwnerFilter(admin.SimpleListFilter):
    """Signed-in users, anonymous visitors, or one owner linked from elsewhere. Deliberately not
    a list of every user: that would be one query and one link per account."""

    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(SIGNED_IN, "Signed-in users"), (ANONYMOUS, "Anonymous visitors")]
        value = self.value()
        if value and value not in (SIGNED_IN, ANONYMOUS):
            choices.append((value, self._label(value)))
        return choices

    def _label(self, value: str) -> str:
        kind, _, ident = value.partition(":")
        if kind == "visitor" and ident:
            return f"visitor {ident[:8]}…"
        if kind == "user" and ident.isascii() and ident.isdigit():
            users = get_user_model().objects.filter(pk=int(ident))
            username = users.values_list("username", flat=True).first()
            if username is not None:
                return str(username)
        return f"unknown owner “{value}”"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        if not value:
            return queryset
        condition = _owner_q(value)
        return queryset.none() if condition is None else queryset.filter(condition)


class EndedReasonFilter(admin.SimpleListFilter):
    title = "ended reason"
    parameter_name = "ended_reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(REASON_LABELS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        if not value:
            return queryset
        if value not in REASON_LABELS:
            return queryset.none()
        # A substring of the stored comma-joined list: no reason's name lies inside another's
        # (a test keeps it so), and a plain LIKE reads the conversation table at half the cost
        # of wrapping every row in commas first. The message table is never read.
        return queryset.filter(ended_reasons__contains=value)


def models_in_use(request: HttpRequest) -> list[tuple[str, str]]:
    """The (provider, model) pairs conversations use, once per request. A loose index scan: one
    probe of the model index per distinct model, where `SELECT DISTINCT` would read every row."""
    cached: list[tuple[str, str]] | None = getattr(request, "_chat_models_in_use", None)
    if cached is None:
        quote = connection.ops.quote_name
        table, model, provider = (
            quote(Conversation._meta.db_table),
            quote("model"),
            quote("provider"),
        )
        # Identifiers from the model's metadata, no input.
        sql = (
            f"WITH RECURSIVE seen(name) AS ("  # noqa: S608
            f" SELECT MIN({model}) FROM {table}"
            f" UNION ALL"
            f" SELECT (SELECT MIN({model}) FROM {table} WHERE {model} > seen.name)"
            f" FROM seen WHERE seen.name IS NOT NULL"
            f") SELECT (SELECT {provider} FROM {table} WHERE {model} = seen.name LIMIT 1), name"
            f" FROM seen WHERE name IS NOT NULL"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql)
            cached = [(str(row[0]), str(row[1])) for row in cursor.fetchall()]
        setattr(request, "_chat_models_in_use", cached)  # noqa: B010 - not an HttpRequest field
    return cached


def _with_selected(values: Iterable[str], selected: str | None) -> list[tuple[str, str]]:
    choices = sorted(set(values) | ({selected} if selected else set()))
    return [(value, value) for value in choices]


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        providers = (provider for provider, _ in models_in_use(request))
        return _with_selected(providers, self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        return queryset.filter(provider=value) if value else queryset


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        provider = request.GET.get(ProviderFilter.parameter_name)
        # With a provider chosen, only its models.
        pairs = models_in_use(request)
        names = (name for used_by, name in pairs if not provider or used_by == provider)
        return _with_selected(names, self.value())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        return queryset.filter(model=value) if value else queryset


def _date_field(label: str) -> forms.DateField:
    return forms.DateField(
        label=label,
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        # Bounds keep the day's midnight convertible to UTC in every time zone.
        validators=[
            MinValueValidator(datetime.date(1900, 1, 1)),
            MaxValueValidator(datetime.date(9998, 12, 31)),
        ],
        error_messages={"invalid": "Enter a date as YYYY-MM-DD, like 2026-11-21."},
    )


class LastActivityForm(forms.Form):
    active_from = _date_field("From")
    active_to = _date_field("To")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("active_from"), cleaned.get("active_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned


def _midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


class LastActivityFilter(admin.ListFilter):
    """Conversations last active between two dates, both inclusive and either optional, in the
    site's time zone. A range instead of `date_hierarchy`, which reads the whole table for its
    links."""

    title = "last activity"
    template = "admin/chat/conversation/last_activity_filter.html"
    parameters = ("active_from", "active_to")

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.form = LastActivityForm(self.used_parameters or None)
        # The changelist may build its filters twice in one request (actions with "select all").
        reported = hasattr(request, "_chat_range_reported")
        if self.form.is_bound and not self.form.is_valid() and not reported:
            setattr(request, "_chat_range_reported", True)  # noqa: B010 - not an HttpRequest field
            problems = " ".join(
                str(error) for errors in self.form.errors.values() for error in errors
            )
            messages.error(request, f"Last activity filter: {problems} No conversations shown.")

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        if not self.form.is_bound:
            return queryset
        if not self.form.is_valid():
            return queryset.none()
        start, end = self.form.cleaned_data["active_from"], self.form.cleaned_data["active_to"]
        if start:
            queryset = queryset.filter(updated_at__gte=_midnight(start))
        if end:
            queryset = queryset.filter(updated_at__lt=_midnight(end + datetime.timedelta(days=1)))
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        # One "choice": what the template needs to draw the form and keep the other filters.
        yield {
            "selected": any(self.used_parameters.values()),
            "clear_query_string": changelist.get_query_string(remove=list(self.parameters)),
            "hidden": [
                (name, value)
                for name, values in changelist.filter_params.items()
                if name not in self.parameters
                for value in values
            ],
            "time_zone": timezone.get_current_timezone_name(),
        }


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, f"{capfirst(label)}") for value, label in Conversation.Source.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        if not value:
            return queryset
        if value not in Conversation.Source.values:
            return queryset.none()
        return queryset.filter(source=value)


FEEDBACK_ANY = Q(feedback_up__gt=0) | Q(feedback_down__gt=0)
FEEDBACK_CHOICES = {
    # Every choice lies inside the condition of the `conv_feedback_recent` partial index.
    "any": ("Any feedback", FEEDBACK_ANY),
    "up": ("Rated good", FEEDBACK_ANY & Q(feedback_up__gt=0)),
    "down": ("Rated bad", FEEDBACK_ANY & Q(feedback_down__gt=0)),
    "comment": ("With a comment", FEEDBACK_ANY & Q(feedback_comments__gt=0)),
}


class FeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in FEEDBACK_CHOICES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> Any:
        value = self.value()
        if not value:
            return queryset
        if value not in FEEDBACK_CHOICES:
            return queryset.none()
        return queryset.filter(FEEDBACK_CHOICES[value][1])
