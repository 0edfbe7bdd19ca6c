"""One colour per model on the analytics pages: distinct from every other model's, and the same
on every page, period and filter.

The palette is Tableau 10 widened with five more, every pair far apart (a "redmean" distance of
at least 100 of 765) and each visible on the admin's light and dark backgrounds. The models
people use most have a colour of their own; any other model takes a free colour chosen by a
hash of its name, moving to the next free one when that is taken, over every model the
analytics have seen — so the assignment does not depend on which models one page shows.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

PALETTE = (
    "#4e79a7",  # blue
    "#f28e2b",  # orange
    "#e15759",  # red
    "#76b7b2",  # teal
    "#59a14f",  # green
    "#edc948",  # yellow
    "#b07aa1",  # purple
    "#ff9da7",  # pink
    "#9c755f",  # brown
    "#bab0ac",  # grey
    "#a0cbe8",  # light blue
    "#8cd17d",  # light green
    "#b6992d",  # olive
    "#17becf",  # cyan
    "#7f3c8d",  # plum
)

# By model name, whichever provider serves it. Models of one family (and the OpenAI and
# Anthropic models people compare) are kept far apart.
KNOWN_MODELS = {
    "gpt-4o": 0,
    "claude-haiku-4-5": 1,
    "claude-sonnet-4-5": 2,
    "gpt-4o-mini": 3,
    "gpt-4.1": 4,
    "gpt-4.1-mini": 6,
    "gpt-4.1-nano": 7,
    "claude-opus-4-1": 8,
    "demo": 9,
}
_RESERVED = frozenset(KNOWN_MODELS.values())


def _fnv1a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _beyond_palette(label: str) -> str:
    # More models than colours: a hue from the name, still stable, less distinct.
    value = _fnv1a(label)
    red, green, blue = colorsys.hls_to_rgb(
        (value % 360) / 360, 0.38 + (value >> 9) % 3 * 0.08, 0.68
    )
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def model_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour for each model label (`provider:model`). Pass every model the analytics know
    (not only those a page shows): a model's colour then depends on nothing a page chooses."""
    ordered = sorted(set(labels))
    colours: dict[str, str] = {}
    taken: set[int] = set()
    for label in ordered:
        slot = KNOWN_MODELS.get(label.partition(":")[2] or label)
        if slot is not None and slot not in taken:
            colours[label] = PALETTE[slot]
            taken.add(slot)
    for label in ordered:
        if label in colours:
            continue
        # Free colours first; then those kept for known models this site has not used.
        free = [i for i in range(len(PALETTE)) if i not in taken and i not in _RESERVED]
        free = free or [i for i in range(len(PALETTE)) if i not in taken]
        if not free:
            colours[label] = _beyond_palette(label)
            continue
        start = _fnv1a(label) % len(PALETTE)
        slot = min(free, key=lambda i: (i - start) % len(PALETTE))
        colours[label] = PALETTE[slot]
        taken.add(slot)
    return colours
