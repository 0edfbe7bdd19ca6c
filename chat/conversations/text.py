"""Text that every database stores and every page shows as meant: one place that cleans what
users type and what providers send.

PostgreSQL refuses NUL in text columns, and lone surrogates cannot be encoded as UTF-8 at all, so
a reply containing either could never be saved. Other C0 controls have no business in chat text.
Bidirectional overrides are kept out of titles, where they would reverse the sidebar's text.
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls except tab and newline, DEL, and lone surrogates (from JSON "\ud800" escapes).
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_NEWLINES = re.compile("\r\n?")
# Embeddings, overrides and isolates, plus the implicit marks: they reorder text around them.
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
# Categories that draw nothing by themselves: separators, controls, format characters
# (zero-width space and joiners), unassigned and private-use code points.
_INVISIBLE_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"}


def text_clean(text: str) -> str:
    """Input from people: newlines normalised to \\n, unstorable characters removed."""
    return _UNSTORABLE.sub("", _NEWLINES.sub("\n", text))


class DeltaCleaner:
    """Output from providers, delta by delta: newlines normalised and unstorable characters
    removed, so the text readers are sent is exactly the text that is saved. A carriage return
    at the end of a delta waits for the next one, since "\\r" + "\\n" is one line break."""

    def __init__(self) -> None:
        self._pending_cr = False

    def clean(self, text: str) -> str:
        if self._pending_cr:
            text = "\r" + text
        self._pending_cr = text.endswith("\r")
        if self._pending_cr:
            text = text[:-1]
        return _UNSTORABLE.sub("", _NEWLINES.sub("\n", text))

    def flush(self) -> str:
        """What is still held back when the reply ends."""
        pending, self._pending_cr = self._pending_cr, False
        return "\n" if pending else ""


def has_visible(text: str) -> bool:
    """Whether the text shows anything at all (a message of zero-width spaces does not)."""
    return any(unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in text)


def title_clean(text: str) -> str:
    """A title on one line, without characters that would reorder the text around it."""
    return " ".join(_BIDI_CONTROLS.sub("", text_clean(text)).split())
