from __future__ import annotations

import pytest

from tests.support import usage_history


@pytest.fixture
def history():
    """A small history by hand, today being 15 March 2026 (tests/support/usage_history.py)."""
    return usage_history.history_create()


@pytest.fixture
def rated(history):
    """The history, plus an API conversation, durations and three ratings."""
    return usage_history.rated_create(history)


@pytest.fixture(scope="session")
def reply():
    """`reply(conversation, day, reason=..., cost=..., ...)`: a question and its ended reply."""
    return usage_history.reply


@pytest.fixture(scope="session")
def figures():
    """`figures(summary)`: the analytics page's figures as plain data, to compare two ways."""
    return usage_history.figures


@pytest.fixture(scope="session")
def week():
    """`week(**filters)`: the summary of 9-15 March 2026, narrowed by the filters."""
    return usage_history.week
