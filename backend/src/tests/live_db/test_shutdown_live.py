"""SIGTERM to `minor-illusion serve` on its embedded PostgreSQL: a graceful stop, observed.

Deployments stop the service with SIGTERM while clients are mid-request: tini and Kubernetes
signal the master process alone, systemd (KillMode=control-group) and `kill -- -PGID` signal
the whole process group, Hypercorn's workers included. Either way the promise is the same:
every request already in flight completes, new connections are refused at once (not queued
in a backlog nobody accepts from, to be reset when the process exits), the process exits 0
within Hypercorn's graceful timeout, the workers close their database connections themselves
(the engine is disposed), and the embedded PostgreSQL is stopped by the CLI, leaving no server
and no postmaster.pid behind.

The requests in flight are of two kinds: request bodies trickled in over a few seconds, which
stay in flight for a known time whatever the machine's speed, and logins, which keep the
workers busy hashing passwords while the shutdown begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.db import embedded
from app.db.embedded import POSTGRES_DIR
from tests.conftest import PASSWORD, free_port, register_and_log_in, unique_name, wait_for_http
from tests.live_db.test_cli_live import (
    SOURCE_DIR,
    assert_postgres_stopped,
    cli_env,
    is_alive,
    postmaster_pid,
)

pytestmark = pytest.mark.live_db

GRACEFUL_TIMEOUT_S = float(
    tomllib.loads((SOURCE_DIR / "hypercorn.toml").read_text())["graceful_timeout"]
)
TRICKLE_S = (2.0, 2.4, 2.8, 3.2, 3.6, 4.0)
"""How long each slow request takes to send its body; the shutdown starts before the first
ends. Staggered, so that with several workers one of them has drained while another still
serves: that is when Hypercorn's master sends SIGTERM to the others (see app.cli.worker_app)."""
LOGINS = 12
REFUSED_WITHIN_S = 2.0
"""From SIGTERM until new connections are refused: at once, but on a busy machine (the test
files run in parallel) the processes that close the listening sockets wait for a core."""
SETTLE_S = 0.5
"""After every slow request has started sending its body, before SIGTERM: every connection
is accepted by then."""
NO_LOGIN_THROTTLING = {
    "LOGIN_MAX_FAILURES_PER_USER": "1000",
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
}
"""Logins racing each other are the load here, not guesses to throttle."""
APP_NAME = "minor-illusion"
"""The application_name the service's connections carry (app.db), as PostgreSQL logs it."""


@dataclass
class Served:
    """`minor-illusion serve` in its own process group, as a service manager starts it."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    log: Path
    workers: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def postgres_log(self) -> Path:
        return self.data_dir / POSTGRES_DIR / "log"


def _log_disconnections(data_dir: Path) -> None:
    """Make PostgreSQL log how each session ended, with the client's application name.

    A client that closes its connection says goodbye (a Terminate message) and leaves only a
    "disconnection" line; one that just vanishes (a worker killed, an engine never disposed)
    also leaves "unexpected EOF on client connection", which is logged at DEBUG1.
    """
    config = data_dir / POSTGRES_DIR / "postgresql.conf"
    with config.open("a") as file:
        file.write("\nlog_disconnections = on\nlog_min_messages = debug1\n")
        file.write("log_line_prefix = '%m [%p] %a: '\n")


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A data folder with disconnections logged, and the service on it.

    The folder is not under pytest's temporary root: as root, PostgreSQL and pg_ctl run as an
    unprivileged user who must traverse to the data, and every pytest session that starts
    (another one running alongside, say) closes that root to everyone but its owner again.
    """
    scratch = Path(tempfile.mkdtemp(prefix="minor-illusion-shutdown-"))
    data_dir = scratch / "data"
    with embedded.running(data_dir):
        pass  # initialises the database folder, so its configuration can be changed
    _log_disconnections(data_dir)
    port = free_port()
    log = scratch / "serve.log"
    workers = int(getattr(request, "param", 1))
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app.cli", "serve"),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            cwd=SOURCE_DIR,
            env={**cli_env(data_dir), "LOG_LEVEL": "INFO", **NO_LOGIN_THROTTLING},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, which the test may signal whole
        )
    served = Served(process, data_dir, port, log, workers)
    try:
        wait_for_http(process, served.base_url, "/readyz", log)
        yield served
    finally:
        _kill_group(process, data_dir)
        shutil.rmtree(scratch, ignore_errors=True)


def _python_children(pid: int) -> list[str]:
    """The command lines of the Python processes `pid` started (Hypercorn's workers and
    multiprocessing's helper; the embedded PostgreSQL is not its child but pg_ctl's)."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid and "python" in command and "resource_tracker" not in command:
            children.append(command)
    return children


def _kill_group(process: subprocess.Popen[bytes], data_dir: Path) -> None:
    """Kill whatever is left of the service's group (master, workers), then stop its
    PostgreSQL if it outlived them: pg_ctl starts the server in a session of its own."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    postgres = postmaster_pid(data_dir)
    if postgres is not None and is_alive(postgres):
        os.kill(postgres, signal.SIGINT)  # PostgreSQL's fast shutdown
        deadline = time.monotonic() + 10
        while is_alive(postgres) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_alive(postgres):
            os.kill(postgres, signal.SIGKILL)


@dataclass(frozen=True)
class Outcome:
    """What one in-flight request got, and when it finished (monotonic seconds)."""

    what: str
    status: int | str
    finished: float


async def _trickled_create(
    client: httpx.AsyncClient,
    token: str,
    space_id: str,
    title: str,
    seconds: float,
    sending: asyncio.Event,
) -> Outcome:
    """POST /todos whose JSON body arrives in pieces over `seconds`; `sending` is set once
    its connection is open and the first piece is on its way."""
    body = f'{{"title": "{title}", "space_id": "{space_id}", "content": "{"x" * 64}"}}'.encode()
    pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
    pause = seconds / len(pieces)

    async def trickle() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            sending.set()
            await asyncio.sleep(pause)

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        response = await client.post("/todos", content=trickle(), headers=headers)
        status: int | str = response.status_code
    except httpx.HTTPError as error:
        status = repr(error)
    return Outcome(f"create {title}", status, time.monotonic())


async def _login(client: httpx.AsyncClient, name: str) -> Outcome:
    try:
        response = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
        status: int | str = response.status_code
    except httpx.HTTPError as error:
        status = repr(error)
    return Outcome("login", status, time.monotonic())


async def _refused_within(port: int, seconds: float) -> float | None:
    """When connections to the port were first refused, trying every 0.1 s; None if they were
    still accepted after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _connection_refused(port):
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


async def _connection_refused(port: int) -> bool:
    """True when nothing accepts connections on the port any more; False when one is accepted
    (by the kernel into a listening socket's backlog, whether or not anyone serves it). A
    connect that is reset was not accepted either: it met the listening socket as it closed."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    writer.close()
    return False


def _setup(base_url: str) -> tuple[list[str], str, str]:
    """Users to log in (one login each) and a token and space of the first, through the API."""
    names = [unique_name() for _ in range(LOGINS)]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        token = register_and_log_in(client, names[0])
        headers = {"Authorization": f"Bearer {token}"}
        for name in names[1:]:
            registered = client.post("/auth/register", json={"name": name, "password": PASSWORD})
            assert registered.status_code == 201, registered.text
        organization = client.post(
            "/organizations", json={"name": unique_name("org")}, headers=headers
        )
        space = client.post(
            "/spaces",
            json={"name": "inbox", "organization_id": organization.json()["id"]},
            headers=headers,
        )
        assert space.status_code == 201, space.text
    return names, token, space.json()["id"]


@pytest.mark.parametrize(
    ("served", "target"),
    [(2, "master"), (1, "master"), (1, "process group")],
    indirect=["served"],
    ids=["sigterm-to-master-2-workers", "sigterm-to-the-one-process", "sigterm-to-group-1-worker"],
)
async def test_sigterm_drains_in_flight_requests_and_stops_postgres(
    served: Served, target: str
) -> None:
    names, token, space_id = _setup(served.base_url)
    postgres = postmaster_pid(served.data_dir)
    assert postgres is not None
    workers = _python_children(served.process.pid)
    assert len(workers) == (served.workers if served.workers > 1 else 0), workers

    # One client for every in-flight request, each on a connection of its own: a client per
    # request would build an SSL context each, which on a busy machine took longer than
    # SETTLE_S, so that SIGTERM came before the requests were even sent.
    limits = httpx.Limits(max_connections=len(TRICKLE_S) + len(names))
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30, limits=limits) as client:
        sending = [asyncio.Event() for _ in TRICKLE_S]
        in_flight = [
            asyncio.create_task(
                _trickled_create(client, token, space_id, f"slow-{i}", seconds, sending[i])
            )
            for i, seconds in enumerate(TRICKLE_S)
        ] + [asyncio.create_task(_login(client, name)) for name in names]
        try:
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in sending)), 30)
            await asyncio.sleep(SETTLE_S)
            assert not any(task.done() for task in in_flight[: len(TRICKLE_S)])

            signalled = time.monotonic()
            if target == "master":
                served.process.send_signal(signal.SIGTERM)
            else:
                os.killpg(served.process.pid, signal.SIGTERM)

            # New connections are refused while the requests above are still being served.
            refused_at = await _refused_within(served.port, REFUSED_WITHIN_S)
            assert refused_at is not None, f"still accepting {REFUSED_WITHIN_S} s after SIGTERM"
            for _ in range(5):
                assert await _connection_refused(served.port), "a new connection was accepted"
                refused_at = time.monotonic()
                await asyncio.sleep(0.1)

            outcomes = await asyncio.gather(*in_flight)
        finally:
            for task in in_flight:
                task.cancel()  # only those a failed check above left behind
            await asyncio.gather(*in_flight, return_exceptions=True)
    exit_code = await asyncio.to_thread(served.process.wait, GRACEFUL_TIMEOUT_S + 20)
    stopped_after = time.monotonic() - signalled
    log = served.log.read_text()

    dropped = [o for o in outcomes if o.status not in (200, 201)]
    assert not dropped, f"in-flight requests failed: {dropped}\n{log}"
    assert refused_at is not None
    assert max(o.finished for o in outcomes) > refused_at, "nothing was in flight any more"
    assert exit_code == 0, log
    assert stopped_after < GRACEFUL_TIMEOUT_S, f"took {stopped_after:.1f} s to stop"
    assert "Traceback" not in log
    assert "embedded PostgreSQL stopped" in log

    assert_postgres_stopped(served.data_dir, postgres)
    postgres_log = served.postgres_log.read_text()
    assert "received fast shutdown request" in postgres_log  # pg_ctl stop, from the CLI
    ours = [line for line in postgres_log.splitlines() if f" {APP_NAME}: " in line]
    assert any("disconnection:" in line for line in ours), "no session of the service ended"
    abandoned = [
        line for line in ours if "unexpected EOF" in line or "terminating connection" in line
    ]
    assert not abandoned, "connections were abandoned, not closed:\n" + "\n".join(abandoned)
