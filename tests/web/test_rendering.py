from __future__ import annotations

import time

import pytest

from chat.templatetags.chat_tags import usd
from chat.web.rendering import delta_fragment, render_markdown


@pytest.mark.parametrize(
    ("microusd", "shown"),
    [
        (None, "no price"),
        (0, "$0"),
        (10, "<$0.0001"),
        (1234, "$0.0012"),
        (1_234_567, "$1.23"),
    ],
)
def test_costs_read_honestly(microusd, shown):
    assert usd(microusd) == shown


def test_delta_fragments_escape_text_and_carry_their_sequence_number():
    fragment = delta_fragment(7, 42, '<b>"hi"</b> &')
    assert fragment == (
        '<div hx-swap-oob="beforeend:#msg-7-text"><span data-seq="42">'
        "&lt;b&gt;&quot;hi&quot;&lt;/b&gt; &amp;</span></div>"
    )


def test_markdown_highlights_code_and_keeps_unknown_languages_plain():
    html = render_markdown("```python\nx = 1\n```\n\n```nosuchlang\n<tag>\n```")
    assert '<span class="n">x</span>' in html
    assert "&lt;tag&gt;" in html


@pytest.mark.parametrize(
    ("text", "html"),
    [
        # The delimiters GPT-4o, the o-series and DeepSeek write.
        ("\\(\\alpha+\\beta\\)", '<p><span class="math inline">\\alpha+\\beta</span></p>\n'),
        ("\\[E=mc^2\\]", '<div class="math block">E=mc^2</div>\n'),
        ("\\[\nE = mc^2\n\\]\n\nNext", '<div class="math block">E = mc^2</div>\n<p>Next</p>\n'),
        # Started on the line after the text, or followed by text: display maths in the
        # paragraph, which keeps all of its words.
        (
            "So\n\\[\nx\n\\]\nthus",
            '<p>So\n<span class="math display">x</span>\nthus</p>\n',
        ),
        ("\\[x\\] and more", '<p><span class="math display">x</span> and more</p>\n'),
        # $$…$$ on one line, alone or within the text, with no `$` left over.
        ("$$x^2$$", '<div class="math block">x^2</div>\n'),
        ("so $$x^2$$ here", '<p>so <span class="math display">x^2</span> here</p>\n'),
        ("$$\nx^2\n$$", '<div class="math block">x^2</div>\n'),
        ("$e^{i\\pi}$", '<p><span class="math inline">e^{i\\pi}</span></p>\n'),
        # Prices stay text.
        ("It costs $5 and $6.", "<p>It costs $5 and $6.</p>\n"),
        # TeX is text to the HTML, whatever it holds.
        (
            "\\(<img src=x onerror=alert(1)>\\)",
            '<p><span class="math inline">&lt;img src=x onerror=alert(1)&gt;</span></p>\n',
        ),
        # In code, nothing is maths.
        ("`\\(x\\)`", "<p><code>\\(x\\)</code></p>\n"),
    ],
)
def test_maths_in_every_delimiter_models_write_becomes_a_math_element(text, html):
    assert render_markdown(text) == html


@pytest.mark.parametrize("text", ["\\(" * 20_000, "a \\[" * 20_000, "\\[\n" * 20_000])
def test_opening_maths_delimiters_with_no_closing_one_render_in_linear_time(text):
    """Each unclosed delimiter made the renderer read to the end of the text: 16 s for these, 0.5 s
    for the same text without the backslashes. Now about the same."""

    def seconds(markdown: str) -> float:
        started = time.perf_counter()
        html = render_markdown(markdown)
        assert "math" not in html
        return time.perf_counter() - started

    assert seconds(text) < 3 * seconds(text.replace("\\", "x")) + 0.5


def test_code_blocks_are_focusable_for_keyboards_that_scroll_them():
    html = render_markdown("```python\nx = 1\n```\n\n    indented code\n")
    assert html.count('<pre tabindex="0">') == 2
