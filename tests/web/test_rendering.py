from __future__ import annotations

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


def test_code_blocks_are_focusable_for_keyboards_that_scroll_them():
    html = render_markdown("```python\nx = 1\n```\n\n    indented code\n")
    assert html.count('<pre tabindex="0">') == 2
