"""What a reply cost: a staff price override when one applies, else pydantic's `genai-prices`
(the price data ships in the package; no network at run time).

Costs are computed once, when the reply is written, and stored as integer micro-dollars with the
version of the prices used, so a later price change never rewrites history. A model neither
knows has no price (None), which pages show as "no price" rather than a made-up figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib.metadata import version

import genai_prices
from django.utils import timezone

from chat.costs.staff_config import price_override_on
from chat.models import PriceOverride
from chat.money import micro_to_dollars
from chat.providers.base import Usage

logger = logging.getLogger(__name__)

PRICE_DATA_VERSION = f"genai-prices {version('genai-prices')}"
PER_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    cost_microusd: int | None
    version: str


def price_override_for(
    *, provider: str, model: str, on: date | None = None
) -> PriceOverride | None:
    """The override in force on `on` (today by default): the latest valid from then or before.
    Read through the staff configuration's short in-process cache (chat/costs/staff_config.py)."""
    return price_override_on(provider, model, on or timezone.localdate())


def price_reply(*, provider: str, model: str, usage: Usage, on: date | None = None) -> Price:
    override = price_override_for(provider=provider, model=model, on=on)
    return _priced(provider, model, usage, override)


def _priced(provider: str, model: str, usage: Usage, override: PriceOverride | None) -> Price:
    if override is not None:
        return Price(_override_cost(override, usage), override_version(override))
    if provider == "demo":
        return Price(0, "demo")
    try:
        calculation = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=min(usage.cached_input_tokens, usage.input_tokens),
                output_tokens=usage.output_tokens,
            ),
            model,
            provider_id=provider,
        )
    except LookupError:
        return Price(None, PRICE_DATA_VERSION)
    except ValueError:
        # Counts the library cannot price must not stop a reply's ending from being recorded.
        logger.warning("genai-prices could not price %s:%s for %s", provider, model, usage)
        return Price(None, PRICE_DATA_VERSION)
    micro = (Decimal(calculation.total_price) * PER_MILLION).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return Price(int(micro), PRICE_DATA_VERSION)


def override_version(override: PriceOverride) -> str:
    """Names the override and its prices, which staff may later edit: `override #7 $0.15/$0.6/
    $0.075 per 1M` (input / output / cached input)."""
    cached = override.cached_input_per_mtok
    prices = [override.input_per_mtok, override.output_per_mtok]
    prices.append(override.input_per_mtok if cached is None else cached)
    amounts = "/".join(f"${micro_to_dollars(price):f}" for price in prices)
    return f"override #{override.pk} {amounts} per 1M"


def _override_cost(override: PriceOverride, usage: Usage) -> int:
    # Prices are micro-dollars per million tokens; `input_tokens` includes the cached ones.
    cached_price = override.cached_input_per_mtok
    if cached_price is None:
        cached_price = override.input_per_mtok
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    micro_per_million = (
        (usage.input_tokens - cached) * override.input_per_mtok
        + cached * cached_price
        + usage.output_tokens * override.output_per_mtok
    )
    return int((Decimal(micro_per_million) / PER_MILLION).quantize(Decimal(1), ROUND_HALF_UP))


def unit_prices(*, provider: str, model: str, on: date | None = None) -> tuple[int, int] | None:
    """Input and output price in micro-dollars per million tokens at ordinary prompt lengths (a
    hundred thousand tokens, below long-context tiers), or None when no price is known."""
    # One lookup of the override for both prices: this runs for every message sent.
    override = price_override_for(provider=provider, model=model, on=on)
    if override is not None:
        return _sample_prices(provider, model, override)
    return library_unit_prices(provider, model)


def _sample_prices(
    provider: str, model: str, override: PriceOverride | None
) -> tuple[int, int] | None:
    sample = 100_000
    per_input = _priced(provider, model, Usage(sample, 0), override).cost_microusd
    per_output = _priced(provider, model, Usage(0, sample), override).cost_microusd
    if per_input is None or per_output is None:
        return None
    return per_input * (PER_MILLION // sample), per_output * (PER_MILLION // sample)


@lru_cache(maxsize=512)
def library_unit_prices(provider: str, model: str) -> tuple[int, int] | None:
    # genai-prices' figures change only with the package: two calculations per send saved.
    return _sample_prices(provider, model, None)
