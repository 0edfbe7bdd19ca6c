"""The admin's usage analytics page in Chromium, over synthetic history from `seed_usage`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "analytics-e2e-password"


@pytest.fixture(scope="module")
def admin_server(app_env, daphne, migrate, repo) -> Iterator[str]:
    """The app with 45 days of synthetic history and a superuser."""
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-e2e-admin-"))
    env = app_env(
        data_dir,
        DJANGO_SUPERUSER_USERNAME="staff",
        DJANGO_SUPERUSER_EMAIL="staff@example.com",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    try:
        migrate(env)
        for command in (
            ["seed_usage", "--replies", "1500", "--days", "45"],
            ["createsuperuser", "--noinput"],
        ):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=repo,
                env=env,
                check=True,
                timeout=300,
                stdout=subprocess.DEVNULL,
            )
        with daphne(env, data_dir / "server.log") as url:
            yield url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def viewport() -> dict[str, int]:
    return {"width": 1400, "height": 900}


@pytest.fixture
def staff_page(
    browser: Any, admin_server: str, page_errors, viewport: dict[str, int]
) -> Iterator[Any]:
    context = browser.new_context(base_url=admin_server, viewport=viewport)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page_errors.watch(page)
    page.goto("/admin/login/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()
    if page_errors.errors:
        pytest.fail("The page logged errors:\n" + "\n".join(page_errors.errors), pytrace=False)


def test_the_analytics_page_draws_its_charts(staff_page, analytics_charts, drawn):
    page = staff_page
    page.click("text=Usage analytics")
    page.wait_for_selector("#chart-cost")

    for canvas_id in analytics_charts:
        chart = drawn(page, canvas_id)
        assert chart["chart"], canvas_id
        assert chart["labels"] == 30, canvas_id
        assert chart["series"] >= 2, canvas_id
        assert chart["width"] > 200 and chart["painted"] > 1000, (canvas_id, chart)
    assert page.locator('[data-figure="replies"]').inner_text() not in ("", "0")
    assert page.locator(".usage-table tbody tr").count() > 5


def test_the_period_selector_and_drilling_down_to_a_users_conversations(staff_page, drawn):
    page = staff_page
    page.goto("/admin/chat/usagereport/")
    page.click("text=90 days")
    page.wait_for_url("**/usagereport/?days=90")
    assert drawn(page, "chart-replies")["labels"] == 90
    assert page.locator(".usage-periods .selected").inner_text() == "90 days"

    # A top user opens their own page: their usage over the same period, caps, conversations.
    link = page.locator("#users-heading + .table-scroll tbody a").first
    user = link.inner_text()
    link.click()
    page.wait_for_url("**/usagereport/?owner=*&days=90")
    assert page.locator("h1").inner_text() == f"Usage of {user}"
    assert drawn(page, "chart-cost")["labels"] == 90
    page.click(f"text=All of {user}’s conversations")
    page.wait_for_url("**/admin/chat/conversation/?owner=user*")
    assert page.locator("#result_list tbody tr").count() >= 1


def test_the_daily_table_downloads(staff_page):
    page = staff_page
    page.goto("/admin/chat/usagereport/?days=7")
    with page.expect_download() as download:
        page.click("text=Daily table (CSV)")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("day,replies,input_tokens")
    assert len(lines) == 8


def test_clicking_a_days_bar_opens_that_days_conversations_of_its_model(staff_page):
    page = staff_page
    page.goto("/admin/chat/usagereport/?days=30")
    page.wait_for_function("() => window.Chart && window.Chart.getChart('chart-cost')")
    # The middle of the tallest bar of the first model on the busiest of the last days.
    target = page.evaluate(
        """() => {
            const chart = window.Chart.getChart("chart-cost");
            const series = chart.data.datasets[0].data;
            let index = series.length - 2;
            while (index > 0 && !(series[index] > 0)) index--;
            const bar = chart.getDatasetMeta(0).data[index];
            const box = chart.canvas.getBoundingClientRect();
            return {
                x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2,
                model: chart.data.datasets[0].label,
                day: JSON.parse(document.getElementById("usage-chart-data").textContent)
                    .days[index],
            };
        }"""
    )
    page.mouse.click(target["x"], target["y"])

    page.wait_for_url("**/admin/chat/conversation/?*")
    provider, model = target["model"].split(":")
    assert f"active_from={target['day']}" in page.url and f"active_to={target['day']}" in page.url
    assert f"model__exact={model}" in page.url and f"provider__exact={provider}" in page.url
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1
    for cell in page.locator("#result_list tbody .review-model").all():
        assert cell.get_attribute("title") == target["model"]
    for cell in page.locator("#result_list tbody .field-last_activity_display").all():
        assert cell.inner_text().startswith(target["day"])


def overflow(page: Any, selector: str) -> dict[str, int]:
    return page.evaluate(
        """(selector) => {
            const box = document.querySelector(selector);
            return {scroll: box.scrollWidth, client: box.clientWidth};
        }""",
        selector,
    )


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}])
def test_the_conversation_list_fits_1280_pixels(staff_page):
    page = staff_page
    page.goto("/admin/chat/conversation/")
    assert page.locator("#result_list tbody tr").count() == 50

    # Nothing scrolls sideways: not the page, not the table's own box.
    for selector in ("html", "#changelist .results"):
        box = overflow(page, selector)
        assert box["scroll"] <= box["client"], (selector, box)
    # Every column is in view, the last one included.
    last = page.locator("#result_list thead th").last.bounding_box()
    assert last["x"] + last["width"] <= 1280
    # Titles take one line, cut with an ellipsis; the whole title is on hover.
    title = page.locator("#result_list tbody .review-title").first
    assert title.bounding_box()["height"] < 30
    assert title.get_attribute("title") == title.evaluate("(node) => node.textContent")


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}])
def test_the_analytics_page_fits_a_phone(staff_page, analytics_charts, drawn):
    page = staff_page
    page.goto("/admin/chat/usagereport/?days=30")
    page.wait_for_function("() => window.Chart && window.Chart.getChart('chart-speed')")

    box = overflow(page, "html")
    assert box["scroll"] <= box["client"] == 390, box
    for canvas_id in (*analytics_charts, "chart-feedback", "chart-speed"):
        chart = page.locator(f"#{canvas_id}").bounding_box()
        assert chart["x"] >= 0 and chart["x"] + chart["width"] <= 390, canvas_id
        assert drawn(page, canvas_id)["painted"] > 500, canvas_id
    cards = page.locator(".usage-card").all()
    assert len(cards) == 9
    assert all(card.bounding_box()["x"] + card.bounding_box()["width"] <= 390 for card in cards)


# A model's colour in each place the page draws it: the cost chart's bars and the speed chart's
# lines (by label) and the per-model table's swatches (as the browser computed them).
DRAWN_COLOURS = """() => {
  const hex = (colour) => {
    const probe = document.createElement("canvas").getContext("2d");
    probe.fillStyle = colour;
    return probe.fillStyle;
  };
  const drawn = {};
  for (const id of ["chart-cost", "chart-speed"]) {
    const chart = Chart.getChart(id);
    if (!chart) continue;
    for (const set of chart.data.datasets) {
      (drawn[set.label] ??= new Set()).add(hex(set.backgroundColor));
    }
  }
  document.querySelectorAll("[data-colour-for]").forEach((swatch) => {
    const colour = hex(getComputedStyle(swatch).backgroundColor);
    (drawn[swatch.dataset.colourFor] ??= new Set()).add(colour);
  });
  return Object.fromEntries(Object.entries(drawn).map(([label, set]) => [label, [...set]]));
}"""


def _drawn_colours(page: Any, query: str) -> dict[str, str]:
    page.goto(f"/admin/chat/usagereport/?{query}")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-cost')")
    drawn = page.evaluate(DRAWN_COLOURS)
    assert all(len(colours) == 1 for colours in drawn.values()), drawn  # one colour everywhere
    return {label: colours[0] for label, colours in drawn.items()}


def test_each_model_has_its_own_colour_the_same_on_every_page(staff_page):
    page = staff_page
    everyone = _drawn_colours(page, "days=30")
    models = ["openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5",
              "anthropic:claude-sonnet-4-5", "demo:demo", "openai:llama3.1-local"]  # fmt: skip
    assert set(models) <= set(everyone), everyone
    assert len({everyone[label] for label in models}) == len(models), everyone

    narrowed = _drawn_colours(page, "days=7&provider=anthropic")
    assert set(narrowed) == {"anthropic:claude-haiku-4-5", "anthropic:claude-sonnet-4-5"}
    assert all(narrowed[label] == everyone[label] for label in narrowed), (narrowed, everyone)
