"""The staff side in Chromium: the transcript rendered like the chat (highlighted code that keeps
its contrast in both schemes, focusable code blocks, tables that scroll), and the conversation
list's titles readable with the admin's navigation panel open."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "staff-e2e-password"
TITLE = "Comparing Python web frameworks for a small team's internal tools in 2026"
REPLY = (
    "Here is a sketch:\n\n"
    "```python\n"
    "# Count the words of a file, most common first.\n"
    "from collections import Counter\n\n"
    "@cache\n"
    "def top_words(path: str, n: int = 10) -> list[tuple[str, int]]:\n"
    '    """Return the n most common words."""\n'
    "    text = open(path).read().lower()  # small files only\n"
    "    return Counter(text.split()).most_common(n * 2 - 1)\n"
    "```\n\n"
    "| Framework | Requests per second | Memory | Notes |\n"
    "| :--- | ---: | ---: | :--- |\n"
    "| Django | 80,000 | 120 MB | batteries included, an admin, an ORM, forms and migrations |\n"
    "| FastAPI | 95,000 | 90 MB | typed request bodies, async first, OpenAPI generated |\n\n"
    "Use `Counter` for counting.\n"
)
DATA = f"""
from chat.models import Conversation, Message
chat = Conversation.objects.create(visitor_id="v" * 32, provider="openai", model="gpt-4.1-mini",
                                   title={TITLE!r})
Message.objects.create(conversation=chat, role="user", content="Which framework?")
Message.objects.create(conversation=chat, role="assistant", content={REPLY!r}, status="complete",
                       ended_reason="completed", provider="openai", model="gpt-4.1-mini",
                       input_tokens=12, output_tokens=140, cost_microusd=900, feedback=1)
chat.refresh_totals()
for i in range(3):
    other = Conversation.objects.create(visitor_id=str(i) * 32, provider="demo", model="demo",
                                        title=f"Another conversation about something, number {{i}}")
    Message.objects.create(conversation=other, role="user", content="Hi")
print(chat.pk)
"""


@pytest.fixture(scope="module")
def staff_site(
    app_env, migrate, create_superuser, manage_shell, daphne
) -> Iterator[tuple[str, str]]:
    """The app with a superuser and a conversation to review: (its URL, the conversation id)."""
    data_dir = Path(tempfile.mkdtemp(prefix="chatsite-e2e-staff-"))
    env = app_env(data_dir)
    try:
        migrate(env)
        create_superuser(env, "staff", PASSWORD)
        conversation_id = manage_shell(env, DATA).splitlines()[-1]
        with daphne(env, data_dir / "server.log") as url:
            yield url, conversation_id
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def staff_page(new_page, staff_site) -> Callable[..., Any]:
    """`staff_page(**context_options)`: a page signed in to the admin as staff."""

    def open_signed_in(**options: Any) -> Any:
        page = new_page(base_url=staff_site[0], **options)
        page.goto("/admin/login/")
        page.fill("#id_username", "staff")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        return page

    return open_signed_in


# The words of an element's text that a line break cuts in two, measured with text ranges.
BROKEN_WORDS = """(selector) => {
  const broken = [];
  const walker = document.createTreeWalker(document.querySelector(selector), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top)));
      if (tops.size > 1) broken.push(match[0]);
    }
  }
  return broken;
}"""


def _contrast(page: Any, selector: str) -> list[dict[str, Any]]:
    """Each highlighted token's colour against its code block's background, with the ratio."""
    return page.evaluate(
        """(selector) => {
          const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
          const lum = ([r, g, b]) => {
            const f = (v) => {
              v /= 255;
              return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
          };
          const pre = document.querySelector(selector);
          const bg = lum(parse(getComputedStyle(pre).backgroundColor));
          return Array.from(pre.querySelectorAll("span")).map((span) => {
            const fg = lum(parse(getComputedStyle(span).color));
            const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
            return { text: span.textContent, cls: span.className, ratio };
          });
        }""",
        selector,
    )


# The system's scheme, and the theme chosen with the admin's own toggle ("auto" follows the system).
@pytest.mark.parametrize(
    ("scheme", "chosen"), [("light", "auto"), ("dark", "auto"), ("light", "dark")]
)
def test_the_transcript_renders_code_like_the_chat_readable_in_both_schemes(
    staff_page, staff_site, scheme, chosen, run_axe, describe_violations, page_errors
):
    # axe-core (evaluated through DevTools, not served by the app) sets inline styles while it
    # measures, which the admin's CSP refuses and logs; the page itself sets none.
    page_errors.allow(r"Applying inline style violates the following Content Security Policy")
    page = staff_page(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    page.evaluate("(theme) => localStorage.setItem('theme', theme)", chosen)
    dark = scheme == "dark" or chosen == "dark"
    page.goto(f"/admin/chat/conversation/{staff_site[1]}/change/")
    pre = page.locator(".review-msg .markdown .code-block pre")
    pre.wait_for()

    tokens = _contrast(page, ".review-msg .markdown .code-block pre")
    classes = {token["cls"] for token in tokens}
    assert {"c1", "k", "mi", "nd"} <= classes and classes & {"s1", "s2", "sd"}  # highlighted
    low = [token for token in tokens if token["ratio"] < 4.5 and token["text"].strip()]
    assert low == [], low
    background = pre.evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert background == ("rgb(13, 17, 23)" if dark else "rgb(248, 250, 252)")
    assert page.evaluate("() => document.documentElement.dataset.theme") == chosen
    # A keyboard reaches the code block, which scrolls sideways.
    assert pre.get_attribute("tabindex") == "0"
    pre.focus()
    assert page.evaluate("() => document.activeElement.tagName") == "PRE"
    # No word of the table is broken across lines (the table scrolls instead).
    assert page.evaluate(BROKEN_WORDS, ".review-msg .markdown table") == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")

    violations = run_axe(page)
    assert violations == [], describe_violations(violations)


def test_titles_in_the_list_are_readable_with_the_navigation_panel_open(staff_page):
    page = staff_page(viewport={"width": 1280, "height": 900})
    page.goto("/admin/chat/conversation/")
    assert page.locator("#nav-sidebar").is_visible()  # the panel is open (the default)

    title = page.locator("#result_list .review-title", has_text="Comparing Python").first
    width = title.evaluate("(el) => el.getBoundingClientRect().width")
    shown = title.evaluate(
        "(el) => el.scrollWidth <= el.clientWidth ? el.textContent.length"
        " : Math.floor(el.textContent.length * el.clientWidth / el.scrollWidth)"
    )
    assert width >= 260 and shown >= 32, (width, shown)
    # The table still fits: nothing scrolls sideways.
    assert page.evaluate(
        "() => { const t = document.querySelector('#result_list');"
        " return t.getBoundingClientRect().right <= document.documentElement.clientWidth; }"
    )
