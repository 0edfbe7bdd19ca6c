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

from tests.e2e.conftest import PageErrors
from tests.servers import REPO, app_env, daphne, migrate

pytestmark = pytest.mark.e2e

PASSWORD = "analytics-e2e-password"
CHARTS = ["chart-cost", "chart-tokens", "chart-replies", "chart-ttft"]


@pytest.fixture(scope="module")
def admin_server() -> Iterator[str]:
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
                cwd=REPO,
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
def staff_page(browser: Any, admin_server: str, page_errors: PageErrors) -> Iterator[Any]:
    context = browser.new_context(base_url=admin_server, viewport={"width": 1400, "height": 900})
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


def drawn(page: Any, canvas_id: str) -> dict[str, Any]:
    """The chart on a canvas: how many points it plots, and whether any pixel was painted."""
    return page.evaluate(
        """(id) => {
            const canvas = document.getElementById(id);
            const chart = window.Chart && window.Chart.getChart(canvas);
            const context = canvas.getContext("2d");
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
            return {
                chart: !!chart,
                labels: chart ? chart.data.labels.length : 0,
                series: chart ? chart.data.datasets.length : 0,
                painted: painted,
                width: canvas.width,
            };
        }""",
        canvas_id,
    )


def test_the_analytics_page_draws_its_charts(staff_page):
    page = staff_page
    page.click("text=Usage analytics")
    page.wait_for_selector("#chart-cost")

    for canvas_id in CHARTS:
        chart = drawn(page, canvas_id)
        assert chart["chart"], canvas_id
        assert chart["labels"] == 30, canvas_id
        assert chart["series"] >= 2, canvas_id
        assert chart["width"] > 200 and chart["painted"] > 1000, (canvas_id, chart)
    assert page.locator('[data-figure="replies"]').inner_text() not in ("", "0")
    assert page.locator(".usage-table tbody tr").count() > 5


def test_the_period_selector_and_drilling_down_to_a_users_conversations(staff_page):
    page = staff_page
    page.goto("/admin/chat/usagereport/")
    page.click("text=90 days")
    page.wait_for_url("**/usagereport/?days=90")
    assert drawn(page, "chart-replies")["labels"] == 90
    assert page.locator(".usage-periods .selected").inner_text() == "90 days"

    link = page.locator("#users-heading + table tbody a").first
    user = link.inner_text()
    link.click()
    page.wait_for_url("**/admin/chat/conversation/?owner=*")
    assert page.locator("#result_list tbody tr").count() >= 1
    assert user.split(" · ")[-1] in page.content()


def test_the_daily_table_downloads(staff_page):
    page = staff_page
    page.goto("/admin/chat/usagereport/?days=7")
    with page.expect_download() as download:
        page.click("text=Download daily table (CSV)")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("day,replies,input_tokens")
    assert len(lines) == 8
