"""chatsite/serving/server.py: Daphne's command line, on uvloop unless told otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def loop_of(repo):
    def loop_of(event_loop: str) -> subprocess.CompletedProcess[str]:
        code = (
            "import asyncio; from chatsite.serving.server import event_loop_install; "
            "print(event_loop_install(), type(asyncio.new_event_loop()).__module__)"
        )
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=repo,
            env={"CHAT_EVENT_LOOP": event_loop, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return loop_of


@pytest.mark.parametrize(
    ("event_loop", "expected"), [("", "uvloop uvloop"), ("asyncio", "asyncio asyncio.unix_events")]
)
def test_the_server_runs_daphne_on_uvloop_unless_told_otherwise(
    event_loop: str, expected: str, loop_of
) -> None:
    result = loop_of(event_loop)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected.split()


def test_an_unknown_event_loop_is_refused_in_words(loop_of) -> None:
    result = loop_of("trio")
    assert result.returncode == 1
    assert "CHAT_EVENT_LOOP must be 'uvloop' or 'asyncio'" in result.stderr


def test_every_way_of_serving_goes_through_the_launcher(repo) -> None:
    # make run, make run-prod (its supervisor) and the suite's servers: what is measured is
    # what runs.
    assert "-m chatsite.serving.server" in (repo / "Makefile").read_text()
    assert '"-m", "chatsite.serving.server"' in (repo / "scripts/run_prod.py").read_text()
    assert '"-m", "chatsite.serving.server"' in (repo / "tests/support/servers.py").read_text()


def test_what_importing_the_application_built_is_frozen_for_the_garbage_collector(repo) -> None:
    # A full collection walking Django and the app under load stalled every stream ~200 ms.
    code = "import gc, chatsite.asgi; print(gc.get_freeze_count())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50_000
