"""backend/docker-entrypoint.sh run for real, against the embedded PostgreSQL.

It is what the container runs, so it is exercised here outside any container: it must wait
for the database within a bound, migrate when told to, serve, and stop on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.db.migrate import head_revision
from tests.conftest import TEST_SECRET, create_database, free_port, wait_for_http

pytestmark = pytest.mark.live_db

VENV_BIN = Path(sys.executable).parent


def entrypoint() -> Path:
    """backend/docker-entrypoint.sh of the checkout, or where the image installed it (in the
    development container only backend/src is mounted, at /app)."""
    beside_the_source = Path(__file__).resolve().parents[2].parent / "docker-entrypoint.sh"
    if beside_the_source.is_file():
        return beside_the_source
    if installed := shutil.which("docker-entrypoint.sh"):
        return Path(installed)
    pytest.skip(f"no docker-entrypoint.sh beside {beside_the_source.parent} nor on PATH")


def entrypoint_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        SECRET_KEY=TEST_SECRET,
        DATA_DIR=str(tmp_path / "data"),
        LOG_LEVEL="WARNING",
        WORKERS="1",
        **values,
    )
    return env


def test_waits_migrates_serves_and_stops_on_sigterm(
    tmp_path: Path, embedded_server_url: str
) -> None:
    url = create_database(embedded_server_url, "minor_illusion_entrypoint")
    port = free_port()
    log = tmp_path / "entrypoint.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            ["sh", str(entrypoint())],
            env=entrypoint_env(tmp_path, DATABASE_URL=url, MIGRATE="true", PORT=str(port)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = wait_for_http(process, f"http://127.0.0.1:{port}", "/readyz", log).json()
        assert ready == {"status": "ready", "revision": head_revision()}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()


def test_gives_up_on_an_unreachable_database_within_the_bound(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        ["sh", str(entrypoint()), "serve"],
        env=entrypoint_env(
            tmp_path,
            DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
            DB_WAIT_SECONDS="2",
            DB_CONNECT_TIMEOUT_SECONDS="1",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "giving up" in result.stderr


def test_one_shot_commands_run_and_exit(tmp_path: Path, embedded_server_url: str) -> None:
    url = create_database(embedded_server_url, "minor_illusion_entrypoint_once")
    env = entrypoint_env(tmp_path, DATABASE_URL=url, DEMO_PASSWORD="demo password 123")

    migrated = subprocess.run(
        ["sh", str(entrypoint()), "migrate"], env=env, capture_output=True, text=True, check=False
    )
    seeded = subprocess.run(
        ["sh", str(entrypoint()), "seed"], env=env, capture_output=True, text=True, check=False
    )

    assert migrated.returncode == 0, migrated.stderr
    assert seeded.returncode == 0, seeded.stderr
    assert "demo password 123" in seeded.stdout
