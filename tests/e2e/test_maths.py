"""Maths in the delimiters models actually write, typeset in Chromium wherever a reply is shown.

GPT-4o, the o-series and DeepSeek write `\\(…\\)` and `\\[…\\]`; others `$$…$$` on one line. A
reply holding all three (and prices in dollars) streams from the fake upstream, which holds the
stream open after the last chunk: the live render is checked, then the server's final render,
then both again after a reload, then the staff transcript in the admin and the read-only
snapshot a stranger opens. Everywhere: every formula is a KaTeX element, no `$` or backslash of a
delimiter is left as text, and `$5 and $6` stays text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PASSWORD = "maths-e2e-password"
ASSISTANT = "#messages > article[data-role='assistant']"

REPLY = (
    "The sum \\(\\alpha+\\beta\\) is an angle, and the famous one:\n\n"
    "\\[E=mc^2\\]\n\n"
    "$$x^2$$\n\n"
    "Within a line too: $$y^2$$ and \\[z^2\\] are displayed.\n\n"
    "It costs $5 and $6 a month."
)
FORMULAS = ["\\alpha+\\beta", "E=mc^2", "x^2", "y^2", "z^2"]
PRICES = "It costs $5 and $6 a month."

# What a reader sees under `selector`: the TeX of every formula KaTeX typeset there, the number
# of KaTeX errors, and the text outside the formulas.
_SEEN = """(selector) => {
  const root = document.querySelector(selector);
  if (!root) return null;
  const clone = root.cloneNode(true);
  const typeset = Array.from(clone.querySelectorAll(".math"))
    .filter((m) => m.querySelector(".katex"))
    .map((m) => m.dataset.tex.trim());
  const errors = clone.querySelectorAll(".katex-error").length;
  clone.querySelectorAll(".math, .cursor").forEach((m) => m.remove());
  return { typeset, errors, text: clone.textContent.replace(/\\s+/g, " ").trim() };
}"""


def assert_typeset(page: Any, selector: str) -> None:
    seen = page.evaluate(_SEEN, selector)
    assert seen is not None, selector
    assert seen["typeset"] == FORMULAS, seen
    assert seen["errors"] == 0, seen
    assert PRICES in seen["text"], seen  # the prices stayed text
    rest = seen["text"].replace(PRICES, "")
    assert "$" not in rest and "\\" not in rest, seen  # no delimiter left over
    assert "(" not in rest and "[" not in rest, seen  # "(\\alpha…" or "[ E = mc^2 ]"


@pytest.fixture(scope="module")
def site(serving_with_upstream, create_superuser) -> Iterator[tuple[str, Any]]:
    with serving_with_upstream(
        "chatsite-e2e-maths-",
        prepare=lambda env: create_superuser(env, "staff", PASSWORD),
    ) as served:
        yield served


def test_bracket_and_one_line_dollar_maths_is_typeset_live_final_in_the_admin_and_a_snapshot(
    browser: Any, site: tuple[str, Any], page_errors: Any
) -> None:
    url, upstream = site
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page_errors.watch(page)
    try:
        # Signed in (as staff, who may also read the transcript), so the reply can be shared.
        page.goto("/admin/login/")
        page.fill("#id_username", "staff")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")

        upstream.script(text=REPLY, chunks=20, stall_after=20)
        page.goto("/streaming-demo")
        page.get_by_text("Connected · WebSocket").wait_for()
        page.fill("#message-input", "Show me some maths")
        page.press("#message-input", "Enter")

        # The whole text has arrived and the stream is held open: the live render.
        live = f"{ASSISTANT}[data-status='streaming'] .msg-text.live"
        page.wait_for_function(
            """(selector) => {
              const live = document.querySelector(selector);
              return live && live.textContent.includes("a month.")
                && live.querySelectorAll(".math .katex").length === 5;
            }""",
            arg=live,
        )
        assert_typeset(page, live)

        # The server's final render replaces it.
        upstream.release()
        final = f"{ASSISTANT}[data-status='complete'] .msg-text.markdown"
        page.wait_for_selector(f"{final} .math .katex")
        assert_typeset(page, final)

        # And the same from the database, after a reload.
        page.wait_for_url("**/c/**")
        conversation_id = page.url.split("/c/")[1].split("?")[0].strip("/")
        page.reload()
        page.wait_for_selector(f"{final} .math .katex")
        assert_typeset(page, final)

        # The staff transcript.
        page.goto(f"/admin/chat/conversation/{conversation_id}/change/")
        transcript = ".review-msg-assistant .review-msg-text.markdown"
        page.wait_for_selector(f"{transcript} .math .katex")
        assert_typeset(page, transcript)

        # A read-only snapshot, opened by someone with no account.
        page.goto(f"/streaming-demo/c/{conversation_id}/sharing")
        page.click("button[value=publish]")
        page.wait_for_selector("#share-url")
        share_url = page.input_value("#share-url")
        stranger = browser.new_context(viewport={"width": 390, "height": 800})
        try:
            snapshot = stranger.new_page()
            page_errors.watch(snapshot)
            snapshot.goto(share_url)
            reply = ".snapshot-messages .msg-assistant .msg-text.markdown"
            snapshot.wait_for_selector(f"{reply} .math .katex")
            assert_typeset(snapshot, reply)
        finally:
            stranger.close()
    finally:
        context.close()
    if page_errors.errors:
        pytest.fail("The page logged errors:\n" + "\n".join(page_errors.errors), pytrace=False)


def test_the_live_render_of_unclosed_maths_delimiters_takes_linear_time(
    browser: Any, site: tuple[str, Any]
) -> None:
    """As on the server (tests/web/test_rendering.py): every opening delimiter with no closing one
    made the live preview read to the end of the text, on every frame of a stream."""
    context = browser.new_context(base_url=site[0])
    try:
        page = context.new_page()
        page.goto("/streaming-demo")
        page.wait_for_function("() => window.chatsiteMarkdown")
        timings = page.evaluate(
            """() => {
              const seconds = (text) => {
                const started = performance.now();
                const html = document.createElement("div");
                html.append(window.chatsiteMarkdown.render(text));
                if (html.querySelector(".math")) throw new Error("maths in " + text.slice(0, 9));
                return (performance.now() - started) / 1000;
              };
              return ["\\\\(", "a \\\\[", "\\\\[\\n"].map((opener) => [
                seconds(opener.repeat(20000)),
                seconds(opener.replace("\\\\", "x").repeat(20000)),
              ]);
            }"""
        )
        for with_backslashes, without in timings:
            assert with_backslashes < 3 * without + 0.5, timings
    finally:
        context.close()


# Where the delimiters meet the rest of Markdown: each renders to the same DOM on the page and
# on the server.
EDGE_CASES = [
    "- \\[x^2\\]\n- \\(y\\) in a list\n  \\[\n  z\n  \\]",
    "> \\[\n> a\n> \\]\n\n> \\[b\\]",
    "\\[x\\] (1) and text after it",
    "| a | b |\n|---|---|\n| \\(x\\) | $$y$$ |",
    "`\\(code\\)` and ```\\[x\\]``` and\n\n    \\[indented code\\]",
    "\\(unclosed and \\[unclosed",
    "a \\\\(escaped backslash\\\\) b",
    "$$x$$ (2)\n\n$$\ny\n$$\n\n$5 and $6, $$5 and $$6",
    "Text\n\\[\nx\n\\]\n\\(y\\)\n\n# \\(h\\) title",
    "**\\(b\\)** [\\(link\\)](https://example.com) ~~$$s$$~~",
    "\\[ a \\] \\[ b \\]\n\n\\[\n\\]\n\n\\(\\)",
]

_SAME_DOM = """([markdown, server]) => {
  const shape = (root) => {
    root.querySelectorAll(".math").forEach((m) => {
      m.textContent = m.dataset.tex ?? m.textContent;
      for (const name of ["data-typeset", "data-tex"]) m.removeAttribute(name);
    });
    root.normalize();
    return root.innerHTML.replace(/\\s+/g, " ").replace(/> </g, "><").trim();
  };
  const page = document.createElement("div");
  page.append(window.chatsiteMarkdown.render(markdown));
  const fromServer = document.createElement("div");
  fromServer.innerHTML = server;
  return [shape(page), shape(fromServer)];
}"""


def test_maths_next_to_other_markdown_renders_the_same_on_the_page_and_the_server(
    browser: Any, site: tuple[str, Any]
) -> None:
    from chat.web.rendering import render_markdown

    context = browser.new_context(base_url=site[0])
    try:
        page = context.new_page()
        page.goto("/streaming-demo")
        page.wait_for_function("() => window.chatsiteMarkdown")
        for markdown in EDGE_CASES:
            on_page, on_server = page.evaluate(_SAME_DOM, [markdown, render_markdown(markdown)])
            assert on_page == on_server, markdown
    finally:
        context.close()
