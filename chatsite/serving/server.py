"""Serve chatsite with Daphne on uvloop: `python -m chatsite.serving.server [daphne's options] app`.

Daphne runs Twisted on an asyncio event loop that it creates when `daphne.server` is imported;
setting uvloop's policy first makes that loop uvloop's (libuv, in C) instead of the standard
library's selector loop. Every socket read and write of the process goes through the loop, and the
standard loop re-registers a socket with epoll on most of them: uvloop cut the CPU of a bare relay
by ~15 % and chatsite's reads from a provider by ~20 % (docs/journal.md, the third pass).
Everything else is Daphne's own command line, unchanged, except that the access log never writes a
credential (chatsite/serving/daphne_server.py) and `--announce-url` prints the chat's address once
the socket listens (`make run`). CHAT_EVENT_LOOP=asyncio keeps the standard loop.
"""

from __future__ import annotations

import asyncio
import os
import sys


def event_loop_install(name: str | None = None) -> str:
    """Use uvloop for the loops created from now on, unless asked not to (or it is missing).
    Returns the name of the loop in use."""
    name = (name or os.environ.get("CHAT_EVENT_LOOP") or "uvloop").strip().lower()
    if name == "asyncio":
        return "asyncio"
    if name != "uvloop":
        raise SystemExit(f"CHAT_EVENT_LOOP must be 'uvloop' or 'asyncio', not {name!r}")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    announce_url = "--announce-url" in arguments
    arguments = [argument for argument in arguments if argument != "--announce-url"]
    event_loop_install()
    # Imported only now: importing Daphne creates its event loop. Daphne's own command line,
    # with a server whose access log redacts credentials in URLs (chatsite/serving/redaction.py).
    from chatsite.serving.daphne_server import CommandLineInterface, Server

    Server.announce_url = announce_url
    CommandLineInterface().run(arguments)


if __name__ == "__main__":
    main()
