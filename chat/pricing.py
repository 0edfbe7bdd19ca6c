"""What a reply cost, from pydantic's `genai-prices` (the price data ships in the package).

Costs are computed once, when the reply is written, and stored as integer micro-dollars with the
price data's version, so a later price change never rewrites history. A model the data does not
know has no price (None), which the page shows as "no price" rather than a made-up figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version

import genai_prices

from chat.providers.base import Usage

PRICE_DATA_VERSION = f"genai-prices {version('genai-prices')}"


@dataclass(frozen=True, slots=True)
class Price:
    cost_microusd: int | None
    version: str


def price_reply(*, provider: str, model: str, usage: Usage) -> Price:
    if provider == "demo":
        return Price(0, "demo")
    try:
        calculation = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
            ),
            model,
            provider_id=provider,
        )
    except LookupError:
        return Price(None, PRICE_DATA_VERSION)
    micro = (Decimal(calculation.total_price) * 1_000_000).quantize(Decimal(1))
    return Price(int(micro), PRICE_DATA_VERSION)
