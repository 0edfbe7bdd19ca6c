from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.support import workers


@pytest.fixture(scope="session")
def live_workers() -> SimpleNamespace:
    """Real Daphne workers on one Redis, driven as a browser drives them
    (tests/support/workers.py): `MODEL`, `reply_text(n)`, `workers_env(tmp_path, redis_url,
    fake, **extra)`, `send(browser, url, text)`, `ws_connect(browser, url)`, `next_event(reader)`
    and the long-silence scenario's `SILENT_TEXT`."""
    return SimpleNamespace(
        MODEL=workers.MODEL,
        SILENT_TEXT=workers.SILENT_TEXT,
        reply_text=workers.reply_text,
        workers_env=workers.workers_env,
        send=workers.send,
        ws_connect=workers.ws_connect,
        next_event=workers.next_event,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url) -> Iterator[workers.Cluster]:
    """Two workers on one Redis and the fake upstream, for the module; the long-silence scenario
    runs from their start while the module's other tests do."""
    with workers.running_cluster(tmp_path_factory, redis_url) as cluster:
        yield cluster
