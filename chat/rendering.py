"""Markdown for finished replies, and the HTML fragments every transport sends.

Markdown is rendered with markdown-it-py (CommonMark, raw HTML off), code is highlighted with
Pygments, and the result is sanitised with nh3 (ammonia) before it reaches the page. Streaming
text is never parsed: it is HTML-escaped and appended as plain text until the reply ends.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import nh3
from django.template.loader import render_to_string
from django.utils.html import escape
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: Any) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes it as plain code
    return highlight(code, lexer, _formatter)


_markdown = (
    MarkdownIt("commonmark", {"html": False, "highlight": _highlight, "breaks": False})
    .enable("table")
    .enable("strikethrough")
)


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # A model's reply must not make the browser fetch a URL by itself: an image could carry the
    # conversation to a third party. Show it as a link the reader may choose to follow.
    token = tokens[idx]
    alt = self.renderInline(token.children or [], options, env) or "image"
    return f'<a href="{escape(token.attrGet("src") or "")}">{alt}</a>'


_markdown.add_render_rule("image", _image_as_link)

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}


@lru_cache(maxsize=2048)
def render_markdown(text: str) -> str:
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def delta_fragment(message_id: int, seq: int, text: str) -> str:
    """Append escaped text to a streaming reply. The span carries the sequence number the text
    reaches, which is where a reconnecting client asks to resume from."""
    # A bare carriage return would end a line in SSE framing (EventSource and hx-sse split on
    # \r, \n and \r\n), so it travels as a character reference and arrives exactly.
    escaped = escape(text).replace("\r", "&#13;")
    return (
        f'<div hx-swap-oob="beforeend:#msg-{message_id}-text">'
        f'<span data-seq="{seq}">{escaped}</span></div>'
    )


def message_fragment(message: Any, *, oob: str = "outerHTML") -> str:
    return render_to_string("chat/partials/_message.html", {"m": message, "oob": oob})


def error_fragment(text: str) -> str:
    """Show a problem with what the user sent next to the composer."""
    return render_to_string("chat/partials/_composer_error.html", {"error": text, "oob": True})


def started_fragment(started: Any) -> str:
    """What the page needs once a reply has started: the new bubbles, the conversation id for
    the next message, and the conversation in the sidebar if it is new."""
    return render_to_string("chat/partials/_started.html", {"started": started})
