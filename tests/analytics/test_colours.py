"""One colour per model on the analytics pages: distinct, and the same on every page."""

from __future__ import annotations

import itertools
import json
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from chat.analytics.colours import PALETTE, model_colours
from chat.models import Conversation

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
URL = "/admin/chat/usagereport/"


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _distance(a: str, b: str) -> float:
    # "Redmean": a cheap approximation of how different two colours look.
    (r1, g1, b1), (r2, g2, b2) = _rgb(a), _rgb(b)
    mean = (r1 + r2) / 2
    return (
        (2 + mean / 256) * (r1 - r2) ** 2
        + 4 * (g1 - g2) ** 2
        + (2 + (255 - mean) / 256) * (b1 - b2) ** 2
    ) ** 0.5


def test_the_palettes_colours_are_far_apart():
    assert min(_distance(a, b) for a, b in itertools.combinations(PALETTE, 2)) >= 100


def test_the_models_that_shared_a_colour_get_four_different_ones():
    labels = [
        "openai:gpt-4o",
        "anthropic:claude-haiku-4-5",
        "openai:gpt-4o-mini",
        "openai:gpt-4.1-mini",
    ]
    colours = model_colours(labels)
    assert len(set(colours.values())) == 4


def test_a_models_colour_does_not_depend_on_the_other_models_shown():
    alone = model_colours(["openai:gpt-4o"])
    with_others = model_colours(["openai:gpt-4o", "anthropic:claude-haiku-4-5", "demo:demo"])
    assert alone["openai:gpt-4o"] == with_others["openai:gpt-4o"]
    # An unknown model's colour comes from its name, not from the order it is given in.
    names = [f"local:model-{i}" for i in range(6)]
    assert model_colours(names) == model_colours(reversed(names))


def test_every_model_gets_its_own_colour_until_the_palette_runs_out():
    names = [f"local:model-{i}" for i in range(len(PALETTE))]
    colours = model_colours(names)
    assert len(set(colours.values())) == len(PALETTE)
    more = model_colours([*names, "local:one-too-many"])
    assert re.fullmatch(r"#[0-9a-f]{6}", more["local:one-too-many"])


def _chart_colours(page: str) -> dict[str, str]:
    data = re.search(r'<script id="usage-chart-data" type="application/json">(.*?)</script>', page)
    assert data is not None
    return json.loads(data.group(1))["colours"]


@pytest.mark.django_db
@time_machine.travel(NOW, tick=True)
def test_a_model_has_the_same_colour_on_two_analytics_pages(admin_client, rated, reply):
    # A model only Ada's page does not show: the colours still come from every model seen.
    other = Conversation.objects.create(
        visitor_id="v2" + "0" * 30, provider="anthropic", model="claude-haiku-4-5", title="v2"
    )
    reply(other, date(2026, 3, 14), cost=100)
    ada = rated["ada"]

    everyone = _chart_colours(admin_client.get(f"{URL}?days=7").content.decode())
    hers = _chart_colours(
        admin_client.get(f"{URL}?owner=user:{ada.pk}&days=30&model=gpt-4o").content.decode()
    )

    assert everyone["openai:gpt-4o"] == hers["openai:gpt-4o"]
    assert everyone == hers
    shown = ["openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "demo:demo"]
    assert len({everyone[label] for label in shown}) == len(shown)
