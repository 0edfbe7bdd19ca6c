"""texmath's rule builders, for the server's `\\(…\\)` and `\\[…\\]` maths (chat/web/rendering.py).

mdit-py-plugins' texmath plugin registers fixed delimiter sets; the functions it builds their
parser rules with, `make_inline_func` and `make_block_func` in `mdit_py_plugins.texmath.index`,
are not exported. The page's live preview uses the same builders of markdown-it-texmath (the
original), so both renders parse brackets by the same rules. Gone after an upgrade, the
brackets stay text (the rest of Markdown and `$` maths are unaffected).
"""

from __future__ import annotations

from typing import Any

try:
    from mdit_py_plugins.texmath.index import make_block_func, make_inline_func
except ImportError:  # pragma: no cover - only after an upgrade that moved them
    make_block_func = make_inline_func = None  # type: ignore[assignment]


def add_texmath_rules(md: Any, inline: list[dict[str, Any]], block: list[dict[str, Any]]) -> bool:
    """Register texmath rules (dicts of name, rex, tag and optional pre/post) with markdown-it:
    inline ones before `escape`, block ones before `fence`, as texmath does. False when the
    builders are gone."""
    if make_inline_func is None or make_block_func is None:
        return False
    for rule in inline:
        md.inline.ruler.before("escape", rule["name"], make_inline_func(rule))  # type: ignore[arg-type]
    for rule in block:
        md.block.ruler.before("fence", rule["name"], make_block_func(rule))  # type: ignore[arg-type]
    return True
