"""Take the README's screenshot of managing conversations: the sidebar grouped by day, and a
reply with two versions (‹ 2/2 ›), light and dark.

    .venv/bin/python scripts/screenshot_conversations.py   → docs/screenshot-conversations-*.png

The app runs as in the browser tests (tests/support/servers.py), answering from the fake upstream;
the conversations' last activity is moved back in time in the app's SQLite database, so they fall
into Today / Yesterday / Previous 7 days / Older.
"""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from tests.support.screenshot_site import as_same_visitor, screenshot_site  # noqa: E402

DOCS = REPO / "docs"
# (first message, days since its last activity)
HISTORY = [
    ("Compare Postgres and MySQL JSON columns", 40),
    ("Birthday gift ideas for Ana", 21),
    ("Fix a flaky pytest that fails only in CI", 5),
    ("Sourdough starter feeding schedule", 3),
    ("Plan a week in Lisbon in May", 1),
    ("Summarise this meeting transcript", 0),
]
FIRST_TAKE = (
    "**WAL** (write-ahead logging) writes changes to a separate `-wal` file first, so readers "
    "keep reading the database while one writer appends.\n\n"
    "- Readers never block the writer\n- One writer at a time\n- Checkpoints fold the log back"
)
SECOND_TAKE = (
    "In **WAL mode** SQLite appends each change to a log beside the database instead of "
    "rewriting pages in place:\n\n"
    "1. A writer appends to `db.sqlite3-wal`.\n"
    "2. Readers see the database as of when they started.\n"
    "3. A checkpoint copies the log back into the main file.\n\n"
    "```sql\nPRAGMA journal_mode = WAL;\n```"
)


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    replies = page.locator("#messages > article[data-role='assistant']").count()
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    page.wait_for_function(
        """(n) => {
          const all = document.querySelectorAll("#messages > article[data-role='assistant']");
          return all.length === n && all[n - 1].dataset.status === "complete";
        }""",
        arg=replies + 1,
        timeout=30_000,
    )


def main() -> None:
    with screenshot_site() as (upstream, browser, url, data_dir):
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 860})
        page = context.new_page()
        for text, _ in HISTORY:
            upstream.script(text="Happy to help with that.")
            page.goto("/streaming-demo")
            page.get_by_text("Connected · WebSocket").wait_for()
            send(page, text)
        page.goto("/streaming-demo")
        page.get_by_text("Connected · WebSocket").wait_for()
        upstream.script(text=FIRST_TAKE, input_tokens=24, output_tokens=52)
        send(page, "Explain WAL mode in SQLite")
        upstream.script(text=SECOND_TAKE, input_tokens=24, output_tokens=71)
        page.locator("#messages > article[data-role='assistant'] .regenerate").click()
        page.locator(".version-count", has_text="2/2").wait_for()
        page.wait_for_selector("#messages article[data-status='complete'] pre")
        conversation = page.url

        now = datetime.now(UTC)
        with sqlite3.connect(data_dir / "db.sqlite3") as db:
            for text, days in HISTORY:
                moment = (now - timedelta(days=days, hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
                db.execute(
                    "UPDATE chat_conversation SET updated_at = ? WHERE title = ?",
                    (moment, text),
                )
        for scheme in ("light", "dark"):
            shot = as_same_visitor(browser, url, context, scheme=scheme)
            shot.goto(conversation)
            shot.get_by_text("Connected · WebSocket").wait_for()
            shot.screenshot(path=str(DOCS / f"screenshot-conversations-{scheme}.png"))
            shot.context.close()


if __name__ == "__main__":
    main()
