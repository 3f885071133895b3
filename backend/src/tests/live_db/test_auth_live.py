"""Auth against a real database: the same behaviours the unit tests check on fakes."""

from __future__ import annotations

import uuid

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from app.models import OrganizationDAO, UserDAO
from app.security import check_password
from app.settings import Settings
from tests.conftest import PASSWORD, login, register, unique_name
from tests.sql import delete_user

pytestmark = pytest.mark.live_db


async def test_register_login_me(live_client: Client) -> None:
    name = unique_name()
    user = await register(live_client, name)
    assert user["name"] == name
    assert set(user) == {"id", "name", "created_at"}
    token = await login(live_client, name)

    response = await live_client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    me = await response.get_json()
    assert me == {
        "id": user["id"],
        "name": name,
        "created_at": user["created_at"],
        "organizations": [],
    }


async def test_duplicate_name_is_409_and_keeps_the_first_password(
    live_client: Client,
) -> None:
    name = unique_name()
    await register(live_client, name)

    response = await live_client.post(
        "/auth/register", json={"name": name, "password": "another password"}
    )

    assert response.status_code == 409
    assert isinstance((await response.get_json())["detail"], str)
    await login(live_client, name)  # the original password still works


async def test_password_is_stored_as_argon2id_hash(
    live_client: Client, live_database: Database
) -> None:
    name = unique_name()
    await register(live_client, name)

    user = await live_database.run(lambda s: UserDAO.get_by_name(s, name))

    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert (await check_password(PASSWORD, user.password_hash)).valid


async def test_unknown_user_and_wrong_password_look_the_same(
    live_client: Client,
) -> None:
    name = unique_name()
    await register(live_client, name)

    wrong = await live_client.post(
        "/auth/login", json={"username": name, "password": "not the password"}
    )
    unknown = await live_client.post(
        "/auth/login", json={"username": unique_name(), "password": PASSWORD}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert isinstance((await wrong.get_json())["detail"], str)
    assert await wrong.get_json() == await unknown.get_json()
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == "Bearer"


async def test_form_login(live_client: Client, live_settings: Settings) -> None:
    name = unique_name()
    await register(live_client, name)

    response = await live_client.post(
        "/auth/login", form={"grant_type": "password", "username": name, "password": PASSWORD}
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == live_settings.token_ttl_seconds
    me = await live_client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert (await me.get_json())["name"] == name


async def test_me_lists_organizations_with_roles(
    live_client: Client, live_database: Database
) -> None:
    name = unique_name()
    user_id = uuid.UUID((await register(live_client, name))["id"])
    organization = await live_database.run(
        lambda s: OrganizationDAO.create_owned(s, unique_name("org"), user_id)
    )
    assert organization is not None
    token = await login(live_client, name)

    response = await live_client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert (await response.get_json())["organizations"] == [
        {"id": str(organization.id), "name": organization.name, "role": "owner"}
    ]


async def test_token_of_deleted_user_is_refused(
    live_client: Client, live_database: Database
) -> None:
    name = unique_name()
    user_id = uuid.UUID((await register(live_client, name))["id"])
    token = await login(live_client, name)
    assert await delete_user(live_database, user_id)

    response = await live_client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert isinstance((await response.get_json())["detail"], str)
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_concurrent_registrations_of_one_name_create_one_user(
    live_client: Client, live_database: Database
) -> None:
    import asyncio

    name = unique_name()
    body = {"name": name, "password": PASSWORD}

    responses = await asyncio.gather(
        *(live_client.post("/auth/register", json=body) for _ in range(4))
    )

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert await live_database.run(lambda s: UserDAO.get_by_name(s, name)) is not None
