from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import genai_prices
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.costs.pricing import PRICE_DATA_VERSION, Price, price_reply, unit_prices
from chat.models import Message, PriceOverride
from chat.money import DollarsFormField, dollars_text, format_usd
from chat.providers.base import Usage
from chat.replies import generation
from chat.replies import start as services

pytestmark = pytest.mark.django_db(transaction=True)


def library_micro(provider: str, model: str, usage: Usage) -> int:
    price = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
        ),
        model,
        provider_id=provider,
    ).total_price
    return int((Decimal(price) * 1_000_000).quantize(Decimal(1)))


def override(provider="openai", model="gpt-4.1-mini", **fields) -> PriceOverride:
    defaults = {"input_per_mtok": 1_000_000, "output_per_mtok": 4_000_000}
    return PriceOverride.objects.create(provider=provider, model=model, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-4o"), ("openai", "gpt-4.1-mini"), ("anthropic", "claude-sonnet-4-5")],
)
def test_library_prices_match_genai_prices_with_cached_tokens(provider, model):
    usage = Usage(input_tokens=12_000, output_tokens=800, cached_input_tokens=4_000)

    price = price_reply(provider=provider, model=model, usage=usage)

    assert price == Price(library_micro(provider, model, usage), PRICE_DATA_VERSION)
    uncached = price_reply(provider=provider, model=model, usage=Usage(12_000, 800))
    assert price.cost_microusd < uncached.cost_microusd  # cached input is cheaper


def test_an_override_wins_over_the_library_and_prices_cached_input():
    entry = override(
        input_per_mtok=2_000_000, output_per_mtok=8_000_000, cached_input_per_mtok=500_000
    )

    price = price_reply(
        provider="openai",
        model="gpt-4.1-mini",
        usage=Usage(input_tokens=1_000, output_tokens=500, cached_input_tokens=400),
    )

    # 600 uncached × $2/M + 400 cached × $0.50/M + 500 out × $8/M = $0.0012 + $0.0002 + $0.004
    assert price == Price(5_400, f"override #{entry.pk} $2/$8/$0.5 per 1M")


def test_cached_input_without_its_own_price_costs_the_input_price():
    override(input_per_mtok=2_000_000, output_per_mtok=0)

    price = price_reply(
        provider="openai", model="gpt-4.1-mini", usage=Usage(1_000, 0, cached_input_tokens=400)
    )

    assert price.cost_microusd == 2_000


def test_the_override_in_force_is_the_latest_valid_one():
    today = timezone.localdate()
    override(valid_from=today - timedelta(days=30), input_per_mtok=1_000_000)
    current = override(valid_from=today - timedelta(days=2), input_per_mtok=3_000_000)
    override(valid_from=today + timedelta(days=5), input_per_mtok=9_000_000)
    usage = Usage(1_000_000, 0)

    assert price_reply(provider="openai", model="gpt-4.1-mini", usage=usage).version == (
        f"override #{current.pk} $3/$4/$3 per 1M"
    )
    assert (
        price_reply(provider="openai", model="gpt-4.1-mini", usage=usage).cost_microusd == 3_000_000
    )
    earlier = price_reply(
        provider="openai", model="gpt-4.1-mini", usage=usage, on=today - timedelta(days=10)
    )
    assert earlier.cost_microusd == 1_000_000
    before_any = price_reply(
        provider="openai", model="gpt-4.1-mini", usage=usage, on=date(2000, 1, 1)
    )
    assert before_any.version == PRICE_DATA_VERSION


def test_unknown_models_have_no_price_until_staff_set_one():
    usage = Usage(1_000, 1_000)
    assert price_reply(provider="openai", model="llama3.2", usage=usage).cost_microusd is None

    override(model="llama3.2", input_per_mtok=0, output_per_mtok=0, note="self-hosted")

    assert price_reply(provider="openai", model="llama3.2", usage=usage).cost_microusd == 0


def test_the_demo_model_is_free_unless_overridden():
    usage = Usage(1_000, 1_000)
    assert price_reply(provider="demo", model="demo", usage=usage) == Price(0, "demo")
    override(provider="demo", model="demo", input_per_mtok=1_000_000, output_per_mtok=1_000_000)
    assert price_reply(provider="demo", model="demo", usage=usage).cost_microusd == 2_000


def test_unit_prices_stay_below_long_context_tiers():
    # Claude Sonnet 4.5 costs $3/M input below 200k tokens of prompt, $6/M above.
    assert unit_prices(provider="anthropic", model="claude-sonnet-4-5") == (3_000_000, 15_000_000)
    assert unit_prices(provider="openai", model="llama3.2") is None


async def test_changing_a_price_never_rewrites_past_costs(visitor, openai_upstream):
    entry = await sync_to_async(override)(input_per_mtok=1_000_000, output_per_mtok=2_000_000)
    openai_upstream.script(input_tokens=1_000, output_tokens=1_000)
    first = await sync_to_async(services.reply_start)(
        visitor=visitor, conversation_id=None, text="Hi", model_choice="openai:gpt-4.1-mini"
    )
    await asyncio.wait_for(generation.reply_generate(first.assistant_message.pk), 10)

    entry.input_per_mtok, entry.output_per_mtok = 10_000_000, 20_000_000
    await entry.asave()
    second = await sync_to_async(services.reply_start)(
        visitor=visitor,
        conversation_id=str(first.conversation.pk),
        text="Again",
        model_choice="openai:gpt-4.1-mini",
    )
    await asyncio.wait_for(generation.reply_generate(second.assistant_message.pk), 10)

    old = await Message.objects.aget(pk=first.assistant_message.pk)
    new = await Message.objects.aget(pk=second.assistant_message.pk)
    assert old.cost_microusd == 3_000  # $1/M × 1k + $2/M × 1k
    assert new.cost_microusd == 30_000
    # The version names the prices used, so an edited override does not blur the record.
    assert old.price_version == f"override #{entry.pk} $1/$2/$1 per 1M"
    assert new.price_version == f"override #{entry.pk} $10/$20/$10 per 1M"
    assert old.usage_source == Message.UsageSource.PROVIDER


@pytest.mark.parametrize(
    ("micro", "shown"),
    [(None, "no price"), (0, "$0"), (40, "<$0.0001"), (1_234, "$0.0012"), (2_500_000, "$2.50")],
)
def test_money_formats(micro, shown):
    assert format_usd(micro) == shown


def test_dollar_fields_edit_dollars_and_store_micro_dollars():
    field = DollarsFormField(required=False)
    assert field.clean("0.15") == 150_000
    assert field.clean("2.5") == 2_500_000
    assert field.clean("") is None
    assert str(field.prepare_value(75_000)) == "0.075"
    assert not field.has_changed(150_000, "0.150")
    assert field.has_changed(150_000, "0.2")
    assert dollars_text(1_250_000) == "1.250000" and dollars_text(None) == ""
    with pytest.raises(Exception, match="greater than or equal to 0"):
        field.clean("-1")


def test_staff_add_a_price_override_in_dollars(admin_client):
    response = admin_client.post(
        "/admin/chat/priceoverride/add/",
        {
            "provider": "openai",
            "model": "llama3.2",
            "input_per_mtok": "0.15",
            "output_per_mtok": "0.6",
            "cached_input_per_mtok": "",
            "valid_from": "2026-01-01",
            "note": "vLLM on our GPUs",
        },
    )

    assert response.status_code == 302
    entry = PriceOverride.objects.get()
    assert (entry.input_per_mtok, entry.output_per_mtok, entry.cached_input_per_mtok) == (
        150_000,
        600_000,
        None,
    )
    listing = admin_client.get("/admin/chat/priceoverride/").content.decode()
    assert "openai:llama3.2" in listing and "$0.15" in listing and "not known" in listing


def test_counts_the_library_cannot_price_give_no_price_instead_of_failing():
    # genai-prices raises ValueError for more cached tokens than input tokens.
    usage = Usage(input_tokens=10, output_tokens=5, cached_input_tokens=50)
    assert price_reply(provider="openai", model="gpt-4o", usage=usage).cost_microusd is not None
