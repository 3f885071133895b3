"""`minor-illusion` as a user runs it: a real process on the embedded PostgreSQL.

Checks the promises of the embedded default: migrate and seed work, `serve` answers, data and
the development signing key survive a restart (also across several workers), and SIGTERM or
Ctrl-C stop PostgreSQL with the service, leaving no orphaned server behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db.embedded import POSTGRES_DIR, SECRET_KEY_FILE
from app.seed import DEMO_PASSWORD_FILE, OWNER, demo_password
from tests.conftest import environment, free_port, wait_for_http

pytestmark = pytest.mark.live_db

SOURCE_DIR = Path(__file__).resolve().parents[2]
DEMO_PASSWORD = "demo password for the test"


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env.update(DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", **extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=SOURCE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """`minor-illusion serve` in a child process, on a free port."""

    def __init__(self, data_dir: Path, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.root = env.get("ROOT_PATH", "")
        self.log = log
        with log.open("w") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *args],
                cwd=SOURCE_DIR,
                env=cli_env(data_dir, **env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}{self.root}", timeout=10)

    def wait_until_healthy(self) -> None:
        wait_for_http(self.process, str(self.client.base_url), "/healthz", self.log)

    def stop(self, signum: int, timeout: float = 30) -> int:
        self.client.close()
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"server ignored signal {signum}:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / POSTGRES_DIR / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_postgres_stopped(data_dir: Path, pid: int) -> None:
    deadline = time.monotonic() + 10
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_alive(pid), "the embedded PostgreSQL was left running"
    assert postmaster_pid(data_dir) is None


def test_seed_migrates_a_new_database_and_keeps_the_password_the_notebooks_read(
    tmp_path: Path, servers: list[Server]
) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    env.pop("DEMO_PASSWORD", None)

    seeded = run_cli("seed", env=env)  # never migrated: seed brings the schema to head first
    assert seeded.returncode == 0, seeded.stderr
    kept = data_dir / DEMO_PASSWORD_FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    with environment(DEMO_PASSWORD=None):
        password = demo_password(data_dir)
    assert f"demo user {OWNER!r} password: {password}" in seeded.stdout

    server = Server(data_dir, tmp_path / "serve.log", "--no-migrate")
    servers.append(server)
    server.wait_until_healthy()
    assert server.client.get("/readyz").status_code == 200  # the schema is at head
    login = server.client.post("/auth/login", json={"username": OWNER, "password": password})
    assert login.status_code == 200, login.text


def test_embedded_lifecycle(tmp_path: Path, servers: list[Server]) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)

    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    seeded = run_cli("seed", "--password", DEMO_PASSWORD, env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert DEMO_PASSWORD in seeded.stdout
    reseeded = run_cli("seed", env=env)
    assert reseeded.returncode == 0, reseeded.stderr
    assert DEMO_PASSWORD not in reseeded.stdout  # nothing changed, nothing new to print
    assert postmaster_pid(data_dir) is None  # each command stopped the server it started

    first = Server(data_dir, tmp_path / "first.log")
    servers.append(first)
    first.wait_until_healthy()
    assert first.client.get("/readyz").status_code == 200
    login = first.client.post("/auth/login", json={"username": "demo", "password": DEMO_PASSWORD})
    assert login.status_code == 200
    token = login.json()["access_token"]
    pid = postmaster_pid(data_dir)
    assert pid is not None

    assert first.stop(signal.SIGTERM) == 0, first.log.read_text()
    assert_postgres_stopped(data_dir, pid)
    assert (data_dir / SECRET_KEY_FILE).stat().st_mode & 0o777 == 0o600

    second = Server(data_dir, tmp_path / "second.log", "--workers", "2", ROOT_PATH="/api")
    servers.append(second)
    second.wait_until_healthy()
    for _ in range(6):  # connections land on either worker: both know the same key
        with httpx.Client(base_url=second.client.base_url) as fresh:
            me = fresh.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "demo"
        assert {o["name"] for o in me.json()["organizations"]} == {"demo"}
    pid = postmaster_pid(data_dir)
    assert pid is not None

    assert second.stop(signal.SIGINT) == 0, second.log.read_text()
    assert_postgres_stopped(data_dir, pid)


def test_serve_refuses_a_real_database_without_secret_key(
    tmp_path: Path, postgres_url: str
) -> None:
    result = run_cli("serve", env=cli_env(tmp_path, DATABASE_URL=postgres_url), timeout=30)

    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr


def test_invalid_configuration_is_reported_not_raised(tmp_path: Path) -> None:
    result = run_cli("migrate", env=cli_env(tmp_path, TOKEN_TTL_SECONDS="soon"), timeout=30)

    assert result.returncode == 2
    assert "token_ttl_seconds" in result.stderr.lower()
    assert "Traceback" not in result.stderr
