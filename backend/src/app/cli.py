"""`minor-illusion serve | migrate | seed`: run the service and look after its database.

With DATABASE_URL unset, each command starts the embedded PostgreSQL in the data folder for
as long as it runs, and stops it when it ends (normally, on Ctrl-C or on SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog
from hypercorn.config import Config, Sockets
from pydantic import ValidationError

from app.db import embedded
from app.logs import configure_logging
from app.settings import SOURCE_DIR, ConfigError, Settings

if TYPE_CHECKING:
    from quart import Quart

# The app, SQLAlchemy and Alembic are imported where they are used, not here: with several
# workers this process only supervises them, and stays small by never loading them.

log = structlog.get_logger("minor_illusion")

APPLICATION_PATH = "app.cli:worker_app()"
DEFAULT_HYPERCORN_CONFIG = SOURCE_DIR / "hypercorn.toml"
_SHUTDOWN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
WORKER_STOP_MARGIN_S = 5.0
"""How long a worker may take, after Hypercorn's graceful timeout, to run its own clean-up."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings)
    exit_cleanly_on_sigterm()
    if args.command == "wait-for-db":
        return asyncio.run(_wait_for_database(settings, args.timeout))
    try:
        with _database(settings) as url:
            if args.command == "serve":
                return _serve(args, url, settings)
            from app.db import migrate

            if args.command == "migrate":
                migrate.upgrade(url, args.revision)
                log.info("database migrated", revision=args.revision)
                return 0
            from app.seed import seed

            if not args.no_migrate:
                migrate.upgrade(url)  # as `serve` does: seeding needs the current schema
            asyncio.run(seed(Settings(), password=args.password))
            return 0
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minor-illusion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    serve.add_argument("--host", help="interface to listen on (default from hypercorn.toml)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="Hypercorn workers (default 1: served by this process; N > 1: N worker processes)",
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_HYPERCORN_CONFIG,
        help="Hypercorn TOML config (default: %(default)s)",
    )
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations before serving"
    )
    wait = commands.add_parser(
        "wait-for-db", help="wait until DATABASE_URL answers (exit 1 after --timeout seconds)"
    )
    wait.add_argument("--timeout", type=float, default=60.0)
    migrate_cmd = commands.add_parser("migrate", help="apply migrations (alembic upgrade)")
    migrate_cmd.add_argument("revision", nargs="?", default="head")
    seed = commands.add_parser(
        "seed", help="migrate the database, then create the demo data (idempotent)"
    )
    seed.add_argument(
        "--password",
        default=os.environ.get("DEMO_PASSWORD"),
        help="password for every demo user (default: $DEMO_PASSWORD; else the users created "
        "now get the one kept in $DATA_DIR/demo_password, made up on first use)",
    )
    seed.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations before seeding"
    )
    return parser


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The database URL to use, starting the embedded server when DATABASE_URL is unset.

    The URL and the signing key are exported, so Hypercorn's worker processes (which read
    their settings from the environment) use the same database and the same key.
    """
    if settings.database_url is not None:
        settings.signing_key()
        yield settings.database_url
        return
    with embedded.running(settings.data_dir) as url:
        os.environ["DATABASE_URL"] = url
        if settings.secret_key is None:
            os.environ["SECRET_KEY"] = embedded.development_secret_key(settings.data_dir)
            log.warning(
                "SECRET_KEY is not set: signing tokens with the development key of the "
                "embedded database (set SECRET_KEY for anything but development)",
                path=str(settings.data_dir / embedded.SECRET_KEY_FILE),
            )
        yield url


def _serve(args: argparse.Namespace, url: str, settings: Settings) -> int:
    config = _ServeConfig.from_toml(args.config) if args.config.exists() else _ServeConfig()
    if args.host or args.port:
        host, _, port = config.bind[0].rpartition(":")
        config.bind = [f"{args.host or host}:{args.port or port}"]
    if args.workers is not None:
        config.workers = args.workers
    config.workers = max(config.workers, 1)
    config.root_path = settings.root_path or config.root_path
    # Hypercorn's own messages go through the app's log format instead of a second handler.
    config.errorlog = logging.getLogger("hypercorn.error")
    if config.worker_class == "uvloop" and importlib.util.find_spec("uvloop") is None:
        config.worker_class = "asyncio"
    if not args.no_migrate:
        _migrate(url, in_this_process=config.workers == 1)
    for bind in config.bind:
        log.info("serving", url=f"http://{bind}{config.root_path}/", workers=config.workers)
    if config.workers == 1:
        return _serve_in_this_process(config)
    return _serve_with_worker_processes(config)


def _migrate(url: str, *, in_this_process: bool) -> None:
    """Bring the schema to head before serving. A process that only supervises workers does
    it in a child process, so Alembic and SQLAlchemy never take up its memory."""
    if in_this_process:
        from app.db import migrate

        migrate.upgrade(url)
        return
    command = [sys.executable, "-m", "app.cli", "migrate"]
    migrated = subprocess.run(  # noqa: S603 - this interpreter, this package
        command, env={**os.environ, "DATABASE_URL": url}, check=False
    )
    if migrated.returncode != 0:
        raise SystemExit("minor-illusion serve: the migrations failed (see above); not serving")


def _serve_in_this_process(config: Config) -> int:
    """One worker is this process: no supervisor beside it holding a second copy of Python.

    Hypercorn serves the app here with this process's own handlers for SIGTERM and SIGINT:
    the live event streams end at once (with a reconnection hint), the listening sockets
    close, requests in flight finish (within Hypercorn's graceful timeout), then the app
    shuts down and closes its connections.
    """
    from app.main import create_app
    from app.memory import limit_to_one_arena

    limit_to_one_arena()
    app = create_app()
    loop_factory = None
    if config.worker_class == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve_until_signalled(app, config))
    finally:
        # The event loop took its signal handlers with it: a SIGTERM while the caller stops
        # the embedded PostgreSQL must still let it finish.
        exit_cleanly_on_sigterm()
    return 0


async def _serve_until_signalled(app: Quart, config: Config) -> None:
    from hypercorn.asyncio import serve

    from app.live import LiveChanges

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def shut_down() -> None:
        live = app.extensions.get("live")
        if isinstance(live, LiveChanges):
            live.end_all()
        stop.set()

    for signum in _SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, shut_down)
    await serve(app, config, shutdown_trigger=stop.wait)


def _serve_with_worker_processes(config: Config) -> int:
    from hypercorn.run import run

    config.application_path = APPLICATION_PATH
    # One malloc arena in the workers (glibc reads this as a process starts): see
    # app.memory. An operator's own setting wins.
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    # Ignored from birth in the workers (an ignored signal stays ignored through exec), until
    # each app serves and handles it: one that is still starting must not die of it.
    from app.signals import STREAMS_END_SIGNAL

    signal.signal(STREAMS_END_SIGNAL, signal.SIG_IGN)
    with _stop_listening_on_shutdown():
        exit_code = 0 if _stopped_cleanly(run(config)) else 1
    # The caller stops the embedded PostgreSQL next: not while a worker still serves.
    return _wait_for_workers(config.graceful_timeout + WORKER_STOP_MARGIN_S) or exit_code


def worker_app() -> Quart:
    """The app of one Hypercorn worker process, which leaves SIGTERM to the master.

    Hypercorn's master stops its workers gracefully through a shared event, and spawns them
    with SIGINT ignored so that Ctrl-C reaches only the master. SIGTERM it leaves at its
    default, so a SIGTERM sent to the whole process group (systemd, `kill -- -PGID`) killed
    every worker mid-request; and once the first worker has drained, the master itself
    sends SIGTERM to the others, which killed those still finishing requests. Ignored here,
    the master alone decides, and `_wait_for_workers` waits for every worker to drain.
    """
    from app.main import create_app
    from app.signals import STREAMS_END_SIGNAL

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The supervisor's word to end live streams (app.live) may come before the app serves,
    # when its handler is not there yet: by default it would end the process.
    signal.signal(STREAMS_END_SIGNAL, signal.SIG_IGN)
    return create_app()


def _wait_for_workers(patience_s: float) -> int:
    """Wait for the workers Hypercorn's master stopped waiting for; 1 if one failed or hung.

    After a shutdown signal the master returns as soon as one worker has exited, while the
    others may still be finishing requests (up to Hypercorn's graceful timeout, then their
    own clean-up, which closes their database connections). A worker that outlives
    `patience_s` is killed, as it ignores SIGTERM.
    """
    deadline = time.monotonic() + patience_s
    failed = False
    for worker in multiprocessing.active_children():
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.error("a worker did not stop in time; killing it", pid=worker.pid)
            worker.kill()
            worker.join()
        failed = failed or not _stopped_cleanly(worker.exitcode, worker.pid)
    return 1 if failed else 0


def _stopped_cleanly(exit_code: int | None, pid: int | None = None) -> bool:
    """Whether a worker's (or Hypercorn's, which passes a worker's on) exit code is a clean
    stop. A worker ignores SIGTERM from the moment its app is loaded (`worker_app`), so one
    that SIGTERM ended was still starting and had served nothing: during a shutdown the
    master (or a signal to the whole group) stops a worker that is still starting this way."""
    if exit_code == 0:
        return True
    if exit_code == -signal.SIGTERM:
        log.info("a worker still starting was stopped", pid=pid)
        return True
    log.error("a worker exited with an error", pid=pid, exit_code=exit_code)
    return False


_listening: list[socket.socket] = []
"""The master's copies of the listening sockets, to close when a shutdown signal arrives."""


class _ServeConfig(Config):
    """Hypercorn's config, noting the listening sockets the master creates from it."""

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        _listening.extend([*sockets.secure_sockets, *sockets.insecure_sockets])
        return sockets


@contextlib.contextmanager
def _stop_listening_on_shutdown() -> Iterator[None]:
    """Refuse new connections as soon as SIGTERM or SIGINT arrives, not once drained.

    Each worker closes its copy of the listening sockets when the shutdown starts, but
    Hypercorn's master keeps its own until every worker has finished: meanwhile the kernel
    still completed connections into the backlog, where nobody accepted them, and reset
    them when the master exited. The master's signal handlers are Hypercorn's; Python also
    writes each caught signal's number to the wakeup fd, and a thread reading it closes the
    master's copies, so the port stops listening once the workers have closed theirs.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def close_on_signal() -> None:
        while chunk := os.read(read_fd, 64):
            if any(signum in chunk for signum in _SHUTDOWN_SIGNALS):
                for sock in _listening:
                    sock.close()
                _end_streams_of_workers()
                return

    watcher = threading.Thread(target=close_on_signal, name="close-listeners", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(write_fd)  # the watcher reads end-of-file and returns, if it has not yet
        watcher.join(timeout=5)
        os.close(read_fd)


def _end_streams_of_workers() -> None:
    """Workers end their live event streams at once when told (app.live): a stream never
    finishes by itself, so it would hold up each worker's graceful shutdown to its limit."""
    from app.signals import STREAMS_END_SIGNAL

    for worker in multiprocessing.active_children():
        if worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, STREAMS_END_SIGNAL)


async def _wait_for_database(settings: Settings, patience_seconds: float) -> int:
    """Poll the database until it answers, for container entrypoints and orchestration."""
    from app.db.database import Database
    from app.db.failures import DatabaseUnavailable
    from app.models import SchemaDAO

    if settings.database_url is None:
        log.info("DATABASE_URL is unset: the embedded database needs no waiting for")
        return 0
    database = Database.from_settings(settings)
    await database.start()
    deadline = time.monotonic() + patience_seconds
    try:
        while True:
            try:
                revision = await database.run(SchemaDAO.current_revision, single_statement=True)
            except DatabaseUnavailable as error:
                if time.monotonic() >= deadline:
                    log.error("database still unreachable, giving up", waited=patience_seconds)
                    return 1
                log.info("waiting for the database", reason=str(error.__cause__ or error))
                await asyncio.sleep(1)
            else:
                log.info("database is up", revision=revision)
                return 0
    finally:
        await database.stop()


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` and `with` blocks (stopping PostgreSQL and
    child processes) run; the benchmark scripts use it too.

    While Hypercorn serves, it installs its own handler and shuts down gracefully instead.
    """

    def _handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


if __name__ == "__main__":
    sys.exit(main())
