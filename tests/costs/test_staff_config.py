"""Price overrides and spending caps, read through a short in-process cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.costs import staff_config
from chat.costs.budgets import spending_cap_for
from chat.costs.pricing import unit_prices
from chat.models import PriceOverride, SpendingCap
from chat.replies import start as services

pytestmark = pytest.mark.django_db


def _config_queries(captured: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in captured.captured_queries
        if "chat_priceoverride" in query["sql"] or "chat_spendingcap" in query["sql"]
    ]


def test_a_send_reads_prices_and_caps_once_per_interval(visitor):
    # Billed, so a send reads the caps too.
    PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=1_000_000, output_per_mtok=1_000_000
    )

    def send() -> None:
        services.reply_start(
            visitor=visitor, conversation_id=None, text="Hello", model_choice="demo:demo"
        )

    with CaptureQueriesContext(connection) as first:
        send()
    with CaptureQueriesContext(connection) as second:
        send()

    assert len(_config_queries(first)) == 2  # the model's overrides, the caps that may apply
    assert _config_queries(second) == []


def test_an_edit_in_this_process_applies_at_once():
    assert unit_prices(provider="demo", model="demo") == (0, 0)
    assert spending_cap_for(user_id=None) is None

    override = PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=2_000_000, output_per_mtok=8_000_000
    )
    cap = SpendingCap.objects.create(scope=SpendingCap.Scope.EVERYONE, daily_cap=1_000_000)
    assert unit_prices(provider="demo", model="demo") == (2_000_000, 8_000_000)
    assert spending_cap_for(user_id=None) == cap

    override.output_per_mtok = 9_000_000
    override.save()
    cap.delete()
    assert unit_prices(provider="demo", model="demo") == (2_000_000, 9_000_000)
    assert spending_cap_for(user_id=None) is None


@pytest.fixture
def config_clock(monkeypatch):
    """The cache's monotonic clock, moved by the test: the interval passes when the test says so,
    never because the machine was slow (time-machine leaves monotonic clocks alone)."""
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(staff_config, "time", SimpleNamespace(monotonic=lambda: clock.now))
    return clock


def test_an_edit_made_by_another_worker_applies_within_the_interval(settings, config_clock):
    settings.CHAT_STAFF_CONFIG_SECONDS = 0.3
    override = PriceOverride.objects.create(
        provider="demo", model="demo", input_per_mtok=2_000_000, output_per_mtok=8_000_000
    )
    assert unit_prices(provider="demo", model="demo") == (2_000_000, 8_000_000)
    assert spending_cap_for(user_id=None) is None
    # Another process's save sends no signal here: this worker learns of it by reading again.
    PriceOverride.objects.filter(pk=override.pk).update(output_per_mtok=1_000_000)
    SpendingCap.objects.bulk_create([SpendingCap(scope="everyone", monthly_cap=5_000_000)])
    assert unit_prices(provider="demo", model="demo") == (2_000_000, 8_000_000)
    assert spending_cap_for(user_id=None) is None

    config_clock.now += 0.35

    assert unit_prices(provider="demo", model="demo") == (2_000_000, 1_000_000)
    assert spending_cap_for(user_id=None).monthly_cap == 5_000_000
