"""Every colour static/chat/pygments.css gives a code token keeps a contrast of at least 4.5:1
(WCAG AA) on the code blocks' background, in the light and in the dark scheme — in the chat
(static/chat/chat.css) and in the staff transcript (static/chat/admin.css) alike."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "static" / "chat"
DARK_PREFIX = ':root[data-theme="dark"] .markdown pre'


def _luminance(colour: str) -> float:
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _token_colours(prefix: str) -> dict[str, str]:
    rules = (STATIC / "pygments.css").read_text().splitlines()
    pattern = re.compile(
        re.escape(prefix) + r" \.([\w-]+) \{[^}]*?(?<![-\w])color: (#[0-9a-fA-F]{3,6})"
    )
    return {m.group(1): m.group(2) for line in rules if (m := pattern.match(line.strip()))}


def _backgrounds(css_file: str) -> tuple[set[str], set[str]]:
    found = set(re.findall(r"--code-bg: (#[0-9a-fA-F]{6})", (STATIC / css_file).read_text()))
    light = {c for c in found if _luminance(c) > 0.5}
    return light, found - light


def test_every_code_token_keeps_4_5_to_1_on_the_code_background_in_both_schemes():
    light_tokens = _token_colours(".markdown pre")
    dark_tokens = _token_colours(DARK_PREFIX)
    assert len(light_tokens) > 20 and len(dark_tokens) > 20  # the file was read
    for css_file in ("chat.css", "admin.css"):
        light, dark = _backgrounds(css_file)
        assert light and dark, css_file
        low = [
            (css_file, token, colour, background, round(_contrast(colour, background), 2))
            for tokens, backgrounds in ((light_tokens, light), (dark_tokens, dark))
            for token, colour in tokens.items()
            for background in backgrounds
            # Whitespace tokens draw nothing.
            if token != "w" and _contrast(colour, background) < 4.5
        ]
        assert low == []
