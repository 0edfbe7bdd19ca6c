"""The live preview of a streaming reply and the server's final render are the same DOM.

One Markdown corpus (tests/e2e/data/markdown_corpus.md: strikethrough, tables, task lists, math,
links, code, quotes, an image) streams from the fake upstream, which holds the stream open after
the last chunk: the page's live render of the whole text is captured, then the reply ends and the
server's render replaces it. Both are normalised (code highlighting is the server's alone, the
Copy buttons and the cursor are the page's, math is compared by its TeX) and must be equal.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ASSISTANT = "#messages > article[data-role='assistant']"

# The DOM under `selector` as a tree of [tag, {attributes}, children], text squashed.
_NORMALISED = """(selector) => {
  const root = document.querySelector(selector);
  if (!root) return null;
  const clone = root.cloneNode(true);
  clone.querySelectorAll(".cursor, .copy-code").forEach((n) => n.remove());
  clone.querySelectorAll("pre code").forEach((c) => { c.textContent = c.textContent; });
  clone.querySelectorAll(".math").forEach((m) => {
    m.textContent = m.dataset.tex ?? m.textContent;
    for (const name of ["data-typeset", "data-tex"]) m.removeAttribute(name);
  });
  clone.querySelectorAll("[data-enhanced]").forEach((n) => n.removeAttribute("data-enhanced"));
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.replace(/\\s+/g, " ").trim();
      return text ? text : null;
    }
    const attrs = {};
    // Boolean attributes mean the same whatever their value (checked="" or checked="checked").
    for (const a of node.attributes) {
      attrs[a.name] = ["checked", "disabled"].includes(a.name) ? true : a.value;
    }
    const children = Array.from(node.childNodes).map(walk).filter((c) => c !== null);
    return [node.tagName.toLowerCase(), attrs, children];
  };
  return Array.from(clone.childNodes).map(walk).filter((c) => c !== null);
}"""


def _flatten(tree: Any) -> list[Any]:
    out = []
    for node in tree:
        if isinstance(node, list):
            out.append(node)
            out.extend(_flatten(node[2]))
    return out


def test_live_and_final_renders_of_one_corpus_are_the_same_dom(
    new_page: Any, provider_server: tuple[str, Any], markdown_corpus
) -> None:
    url, upstream = provider_server
    upstream.script(text=markdown_corpus, chunks=50, stall_after=50)
    page = new_page(base_url=url)
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    page.fill("#message-input", "Show me all the Markdown")
    page.press("#message-input", "Enter")

    # The whole text has arrived and the stream is held open: the live render is complete.
    page.wait_for_function(
        """(length) => {
          const reply = document.querySelector("#messages article[data-status='streaming']");
          const raw = reply && reply.querySelector(".msg-text.streaming");
          const live = reply && reply.querySelector(".msg-text.live");
          return raw && live && raw.textContent.length === length
            && live.textContent.includes("that wraps.");
        }""",
        arg=len(markdown_corpus),
        timeout=20_000,
    )
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    live = page.evaluate(_NORMALISED, f"{ASSISTANT}[data-status='streaming'] .msg-text.live")
    assert page.locator(f"{ASSISTANT} .msg-text.live .katex").count() == 7  # typeset live too

    upstream.release()
    page.wait_for_selector(f"{ASSISTANT}[data-status='complete'] .msg-text.markdown .katex")
    final = page.evaluate(_NORMALISED, f"{ASSISTANT}[data-status='complete'] .msg-text.markdown")

    assert live == final

    # And the corpus really exercised every feature, in both renders.
    nodes = _flatten(final)
    tags = [node[0] for node in nodes]
    for tag in ("s", "table", "th", "td", "blockquote", "hr", "h1", "h2", "ol", "ul"):
        assert tag in tags, tag
    boxes = [n for n in nodes if n[0] == "input"]
    assert len(boxes) == 3 and all(b[1]["type"] == "checkbox" and "disabled" in b[1] for b in boxes)
    assert sum("checked" in b[1] for b in boxes) == 1
    links = [n for n in nodes if n[0] == "a"]
    assert links and all(
        a[1]["target"] == "_blank" and a[1]["rel"] == "noopener noreferrer nofollow" for a in links
    )
    assert any(a[1]["href"] == "https://example.com/chart.png" for a in links)  # image as link
    maths = [n for n in nodes if "math" in n[1].get("class", "")]
    assert [m[1]["class"] for m in maths] == [
        "math inline",  # $…$
        "math block",  # $$ on lines of their own
        "math inline",  # \(…\)
        "math block",  # \[…\] on a line of its own
        "math display",  # $$…$$ within a line
        "math display",  # \[ on the line after the text
        "math block",  # $$…$$ alone on one line
    ]
    assert [m[2] for m in maths][2:5] == [["\\alpha + \\beta"], ["E = mc^2"], ["x^2"]]
    assert "img" not in tags
    assert [n[1] for n in nodes if n[0] == "th"][1] == {"class": "align-right"}
    assert sum(1 for n in nodes if n[1].get("class") == "code-block") == 2
    prices = "it costs $5 and $6 a month."
    assert page.locator(f"{ASSISTANT} .markdown p", has_text=prices).count() == 1


def test_the_incremental_live_render_equals_a_full_render_at_every_step(
    page: Any, markdown_corpus
) -> None:
    """The live preview keeps finished blocks and rebuilds only the last one; at every length of
    the growing text its DOM is what rendering the whole text at once gives."""
    page.goto("/streaming-demo")
    mismatches = page.evaluate(
        r"""(text) => {
          const { LiveMarkdown, render } = window.chatsiteMarkdown;
          const host = document.createElement("div");
          const view = new LiveMarkdown(host);
          const shape = (root) => {
            const clone = root.cloneNode(true);
            clone.querySelectorAll(".cursor").forEach((n) => n.remove());
            clone.normalize();
            return clone.innerHTML.replace(/\s+/g, " ").replace(/> </g, "><").trim();
          };
          const bad = [];
          for (let end = 1; end <= text.length; end += 7) {
            const prefix = text.slice(0, end);
            view.update(prefix);
            const whole = document.createElement("div");
            whole.append(render(prefix));
            if (shape(host) !== shape(whole)) bad.push(prefix.length);
          }
          view.update(text);
          const whole = document.createElement("div");
          whole.append(render(text));
          if (shape(host) !== shape(whole)) bad.push(text.length);
          return bad;
        }""",
        markdown_corpus,
    )
    assert mismatches == []


WIDE_TABLE = (
    "| Framework | Requests per second | Latency | Memory | Licence | Notes |\n"
    "|---|---|---|---|---|---|\n"
    "| Framework | 80,000 | 12.5&nbsp;ms | 256&nbsp;MB | Apache-2.0 | partial support |\n"
    "| Starlette | 120,000 | 8.1&nbsp;ms | 128&nbsp;MB | BSD-3-Clause | asynchronous |\n"
)

# Words of the reply's table cells that the browser broke across two lines (at a hyphen a line
# may break, as in any text: "Apache-" and "2.0" are two words here).
_BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector + " :is(td, th)")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.textContent.matchAll(/[^\\s-]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (range.getClientRects().length > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_a_wide_table_scrolls_sideways_and_never_breaks_a_word(
    new_page: Any, provider_server: tuple[str, Any], width: int
) -> None:
    """Cells shrank below their words ("Framewor|k", "80,00|0"; one letter per line at 390 px)
    because the message text may break anywhere; a table scrolls sideways instead."""
    url, upstream = provider_server
    upstream.script(text=WIDE_TABLE * 2)
    page = new_page(base_url=url, viewport={"width": width, "height": 800})
    page.goto("/streaming-demo")
    page.get_by_text("Connected · WebSocket").wait_for()
    page.fill("#message-input", "Compare the frameworks")
    page.press("#message-input", "Enter")
    done = f"{ASSISTANT}[data-status='complete'] .msg-text.markdown"
    page.wait_for_selector(f"{done} table")

    assert page.evaluate(_BROKEN_WORDS, done) == []
    if width == 390:  # too wide for a phone: it scrolls within the message, not the page
        table = page.evaluate(
            """(s) => { const t = document.querySelector(s + " table");
                        return [t.scrollWidth, t.clientWidth, getComputedStyle(t).overflowX]; }""",
            done,
        )
        assert table[0] > table[1] and table[2] == "auto", table
        assert page.evaluate("document.documentElement.scrollWidth") <= width
