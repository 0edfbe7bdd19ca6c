"""Take the README's screenshots: the chat with a finished reply (code, table, math, task list),
light and dark, at desktop (1280) and phone (390) width, plus the sign-in page.

    .venv/bin/python scripts/screenshots.py   → docs/screenshot-*.png

The app runs as in the browser tests (tests/support/servers.py), answering from the fake upstream
with the Markdown corpus of tests/e2e/data/markdown_corpus.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from tests.support.screenshot_site import as_same_visitor, screenshot_site  # noqa: E402

CORPUS = (REPO / "tests" / "e2e" / "data" / "markdown_corpus.md").read_text()
DOCS = REPO / "docs"


def main() -> None:
    with screenshot_site() as (upstream, browser, url, _data_dir):
        upstream.script(text=CORPUS, chunks=60, delay=0.01, input_tokens=420, output_tokens=380)
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.goto("/streaming-demo")
        page.fill("#message-input", "Show me everything Markdown can do in a reply")
        page.press("#message-input", "Enter")
        page.wait_for_selector("#messages article[data-role='assistant'] .katex", timeout=30_000)
        page.wait_for_selector("#messages article[data-role='assistant'][data-status='complete']")
        conversation = page.url
        for scheme in ("light", "dark"):
            for width, height, name in ((1280, 860, "desktop"), (390, 844, "phone")):
                shot = as_same_visitor(
                    browser, url, context, scheme=scheme, width=width, height=height
                )
                shot.goto(conversation)
                shot.wait_for_selector(".katex")
                shot.evaluate("document.getElementById('messages').scrollTop = 420")
                # Scrolled up, the page may offer "↓ Latest": not part of the picture.
                # (Through the CSSOM: the page's CSP refuses an injected <style>.)
                shot.evaluate(
                    "document.getElementById('jump-latest')"
                    "?.style.setProperty('display', 'none', 'important')"
                )
                shot.screenshot(path=str(DOCS / f"screenshot-{name}-{scheme}.png"))
                shot.context.close()
            login = browser.new_context(
                base_url=url, viewport={"width": 1280, "height": 720}, color_scheme=scheme
            ).new_page()
            login.goto("/accounts/login/")
            login.screenshot(path=str(DOCS / f"screenshot-sign-in-{scheme}.png"))
            login.context.close()


if __name__ == "__main__":
    main()
