"""Markdown for finished replies, and the HTML fragments every transport sends.

Markdown is rendered with markdown-it-py (CommonMark, raw HTML off, plus tables, strikethrough,
task lists and maths), code is highlighted with Pygments, and the result is sanitised with nh3
(ammonia) before it reaches the page. Streaming text is never parsed here: it is HTML-escaped and
appended as plain text; the page previews it with markdown-it (the original of markdown-it-py)
and the same plugins (static/chat/markdown.js), so the live and the final render agree. Maths
in `$…$`, `$$…$$`, `\\(…\\)` or `\\[…\\]` is left as TeX in `.math` elements (the same HTML in
both renders) that KaTeX typesets on the page (static/chat/math.js).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import nh3
from django.template.loader import render_to_string
from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.common.utils import unescapeAll
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.adapters.texmath_rules import add_texmath_rules
from chat.conversations.reads import conversation_messages, message_with_versions

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: Any) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes it as plain code
    return highlight(code, lexer, _formatter)


@lru_cache(maxsize=16)
def _last(src: str, closer: str) -> int:
    return src.rfind(closer)


def _closes_later(closer: str) -> Any:
    # Only a shortcut: an opening delimiter with no closing one after it is not maths, which the
    # regular expression would find out by reading to the end of the text, once per opening
    # delimiter (16 s for 40 kB of `\(`).
    return lambda src, begin: _last(src, closer) > begin + 1


def _rest_of_line_blank(src: str, end: int) -> bool:
    line_end = src.find("\n", end + 1)
    return not src[end + 1 : line_end if line_end >= 0 else len(src)].strip()


# TeX in \(…\) and \[…\], the delimiters GPT-4o, the o-series and DeepSeek write, with the rule
# builders of texmath (the port of markdown-it-texmath, which the page uses: the same rules, the
# same regular expressions; chat/adapters/texmath_rules.py). Its "brackets" set as is would drop
# the text after a `\[…\]` that ends mid-line and leave `\[…\]` inside a paragraph as "[…]": here
# a display formula is a block only when nothing follows it on its line, and display maths
# within a paragraph otherwise (models often start `\[` on the line after the text, with no
# blank line between).
BRACKET_MATH_INLINE: list[dict[str, Any]] = [
    {
        "name": "math_inline_bracket",
        "rex": re.compile(r"^\\\((.+?)\\\)", re.DOTALL),
        "tag": "\\(",
        "tmpl": "",
        "pre": _closes_later("\\)"),
    },
    {
        "name": "math_display_bracket",
        "rex": re.compile(r"^\\\[(.+?)\\\]", re.DOTALL),
        "tag": "\\[",
        "tmpl": "",
        "pre": _closes_later("\\]"),
    },
]
BRACKET_MATH_BLOCK: dict[str, Any] = {
    "name": "math_block_bracket",
    "rex": re.compile(r"^\\\[([\s\S]+?)\\\]", re.MULTILINE),
    "tag": "\\[",
    "tmpl": "",
    "pre": _closes_later("\\]"),
    "post": _rest_of_line_blank,
}


def _bracket_math(md: MarkdownIt) -> None:
    add_texmath_rules(md, BRACKET_MATH_INLINE, [BRACKET_MATH_BLOCK])


# The same options as the page's live preview (static/chat/markdown.js). `$5 and $6` stays
# text: a dollar next to a digit or a space does not open or close math. `$$…$$` within a line
# is display maths, as on a line of its own.
_markdown = (
    MarkdownIt("commonmark", {"html": False, "highlight": _highlight, "breaks": False})
    .enable("table")
    .enable("strikethrough")
    .use(tasklists_plugin, label=True)  # the item's text labels its checkbox
    .use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)
    .use(_bracket_math)
)
_renderer: Any = _markdown.renderer


# Every kind of maths comes out as one of three elements, whatever its delimiters, in both
# renders (static/chat/markdown.js has the same table): math.js typesets `.math` with KaTeX, in
# display mode unless it is `.inline`.
_MATH_HTML = {
    "math_inline": ("span", "math inline"),
    "math_inline_bracket": ("span", "math inline"),
    "math_inline_double": ("span", "math display"),
    "math_display_bracket": ("span", "math display"),
    "math_block": ("div", "math block"),
    "math_block_label": ("div", "math block"),  # `$$…$$ (1)`: the label is not shown
    "math_block_bracket": ("div", "math block"),
}


def _math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    tag, classes = _MATH_HTML[tokens[idx].type]
    end = "\n" if tag == "div" else ""
    return f'<{tag} class="{classes}">{escape(tokens[idx].content.strip())}</{tag}>{end}'


for _name in _MATH_HTML:
    _markdown.add_render_rule(_name, _math)
_default_fence = _renderer.rules["fence"]
_default_code_block = _renderer.rules["code_block"]


def _code_with_header(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # A header bar above the code holds its language and (added by the page) the Copy button,
    # so the button never covers a long line.
    token = tokens[idx]
    info = unescapeAll(token.info).strip() if token.info else ""
    language = info.split()[0] if info else ""
    default = _default_fence if token.type == "fence" else _default_code_block
    code = default(tokens, idx, options, env)
    return (
        '<div class="code-block"><div class="code-head">'
        f'<span class="code-lang">{escape(language) or "code"}</span></div>{code}</div>\n'
    )


_markdown.add_render_rule("fence", _code_with_header)
_markdown.add_render_rule("code_block", _code_with_header)

_ALIGN = re.compile(r"text-align:(left|right|center)")


def _alignment_as_class(state: Any) -> None:
    # Table cells say their alignment with a class, not a style attribute: a strict
    # Content-Security-Policy (style-src without 'unsafe-inline') ignores inline styles.
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrGet("style")):
            token.attrs.pop("style", None)
            if match := _ALIGN.search(str(style)):
                token.attrSet("class", f"align-{match.group(1)}")


_markdown.core.ruler.push("alignment_as_class", _alignment_as_class)


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # A model's reply must not make the browser fetch a URL by itself: an image could carry the
    # conversation to a third party. Show it as a link the reader may choose to follow.
    token = tokens[idx]
    alt = self.renderInline(token.children or [], options, env) or "image"
    return f'<a href="{escape(token.attrGet("src") or "")}">{alt}</a>'


_markdown.add_render_rule("image", _image_as_link)

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "span", "div", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "input", "label",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "ul": {"class"},
    "li": {"class"},
    "ol": {"start", "class"},
    "th": {"class"},
    "td": {"class"},
    # A code block scrolls sideways: a keyboard must be able to reach it (see
    # set_tag_attribute_values).
    "pre": {"tabindex"},
    # Task-list checkboxes, which are always disabled (see set_tag_attribute_values).
    "input": {"class", "type", "checked", "disabled"},
}


@lru_cache(maxsize=2048)
def render_markdown(text: str) -> str:
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        # Links open in a new tab, so following one never leaves the chat.
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={
            "a": {"target": "_blank"},
            "input": {"type": "checkbox", "disabled": "disabled"},
            # Only code blocks make a <pre>; one that scrolls must be focusable to be read with
            # a keyboard (axe: scrollable-region-focusable).
            "pre": {"tabindex": "0"},
        },
    )


def delta_fragment(message_id: int, seq: int, text: str) -> str:
    """Append escaped text to a streaming reply. The span carries the sequence number the text
    reaches, which is where a reconnecting client asks to resume from."""
    # No carriage return reaches here (`chat.conversations.text.DeltaCleaner` turns them into
    # newlines before a delta is published), so none can end a line early in SSE framing.
    return (
        f'<div hx-swap-oob="beforeend:#msg-{message_id}-text">'
        f'<span data-seq="{seq}">{escape(text)}</span></div>'
    )


def message_fragment(message: Any, *, oob: str = "outerHTML") -> str:
    if getattr(message, "versions", None) is None:  # not known yet: read its siblings
        message = message_with_versions(message)
    return render_to_string("chat/partials/_message.html", {"m": message, "oob": oob})


def final_fragment(message: Any) -> str:
    """A reply that has ended, replacing its streaming bubble, with its conversation's totals
    (`message.conversation` as its ending left it)."""
    return message_fragment(message) + render_to_string(
        "chat/partials/_totals.html", {"totals": message.conversation.totals(), "oob": True}
    )


def authors_context(conversation: Any, *, viewer_id: int | None) -> dict[str, Any]:
    """Whether the bubbles say who wrote them (a conversation shared with members), and who
    "You" is. Visitors cannot share, so a conversation without an owner account never is."""
    if conversation.user_id is None or viewer_id is None:
        return {"shared": False}
    # Anyone but the owner who can see it is a member: no need to ask.
    shared = viewer_id != conversation.user_id or conversation.memberships.exists()
    return {"shared": shared, "viewer_id": viewer_id}


def message_list_fragment(conversation: Any, *, viewer_id: int | None = None) -> str:
    """The whole visible branch, replacing the page's message list (after a version switch,
    an edit, a new version or a deleted turn), with the conversation's totals."""
    return render_to_string(
        "chat/partials/_message_list.html",
        {
            "messages": conversation_messages(conversation),
            "totals": conversation.totals(),
            **authors_context(conversation, viewer_id=viewer_id),
        },
    )


def error_fragment(text: str) -> str:
    """Show a problem with what the user sent next to the composer."""
    return render_to_string("chat/partials/_composer_error.html", {"error": text, "oob": True})


def started_fragment(started: Any, *, streamed: bool = False) -> str:
    """What the page needs once a reply has started: the new bubbles, the conversation id for
    the next message, and the conversation in the sidebar if it is new. `streamed`: the reply
    follows in the same response, so its bubble says the page need not ask for it."""
    context: dict[str, Any] = {
        "started": started,
        "reply_streamed": streamed,
        # The person who asked is the one whose page this is.
        **authors_context(started.conversation, viewer_id=started.assistant_message.author_id),
    }
    if started.branch_changed:
        context["messages"] = conversation_messages(started.conversation)
    return render_to_string("chat/partials/_started.html", context)
