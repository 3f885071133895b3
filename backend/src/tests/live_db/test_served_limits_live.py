"""Body limits through a real Hypercorn server: what a chunked upload (no Content-Length) or an
oversized declared one gets back over the wire, not only through the test client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from app.db.database import Database
from app.http.body_limits import LINGER_SECONDS
from app.main import create_app
from tests.conftest import PASSWORD, free_port, make_settings, unique_name

pytestmark = pytest.mark.live_db

SMALL_BODY_LIMIT = 1024
CHUNK = 256
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def base_url(
    database_url: str, data_dir: Path, live_database: Database
) -> AsyncIterator[str]:
    """The app with a 1 KiB body limit, served by Hypercorn on a free local port."""
    settings = make_settings(data_dir, database_url=database_url, max_body_bytes=SMALL_BODY_LIMIT)
    app = create_app(settings, database=live_database)
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    shutdown = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=shutdown.wait))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(200):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the server did not start")
        yield url
    finally:
        shutdown.set()
        await server


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]
        await asyncio.sleep(0)


def _registration(password: str = PASSWORD) -> bytes:
    return json.dumps({"name": unique_name(), "password": password}).encode()


async def test_an_oversized_chunked_body_is_413(base_url: str) -> None:
    body = _registration("x" * 2 * SMALL_BODY_LIMIT)

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/auth/register", content=_chunks(body), headers=JSON)

    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_oversized_declared_body_is_413(base_url: str) -> None:
    body = _registration("x" * 2 * SMALL_BODY_LIMIT)

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/auth/register", content=body, headers=JSON)

    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}


async def test_a_chunked_body_within_the_limit_is_served(base_url: str) -> None:
    body = _registration() + b" " * 600  # whitespace padding, still valid JSON

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/auth/register", content=_chunks(body), headers=JSON)

    assert response.status_code == 201, response.text


async def test_json_too_deep_for_the_parser_is_422_over_the_wire(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/auth/register", content=b"[" * 1000, headers=JSON)

    assert response.status_code == 422
    assert [item["type"] for item in response.json()["detail"]] == ["json_too_deep"]


async def test_an_early_refusal_of_a_large_upload_reaches_the_client(base_url: str) -> None:
    """401 comes before the body is read; the client, still sending, must get it anyway."""
    body = json.dumps({"title": "x" * 2 * SMALL_BODY_LIMIT}).encode()

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/todos", content=_chunks(body * 50), headers=JSON)

    assert response.status_code == 401


async def test_a_client_that_stops_sending_still_gets_its_413(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    oversized = b"x" * (2 * SMALL_BODY_LIMIT)
    writer.write(b"%x\r\n%s\r\n" % (len(oversized), oversized))  # and then nothing more
    await writer.drain()
    try:
        async with asyncio.timeout(LINGER_SECONDS + 5):
            answer = await reader.read()  # until the server closes the connection
    finally:
        writer.close()

    assert answer.startswith(b"HTTP/1.1 413")
    assert answer.endswith(b'{"detail":"request body too large"}\n')
