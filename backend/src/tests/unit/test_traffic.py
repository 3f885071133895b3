"""Password hashing runs unpaced only while no other request is in flight: the count must see
every other request, and never the logins and registrations themselves."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.api import auth
from app.http.traffic import traffic
from app.security import PasswordCheck
from tests.conftest import PASSWORD, register, unique_name


async def test_an_ordinary_request_counts_while_it_runs(app: Quart, client: QuartClient) -> None:
    @app.get("/probe")
    async def probe() -> dict[str, int]:
        return {"in_flight": traffic.in_flight}

    response = await client.get("/probe")

    assert await response.get_json() == {"in_flight": 1}
    assert traffic.in_flight == 0


async def test_logins_and_registrations_do_not_count(
    client: QuartClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_check, real_hash = auth.check_password, auth.hash_password

    async def counting_check(password: str, stored_hash: str | None) -> PasswordCheck:
        seen.append(traffic.in_flight)
        return await real_check(password, stored_hash)

    async def counting_hash(password: str) -> str:
        seen.append(traffic.in_flight)
        return await real_hash(password)

    monkeypatch.setattr(auth, "check_password", counting_check)
    monkeypatch.setattr(auth, "hash_password", counting_hash)
    name = unique_name()
    await register(client, name)
    response = await client.post("/auth/login", json={"username": name, "password": PASSWORD})

    assert response.status_code == 200
    assert seen == [0, 0]
