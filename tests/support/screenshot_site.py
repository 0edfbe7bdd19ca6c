"""The site the README's screenshot scripts photograph (scripts/screenshot*.py): chatsite under
Daphne on a data directory of its own, as in the browser tests (tests/support/servers.py), its
OpenAI provider answering from the fake upstream, and Chromium to look at it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.fake_upstream import running_fake_upstream
from tests.support.servers import app_env, daphne, migrate


@contextlib.contextmanager
def screenshot_site() -> Iterator[tuple[Any, Any, str, Path]]:
    """(the fake upstream, a Chromium browser, the site's URL, its data directory); everything
    gone afterwards."""
    from playwright.sync_api import sync_playwright

    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-shots-"))
    with running_fake_upstream() as upstream:
        env = app_env(
            data_dir,
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=upstream.openai_base_url,
            OPENAI_MODELS="gpt-4.1-mini",
            CHAT_DEFAULT_MODEL="openai:gpt-4.1-mini",
        )
        try:
            migrate(env)
            with daphne(env, data_dir / "server.log") as url, sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                yield upstream, browser, url, data_dir
                browser.close()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def as_same_visitor(
    browser: Any, url: str, context: Any, *, scheme: str, width: int = 1280, height: int = 760
) -> Any:
    """A new page for the visitor of `context` (its cookies), in a colour scheme and size."""
    return browser.new_context(
        base_url=url,
        viewport={"width": width, "height": height},
        color_scheme=scheme,
        storage_state=context.storage_state(),
    ).new_page()
