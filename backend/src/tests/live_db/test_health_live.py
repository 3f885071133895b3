"""Readiness and outages against real databases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.migrate import head_revision
from app.main import create_app
from tests.conftest import PASSWORD, free_port, make_settings

pytestmark = pytest.mark.live_db


async def test_readyz_reports_the_head_revision(live_client: Client) -> None:
    response = await live_client.get("/readyz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ready", "revision": head_revision()}


async def test_readyz_is_503_when_the_schema_is_behind(
    embedded_server_url: str, data_dir: Path
) -> None:
    from tests.conftest import create_database

    url = create_database(embedded_server_url, "minor_illusion_unmigrated")
    app = create_app(make_settings(data_dir, database_url=url))
    async with app.test_app():
        response = await app.test_client().get("/readyz")

    assert response.status_code == 503
    assert "Retry-After" in response.headers


async def test_unreachable_database_gives_503_quickly_and_healthz_stays_up(
    data_dir: Path,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    app = create_app(make_settings(data_dir, database_url=url, db_connect_timeout_seconds=2))
    async with app.test_app():
        client = app.test_client()
        started = time.monotonic()
        register = await client.post(
            "/auth/register", json={"name": "nobody-home", "password": PASSWORD}
        )
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
        elapsed = time.monotonic() - started

    assert register.status_code == 503
    assert register.headers["Retry-After"].isdigit()
    assert set(await register.get_json()) == {"detail"}
    assert ready.status_code == 503
    assert health.status_code == 200
    assert elapsed < 10
