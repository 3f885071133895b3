"""Liveness answers while the process is up; readiness only when the schema is at the head."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as QuartClient

from app.errors import RETRY_AFTER_SECONDS
from tests.fakes import FakeDatabase, FakeSchemaDAO
from tests.unit.assertions import assert_error


async def test_healthz_is_ok(client: QuartClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_healthz_is_ok_without_a_database(
    client: QuartClient, fake_database: FakeDatabase
) -> None:
    fake_database.available = False

    response = await client.get("/healthz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_is_503_without_a_database(
    client: QuartClient, fake_database: FakeDatabase
) -> None:
    fake_database.available = False

    response = await client.get("/readyz")

    await assert_error(response, 503)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    "revision",
    [
        pytest.param("0000000000aa", id="older-revision"),
        pytest.param(None, id="no-schema"),
        pytest.param("", id="empty-revision"),
    ],
)
async def test_readyz_is_503_when_the_schema_is_not_at_the_head(
    client: QuartClient, fake_database: FakeDatabase, revision: str | None
) -> None:
    FakeSchemaDAO.revision = revision

    response = await client.get("/readyz")

    await assert_error(response, 503)
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)


async def test_readyz_recovers_when_the_database_comes_back(
    client: QuartClient, fake_database: FakeDatabase
) -> None:
    fake_database.available = False
    assert (await client.get("/readyz")).status_code == 503

    fake_database.available = True
    response = await client.get("/readyz")

    assert response.status_code == 200
