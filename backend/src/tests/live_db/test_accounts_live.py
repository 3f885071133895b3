"""A person's account on a real database: changing the password (checked like a login, and
counted like one when wrong) and deleting the account (refused while it would leave an
organization without an owner; its own organizations go with it, its todos elsewhere stay
without an author, its name is free at once, its tokens are refused). Also when these race
each other or a logout.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from app.db.database import Database
from app.db.executor import Executor, Row
from app.models import (
    MembershipDAO,
    OrganizationDAO,
    RevokedTokenDAO,
    SpaceDAO,
    TodoDAO,
    UserDAO,
)
from app.models.sessions import Caller as SessionCaller
from app.security import issue_token
from app.settings import Settings
from tests.conftest import (
    PASSWORD,
    Caller,
    create_todo,
    login,
    make_settings,
    new_caller,
    register,
    unique_name,
)
from tests.sql import fetch

pytestmark = pytest.mark.live_db

MAX_PER_USER = 3
NEW_PASSWORD = "a new passphrase for the account tests"
OTHER_PASSWORD = "another passphrase for the account tests"
WRONG_PASSWORD = "not the password at all"


@pytest.fixture
async def live_settings(database_url: str, data_dir: Path) -> Settings:
    """The live app with a small failure limit per user name, so counting is cheap to see."""
    return make_settings(
        data_dir, database_url=database_url, login_max_failures_per_user=MAX_PER_USER
    )


@dataclass(frozen=True)
class Person:
    """A user registered and logged in through the API, so their password is real."""

    id: uuid.UUID
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return _bearer(self.token)

    def as_caller(self) -> Caller:
        return Caller(self.id, self.name, self.headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _person(client: Client) -> Person:
    name = unique_name()
    user = await register(client, name)
    return Person(uuid.UUID(user["id"]), name, await login(client, name))


async def _login(client: Client, name: str, password: str) -> Response:
    return await client.post("/auth/login", json={"username": name, "password": password})


async def _change_password(
    client: Client, person: Person, current: str, new: str = NEW_PASSWORD
) -> Response:
    body = {"current_password": current, "new_password": new}
    return await client.post("/me/password", json=body, headers=person.headers)


async def _delete_account(
    client: Client, headers: dict[str, str], password: str = PASSWORD
) -> Response:
    return await client.post("/me/deletion", json={"password": password}, headers=headers)


async def _user_row(database: Database, user_id: uuid.UUID) -> Row | None:
    users = UserDAO.__table__
    rows = await fetch(database, users.select().where(users.c.id == user_id))
    return rows[0] if rows else None


async def _organization(client: Client, owner: Caller, *members: Caller) -> tuple[str, str]:
    """An organization of `owner` with `members` and one space: (organization id, space id)."""
    name = unique_name("org")
    response = await client.post("/organizations", json={"name": name}, headers=owner.headers)
    assert response.status_code == 201
    organization_id = (await response.get_json())["id"]
    for member in members:
        added = await client.post(
            f"/organizations/{organization_id}/members",
            json={"user_name": member.name},
            headers=owner.headers,
        )
        assert added.status_code == 201
    space = await client.post(
        "/spaces", json={"name": "inbox", "organization_id": organization_id}, headers=owner.headers
    )
    assert space.status_code == 201
    return organization_id, (await space.get_json())["id"]


# Changing the password ----------------------------------------------------------------------


async def test_a_wrong_current_password_is_403_and_counts_as_a_failed_login(
    live_client: Client, live_database: Database
) -> None:
    person = await _person(live_client)
    before = await _user_row(live_database, person.id)

    refusals = [
        await _change_password(live_client, person, WRONG_PASSWORD) for _ in range(MAX_PER_USER)
    ]

    assert [response.status_code for response in refusals] == [403] * MAX_PER_USER
    assert await _user_row(live_database, person.id) == before  # same hash, same generation
    assert (await live_client.get("/me", headers=person.headers)).status_code == 200
    limited = await _login(live_client, person.name, PASSWORD)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    right_but_limited = await _change_password(live_client, person, PASSWORD)
    assert right_but_limited.status_code == 429
    assert await _user_row(live_database, person.id) == before


async def test_a_password_change_answers_a_token_and_only_the_new_password_logs_in(
    live_client: Client,
) -> None:
    person = await _person(live_client)

    changed = await _change_password(live_client, person, PASSWORD)

    assert changed.status_code == 200, await changed.get_data(as_text=True)
    token = await changed.get_json()
    assert set(token) == {"access_token", "token_type", "expires_in"}
    assert token["token_type"] == "bearer"
    assert (await live_client.get("/me", headers=_bearer(token["access_token"]))).status_code == 200
    assert (await _login(live_client, person.name, PASSWORD)).status_code == 401
    assert (await _login(live_client, person.name, NEW_PASSWORD)).status_code == 200


# Deleting the account -----------------------------------------------------------------------


async def test_deletion_waits_for_an_owner_then_leaves_the_todos_without_an_author(
    live_client: Client, live_database: Database
) -> None:
    person = await _person(live_client)
    successor, plain_member = await new_caller(live_database), await new_caller(live_database)
    organization_id, space_id = await _organization(
        live_client, person.as_caller(), successor, plain_member
    )
    organization_name = (
        await (
            await live_client.get(f"/organizations/{organization_id}", headers=person.headers)
        ).get_json()
    )["name"]
    todo = await create_todo(live_client, person.as_caller(), space_id)

    wrong = await _delete_account(live_client, person.headers, WRONG_PASSWORD)
    held = await _delete_account(live_client, person.headers)

    assert wrong.status_code == 403
    assert held.status_code == 409
    detail = (await held.get_json())["detail"]
    assert organization_name in detail
    assert "owner" in detail
    assert "delete" in detail
    assert (await live_client.get("/me", headers=person.headers)).status_code == 200

    promoted = await live_client.patch(
        f"/organizations/{organization_id}/members/{successor.id}",
        json={"role": "owner"},
        headers=person.headers,
    )
    assert promoted.status_code == 200
    deleted = await _delete_account(live_client, person.headers)
    assert deleted.status_code == 204, await deleted.get_data(as_text=True)

    read = await live_client.get(f"/todos/{todo['id']}", headers=successor.headers)
    assert read.status_code == 200
    assert (await read.get_json())["user_id"] is None
    by_owner = await live_client.patch(
        f"/todos/{todo['id']}", json={"done": True}, headers=successor.headers
    )
    assert by_owner.status_code == 200
    assert (await by_owner.get_json())["done"] is True
    by_member = await live_client.patch(
        f"/todos/{todo['id']}", json={"title": "mine now"}, headers=plain_member.headers
    )
    assert by_member.status_code == 403
    members = await live_client.get(
        f"/organizations/{organization_id}/members", headers=successor.headers
    )
    assert {m["user_id"] for m in (await members.get_json())["items"]} == {
        str(successor.id),
        str(plain_member.id),
    }
    assert await _user_row(live_database, person.id) is None  # handed over, then removed
    memberships = MembershipDAO.__table__
    of_person = memberships.select().where(memberships.c.user_id == person.id)
    assert await fetch(live_database, of_person) == []
    assert (await live_client.get("/me", headers=person.headers)).status_code == 401


async def _rows_of(database: Database, organization_id: str) -> dict[str, int]:
    """How many rows the organization still has, by table, whatever their deletion marks."""
    organization = uuid.UUID(organization_id)
    organizations, spaces = OrganizationDAO.__table__, SpaceDAO.__table__
    todos = TodoDAO.__table__
    space_ids = spaces.select().where(spaces.c.organization_id == organization)
    counts = {
        "organizations": organizations.select().where(organizations.c.id == organization),
        "spaces": space_ids,
        "todos": todos.select().where(
            todos.c.space_id.in_(
                spaces.select()
                .with_only_columns(spaces.c.id)
                .where(spaces.c.organization_id == organization)
                .scalar_subquery()
            )
        ),
    }
    return {table: len(await fetch(database, query)) for table, query in counts.items()}


async def test_organizations_of_the_account_alone_go_with_it(
    live_client: Client, live_database: Database
) -> None:
    person = await _person(live_client)
    organization_id, space_id = await _organization(live_client, person.as_caller())
    await create_todo(live_client, person.as_caller(), space_id)

    deleted = await _delete_account(live_client, person.headers)

    assert deleted.status_code == 204, await deleted.get_data(as_text=True)
    organizations = OrganizationDAO.__table__
    live = organizations.select().where(
        organizations.c.id == uuid.UUID(organization_id), organizations.c.deleted_at.is_(None)
    )
    assert await fetch(live_database, live) == []  # gone for everyone at once
    for _ in range(100):  # then removed in the background
        remaining = await _rows_of(live_database, organization_id)
        if not any(remaining.values()):
            break
        await asyncio.sleep(0.1)
    assert remaining == {"organizations": 0, "spaces": 0, "todos": 0}


async def test_the_name_is_free_at_once_and_old_tokens_are_refused(
    live_client: Client, live_database: Database
) -> None:
    person = await _person(live_client)
    older_token = _bearer(issue_token(person.id, live_database.settings.signing_key(), 900))
    organization_id, space_id = await _organization(live_client, person.as_caller())
    todo = await create_todo(live_client, person.as_caller(), space_id)

    deleted = await _delete_account(live_client, person.headers)
    again = await live_client.post(
        "/auth/register", json={"name": person.name, "password": OTHER_PASSWORD}
    )

    assert deleted.status_code == 204
    assert again.status_code == 201, await again.get_data(as_text=True)
    assert (await again.get_json())["id"] != str(person.id)
    for headers in (person.headers, older_token):
        for path in ("/me", f"/todos/{todo['id']}", "/todos", f"/organizations/{organization_id}"):
            assert (await live_client.get(path, headers=headers)).status_code == 401, path
    newcomer = _bearer(await login(live_client, person.name, OTHER_PASSWORD))
    me = await live_client.get("/me", headers=newcomer)
    assert (await me.get_json())["organizations"] == []
    todos = await live_client.get("/todos", headers=newcomer)
    assert (await todos.get_json())["items"] == []
    assert (await live_client.get(f"/todos/{todo['id']}", headers=newcomer)).status_code == 404
    organization = await live_client.get(f"/organizations/{organization_id}", headers=newcomer)
    assert organization.status_code == 404
    assert (await _login(live_client, person.name, PASSWORD)).status_code == 401


# Racing -------------------------------------------------------------------------------------


async def test_two_password_changes_at_once_leave_one_password_and_its_token(
    live_client: Client,
) -> None:
    person = await _person(live_client)
    new_passwords = (NEW_PASSWORD, OTHER_PASSWORD)

    responses = await asyncio.gather(
        *(_change_password(live_client, person, PASSWORD, new) for new in new_passwords)
    )

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 403}, statuses
    assert 200 in statuses
    working = []
    for response, password in zip(responses, new_passwords, strict=True):
        if response.status_code == 200:
            token = (await response.get_json())["access_token"]
            if (await live_client.get("/me", headers=_bearer(token))).status_code == 200:
                working.append(password)
    assert len(working) == 1, statuses  # the last change's token; the other is from before it
    logins = {p: (await _login(live_client, person.name, p)).status_code for p in new_passwords}
    assert logins == {p: 200 if p in working else 401 for p in new_passwords}
    assert (await _login(live_client, person.name, PASSWORD)).status_code == 401


@pytest.mark.parametrize(
    "logout_body",
    [pytest.param(None, id="logout"), pytest.param({"everywhere": True}, id="everywhere")],
)
async def test_a_deletion_racing_a_logout_is_never_a_5xx(
    live_client: Client, live_database: Database, logout_body: dict[str, Any] | None
) -> None:
    person = await _person(live_client)
    other = _bearer(issue_token(person.id, live_database.settings.signing_key(), 900))

    logout_kwargs: dict[str, Any] = {} if logout_body is None else {"json": logout_body}
    deletion, logout = await asyncio.gather(
        _delete_account(live_client, person.headers),
        live_client.post("/auth/logout", headers=other, **logout_kwargs),
    )

    assert deletion.status_code in {204, 401}, await deletion.get_data(as_text=True)
    assert logout.status_code in {204, 401}, await logout.get_data(as_text=True)
    for headers in (person.headers, other):
        if deletion.status_code == 204 or logout_body is not None:
            assert (await live_client.get("/me", headers=headers)).status_code == 401


async def test_a_logout_that_passed_its_check_before_the_account_went_is_not_a_409(
    live_client: Client, live_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving the race above can only sometimes hit, made certain: the logout has
    checked its token, the deletion then completes, then the logout records the revocation."""
    person = await _person(live_client)
    other = _bearer(issue_token(person.id, live_database.settings.signing_key(), 900))
    checked, release = asyncio.Event(), asyncio.Event()
    real_revoke = RevokedTokenDAO.revoke

    async def held_revoke(cls: type[RevokedTokenDAO], x: Executor, caller: SessionCaller) -> None:
        checked.set()
        await release.wait()
        await real_revoke(x, caller)

    monkeypatch.setattr(RevokedTokenDAO, "revoke", classmethod(held_revoke))
    logout = asyncio.ensure_future(live_client.post("/auth/logout", headers=other))
    await asyncio.wait_for(checked.wait(), 10)
    deletion = await _delete_account(live_client, person.headers)
    release.set()

    assert deletion.status_code == 204
    answer = await logout
    assert answer.status_code in {204, 401}, await answer.get_data(as_text=True)
