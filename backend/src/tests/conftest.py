"""Fixtures, in the order a test meets them.

1. Settings: a fixed signing key and a private data folder, so no test touches `.data/`.
2. Unit: the app on FakeDAOs and a FakeDatabase (no I/O at all), and its test client.
3. Databases: an embedded PostgreSQL for the whole session (never skipped), and CockroachDB:
   the running server TEST_COCKROACH_URL names, else an in-memory one from `cockroach demo`
   when a `cockroach` binary is available (skipped, with the reason, otherwise).
   `database_url` runs each live test on both; the schema is built with
   `alembic upgrade head`, so the migrations are what the tests exercise.
4. Live: the app on the real database and its test client; every app table is emptied after
   each test, so no test sees another's rows.
5. Helpers: register and log in through the API, as a client would. For live tests: users with
   a token made directly on the database (`new_caller`), the `team` fixture (an organization
   with its owner, a member, a stranger and a space), and todos made through the API and read
   back as stored.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.engine import make_url

from app.db import embedded, migrate
from app.db.database import Database
from app.db.executor import Row
from app.db.urls import normalise
from app.main import create_app
from app.models import Daos, TodoDAO
from app.security import issue_token
from app.settings import SOURCE_DIR, Settings
from tests import fakes
from tests.sql import empty_app_tables, fetch

TEST_SECRET = "test-signing-key-that-is-long-enough-0123456789"
TEST_DATABASE = "minor_illusion_test"
PASSWORD = "correct horse battery staple"


# 1. Settings ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": TEST_SECRET, "data_dir": data_dir}
    values.update(overrides)
    return Settings(**values)


# 2. Unit: fakes -----------------------------------------------------------------------------


@pytest.fixture
def fake_database(data_dir: Path) -> fakes.FakeDatabase:
    return fakes.FakeDatabase(make_settings(data_dir))


@pytest.fixture
async def app(data_dir: Path, fake_database: fakes.FakeDatabase) -> AsyncIterator[Quart]:
    fakes.reset()
    app = create_app(make_settings(data_dir), daos=fakes.fake_daos(), database=fake_database)
    async with app.test_app():
        yield app
    fakes.reset()


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


# 3. Databases -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server (dropping a leftover) and return its URL.

    Under pytest-xdist the name gets the worker's id, so workers that share a server (one
    named by TEST_COCKROACH_URL) never drop each other's databases.
    """
    if worker := os.environ.get("PYTEST_XDIST_WORKER"):
        name = f"{name}_{worker}"
    admin = normalise(server_url, "psycopg2")
    connection = psycopg2.connect(
        **admin.translate_connect_args(username="user", database="dbname"), **admin.query
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def embedded_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded.running(tmp_path_factory.mktemp("embedded")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(embedded_server_url: str) -> str:
    url = create_database(embedded_server_url, TEST_DATABASE)
    migrate.upgrade(url)
    return url


TEST_COCKROACH_URL = "TEST_COCKROACH_URL"
"""A CockroachDB server to test on instead of `cockroach demo`, e.g. the Compose cluster:
`cockroachdb://root@roach1:26257/defaultdb?sslmode=disable`. The tests create (and drop, if
left over) their own databases on it (one set per pytest-xdist worker), so one server serves
one test run at a time."""


def cockroach_binary() -> str | None:
    return os.environ.get("COCKROACH_BINARY") or shutil.which("cockroach")


def existing_cockroach_server(url: str, timeout: float = 30) -> str:
    """`url` once the server answers. It was asked for by name: a URL that is not
    CockroachDB's, or a server that stays unreachable, fails the tests instead of skipping them.
    The wait covers a cluster that is still starting beside the tests (`docker-compose up`)."""
    shown = f"{TEST_COCKROACH_URL}={make_url(url).render_as_string(hide_password=True)}"
    if make_url(url).get_backend_name() != "cockroachdb":
        raise RuntimeError(f"{shown}: not a CockroachDB URL (cockroachdb://…)")
    sync = normalise(url, "psycopg2")
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(
                **sync.translate_connect_args(username="user", database="dbname"),
                **sync.query,
                connect_timeout=2,
            ).close()
            return url
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{shown} did not answer within {timeout:g} s: {error}".strip()
                ) from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def cockroach_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """CockroachDB for the session: the server TEST_COCKROACH_URL names, or else an in-memory
    one from `cockroach demo`, on free ports."""
    if given := os.environ.get(TEST_COCKROACH_URL):
        yield existing_cockroach_server(given)
        return
    binary = cockroach_binary()
    if binary is None:
        pytest.skip(
            "no CockroachDB: set TEST_COCKROACH_URL to a running server, or put `cockroach` "
            "on PATH or set COCKROACH_BINARY, to run the live tests on CockroachDB as well"
        )
    sql_port, http_port = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("cockroach") / "demo.log"
    env = {**os.environ, "COCKROACH_SKIP_ENABLING_DIAGNOSTIC_REPORTING": "true"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                "demo",
                "--no-example-database",
                "--insecure",
                f"--sql-port={sql_port}",
                f"--http-port={http_port}",
            ],
            stdin=subprocess.PIPE,  # demo's SQL shell exits when its input closes
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"cockroachdb://root@127.0.0.1:{sql_port}/defaultdb?sslmode=disable"
    try:
        _wait_for_sql(url, process, log_path, timeout=90)
        yield url
    finally:
        if process.stdin:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_sql(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    sync = normalise(url, "psycopg2")
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"cockroach demo exited early:\n{log.read_text()[-4000:]}")
        try:
            psycopg2.connect(
                **sync.translate_connect_args(username="user", database="dbname"),
                **sync.query,
                connect_timeout=2,
            ).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"cockroach demo not ready:\n{log.read_text()[-4000:]}"
                ) from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def cockroach_url(cockroach_server_url: str) -> str:
    url = create_database(cockroach_server_url, TEST_DATABASE)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session", params=["postgresql", "cockroachdb"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each live test runs on the embedded PostgreSQL, and on CockroachDB when available."""
    fixture = "postgres_url" if request.param == "postgresql" else "cockroach_url"
    return str(request.getfixturevalue(fixture))


# 4. Live: the app on a real database ---------------------------------------------------------


@pytest.fixture
async def live_settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(data_dir, database_url=database_url)


@pytest.fixture
async def live_database(live_settings: Settings) -> AsyncIterator[Database]:
    """A started Database on the test database; empties the app tables afterwards."""
    database = Database.from_settings(live_settings)
    await database.start()
    yield database
    await database.start()  # the app stops it when it stops serving
    await empty_app_tables(database)
    await database.stop()


@pytest.fixture
async def live_app(live_settings: Settings, live_database: Database) -> AsyncIterator[Quart]:
    app = create_app(live_settings, database=live_database)
    async with app.test_app():
        yield app


@pytest.fixture
def live_client(live_app: Quart) -> Client:
    return live_app.test_client()


# 5. Helpers ---------------------------------------------------------------------------------


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def register(client: Client, name: str, password: str = PASSWORD) -> Any:
    response = await client.post("/auth/register", json={"name": name, "password": password})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def login(client: Client, name: str, password: str = PASSWORD) -> str:
    response = await client.post("/auth/login", json={"username": name, "password": password})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return str((await response.get_json())["access_token"])


async def auth_headers(client: Client, name: str | None = None) -> dict[str, str]:
    """Register a fresh user and return the Authorization header of its token."""
    name = name or unique_name()
    await register(client, name)
    return {"Authorization": f"Bearer {await login(client, name)}"}


@dataclass(frozen=True)
class Caller:
    """A user with a valid token: what a live test needs to act as them."""

    id: uuid.UUID
    name: str
    headers: dict[str, str]

    def with_key(self, key: str) -> dict[str, str]:
        """The caller's headers with an `Idempotency-Key`."""
        return {**self.headers, "Idempotency-Key": key}


async def new_caller(database: Database, daos: Daos | None = None) -> Caller:
    """A user with a valid token. Made directly rather than through register and login: those
    are covered by the auth tests, and two argon2 hashes per user (one to register, one to
    log in) would dominate the run. Works on the fakes too (pass their DAO set)."""
    name = unique_name()
    users = (daos or Daos.real()).users
    user = await database.run(lambda x: users.create(x, name, "unused-password-hash"))
    assert user is not None
    token = issue_token(user.id, database.settings.signing_key(), 900)
    return Caller(user.id, name, {"Authorization": f"Bearer {token}"})


@dataclass(frozen=True)
class Team:
    """An organization with one space: its owner, a plain member, and a stranger."""

    owner: Caller
    member: Caller
    stranger: Caller
    organization_id: str
    space_id: str


@pytest.fixture
async def team(live_client: Client, live_database: Database) -> Team:
    """A `Team`, built through the API by its owner."""
    owner, member, stranger = [await new_caller(live_database) for _ in range(3)]
    response = await live_client.post(
        "/organizations", json={"name": unique_name("org")}, headers=owner.headers
    )
    assert response.status_code == 201
    organization_id = (await response.get_json())["id"]
    response = await live_client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": member.name, "role": "member"},
        headers=owner.headers,
    )
    assert response.status_code == 201
    response = await live_client.post(
        "/spaces",
        json={"name": "inbox", "organization_id": organization_id},
        headers=owner.headers,
    )
    assert response.status_code == 201
    return Team(owner, member, stranger, organization_id, (await response.get_json())["id"])


async def create_todo(client: Client, caller: Caller, space_id: str, **fields: Any) -> Any:
    """Create a todo through the API (title "write tests" unless given) and return its JSON."""
    body = {"title": "write tests", "space_id": space_id, **fields}
    response = await client.post("/todos", json=body, headers=caller.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def stored_todo(database: Database, todo_id: str) -> Row | None:
    """The persisted row, read without any visibility rule."""
    todos = TodoDAO.__table__
    found = await fetch(database, todos.select().where(todos.c.id == uuid.UUID(todo_id)))
    return found[0] if found else None


async def todo_count(database: Database, space_id: str | uuid.UUID) -> int:
    """How many todos the space holds, counted without any visibility rule."""
    space = uuid.UUID(str(space_id))
    return await database.run(lambda x: TodoDAO.count_in_space(x, space))


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the duration of a block."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class Served:
    """`minor-illusion serve` running as a real process."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def register_and_log_in(http: httpx.Client, name: str, password: str = PASSWORD) -> str:
    """Register `name` on a served process over HTTP and log in: the token."""
    registered = http.post("/auth/register", json={"name": name, "password": password})
    assert registered.status_code == 201, registered.text
    login = http.post("/auth/login", json={"username": name, "password": password})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


@contextlib.contextmanager
def served(
    env: dict[str, str], log: Path, *args: str, ready_path: str = "/readyz"
) -> Iterator[Served]:
    """`serve` on a free port with `args`, its output in `log`: yielded once `ready_path`
    answers 200, terminated at the end (killed if it has not stopped within 30 s)."""
    port = free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
            cwd=SOURCE_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(process, f"http://127.0.0.1:{port}", ready_path, log)
        yield Served(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(
    process: subprocess.Popen[bytes], base_url: str, path: str, log: Path, timeout: float = 60
) -> httpx.Response:
    """Poll `base_url + path` until it answers 200 and return that response; fail with the
    process's log if the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server process exited early:\n{log.read_text()}")
            try:
                response = client.get(path)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{path} did not answer 200 within {timeout} s:\n{log.read_text()}")
