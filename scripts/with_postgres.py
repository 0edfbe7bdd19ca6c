"""Run a command against a throwaway PostgreSQL server on loopback.

    python scripts/with_postgres.py -m pytest -m "not e2e"

Starts a fresh cluster in a temporary directory on a free port (as the `postgres` user when run
as root, since PostgreSQL refuses to run as root), runs the command with DATABASE_URL pointing at
it, and removes the cluster afterwards. The test suite uses it to run on PostgreSQL as well as
SQLite; in CI a missing PostgreSQL is an error, elsewhere the run is skipped with a message.
Tests that need a server of their own use `running_postgres()` (tests/deployment.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresMissing(Exception):
    pass


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port for the duration; yields its URL."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresMissing("PostgreSQL (initdb, pg_ctl) is not installed")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    workdir = tempfile.mkdtemp(prefix="chatsite-pg-")
    data = os.path.join(workdir, "data")
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
    port = _free_port()
    run = subprocess.run
    try:
        run([*prefix, initdb, "-D", data, "-U", "chatsite", "--auth=trust", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        run([*prefix, pg_ctl, "-D", data, "-o", options, "-l", os.path.join(workdir, "log"),
             "-w", "start"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 20
        while run([*prefix, _bin("pg_isready") or "pg_isready", "-h", "127.0.0.1", "-p",
                   str(port)], stdout=subprocess.DEVNULL).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.2)
        yield f"postgres://chatsite@127.0.0.1:{port}/postgres"
    finally:
        run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    try:
        with running_postgres() as url:
            env = {**os.environ, "DATABASE_URL": url}
            port = urllib.parse.urlsplit(url).port
            print(f"PostgreSQL {port}: running {' '.join(argv)}", flush=True)
            return subprocess.call([sys.executable, *argv], env=env)  # noqa: S603 - our own argv
    except PostgresMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            print(f"{exc}: cannot do the PostgreSQL run.", file=sys.stderr)
            return 1
        print(f"{exc}: skipping the PostgreSQL run.", file=sys.stderr)
        return 0
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
