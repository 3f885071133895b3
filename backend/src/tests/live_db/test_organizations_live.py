"""Organizations, members and the walls between organizations, on a real database.

The cross-organization test sends every route a request about another organization's objects
and checks that each answer is exactly the answer for an id that does not exist: a 404 that
differs in any way (status, body) would tell an attacker the object is there.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from app.models import MembershipDAO, OrganizationDAO, Role, SpaceDAO
from tests.conftest import Caller, new_caller, todo_count, unique_name

pytestmark = pytest.mark.live_db


async def _organization(client: Client, owner: Caller, name: str | None = None) -> Any:
    response = await client.post(
        "/organizations", json={"name": name or unique_name("org")}, headers=owner.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def _add(
    client: Client, caller: Caller, organization_id: str, user_name: str, role: str = "member"
) -> Any:
    return await client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": user_name, "role": role},
        headers=caller.headers,
    )


async def _role(database: Database, organization_id: str, user: Caller) -> Role | None:
    organization = uuid.UUID(organization_id)
    return await database.run(lambda s: MembershipDAO.role_of(s, organization, user.id))


async def test_create_list_and_get(live_client: Client, live_database: Database) -> None:
    owner = await new_caller(live_database)
    name = unique_name("org")

    response = await live_client.post("/organizations", json={"name": name}, headers=owner.headers)

    assert response.status_code == 201
    created = await response.get_json()
    assert set(created) == {"id", "name", "created_at", "role"}
    assert (created["name"], created["role"]) == (name, "owner")
    uuid.UUID(created["id"])
    assert datetime.fromisoformat(created["created_at"]).utcoffset() is not None
    assert response.headers["Location"] == f"/organizations/{created['id']}"
    assert await _role(live_database, created["id"], owner) is Role.OWNER

    listed = await live_client.get("/organizations", headers=owner.headers)
    fetched = await live_client.get(response.headers["Location"], headers=owner.headers)

    assert listed.status_code == fetched.status_code == 200
    assert await listed.get_json() == [created]
    assert await fetched.get_json() == created


async def test_name_is_trimmed_and_invalid_names_are_422(
    live_client: Client, live_database: Database
) -> None:
    owner = await new_caller(live_database)
    name = unique_name("org")

    trimmed = await live_client.post(
        "/organizations", json={"name": f"  {name}  "}, headers=owner.headers
    )
    invalid = [
        await live_client.post("/organizations", json=body, headers=owner.headers)
        for body in ({"name": ""}, {"name": "   "}, {"name": "x" * 101}, {}, {"name": 5})
    ]

    assert trimmed.status_code == 201
    assert (await trimmed.get_json())["name"] == name
    assert [r.status_code for r in invalid] == [422] * 5
    assert (
        len(await (await live_client.get("/organizations", headers=owner.headers)).get_json()) == 1
    )


async def test_list_shows_only_the_callers_organizations_oldest_first(
    live_client: Client, live_database: Database
) -> None:
    alice, bob = await new_caller(live_database), await new_caller(live_database)
    first = await _organization(live_client, alice)
    second = await _organization(live_client, alice)
    bobs = await _organization(live_client, bob)
    added = await _add(live_client, bob, bobs["id"], alice.name)
    assert added.status_code == 201

    alice_sees = await (await live_client.get("/organizations", headers=alice.headers)).get_json()
    bob_sees = await (await live_client.get("/organizations", headers=bob.headers)).get_json()

    assert [(o["id"], o["role"]) for o in alice_sees] == [
        (first["id"], "owner"),
        (second["id"], "owner"),
        (bobs["id"], "member"),
    ]
    assert bob_sees == [bobs]
    for organization in alice_sees:
        assert set(organization) == {"id", "name", "created_at", "role"}


async def test_duplicate_name_is_409_and_changes_nothing(
    live_client: Client, live_database: Database
) -> None:
    alice, bob = await new_caller(live_database), await new_caller(live_database)
    taken = await _organization(live_client, alice)

    response = await live_client.post(
        "/organizations", json={"name": taken["name"]}, headers=bob.headers
    )

    assert response.status_code == 409
    assert isinstance((await response.get_json())["detail"], str)
    assert await (await live_client.get("/organizations", headers=bob.headers)).get_json() == []
    assert await _role(live_database, taken["id"], bob) is None
    stored = await live_database.run(lambda s: OrganizationDAO.get_by_name(s, taken["name"]))
    assert stored is not None
    assert str(stored.id) == taken["id"]


async def test_concurrent_creates_of_one_name_make_one_organization(
    live_client: Client, live_database: Database
) -> None:
    callers = [await new_caller(live_database) for _ in range(4)]
    name = unique_name("org")

    responses = await asyncio.gather(
        *(
            live_client.post("/organizations", json={"name": name}, headers=caller.headers)
            for caller in callers
            for _ in range(2)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7, statuses
    winner_response = next(r for r in responses if r.status_code == 201)
    created = await winner_response.get_json()
    owners = [c for c in callers if await _role(live_database, created["id"], c) is Role.OWNER]
    assert len(owners) == 1
    for caller in callers:
        listed = await (await live_client.get("/organizations", headers=caller.headers)).get_json()
        assert listed == ([created] if caller in owners else [])


async def test_owner_adds_a_member_who_then_sees_the_organization(
    live_client: Client, live_database: Database
) -> None:
    owner, newcomer = await new_caller(live_database), await new_caller(live_database)
    organization = await _organization(live_client, owner)

    response = await _add(live_client, owner, organization["id"], newcomer.name)

    assert response.status_code == 201
    member = await response.get_json()
    assert set(member) == {"organization_id", "user_id", "user_name", "role", "created_at"}
    assert (member["organization_id"], member["user_id"]) == (organization["id"], str(newcomer.id))
    assert (member["user_name"], member["role"]) == (newcomer.name, "member")
    assert datetime.fromisoformat(member["created_at"]).utcoffset() is not None
    fetched = await live_client.get(
        f"/organizations/{organization['id']}", headers=newcomer.headers
    )
    assert fetched.status_code == 200
    assert await fetched.get_json() == {**organization, "role": "member"}
    assert await _role(live_database, organization["id"], newcomer) is Role.MEMBER


async def test_an_added_owner_can_add_members(live_client: Client, live_database: Database) -> None:
    owner, second_owner, newcomer = [await new_caller(live_database) for _ in range(3)]
    organization = await _organization(live_client, owner)

    promoted = await _add(live_client, owner, organization["id"], second_owner.name, "owner")
    added = await _add(live_client, second_owner, organization["id"], newcomer.name)

    assert promoted.status_code == added.status_code == 201
    assert (await promoted.get_json())["role"] == "owner"
    assert await _role(live_database, organization["id"], newcomer) is Role.MEMBER
    listed = await live_client.get("/organizations", headers=second_owner.headers)
    assert [o["role"] for o in await listed.get_json()] == ["owner"]


async def test_member_gets_403_and_adds_nobody(
    live_client: Client, live_database: Database
) -> None:
    owner, member, outsider = [await new_caller(live_database) for _ in range(3)]
    organization = await _organization(live_client, owner)
    assert (await _add(live_client, owner, organization["id"], member.name)).status_code == 201

    response = await _add(live_client, member, organization["id"], outsider.name)
    promote_self = await _add(live_client, member, organization["id"], member.name, "owner")

    assert response.status_code == promote_self.status_code == 403
    assert await _role(live_database, organization["id"], outsider) is None
    assert await _role(live_database, organization["id"], member) is Role.MEMBER


async def test_non_member_gets_the_404_of_an_unknown_organization(
    live_client: Client, live_database: Database
) -> None:
    owner, stranger, outsider = [await new_caller(live_database) for _ in range(3)]
    organization = await _organization(live_client, owner)

    hidden = await _add(live_client, stranger, organization["id"], outsider.name)
    unknown = await _add(live_client, stranger, str(uuid.uuid4()), outsider.name)
    join_self = await _add(live_client, stranger, organization["id"], stranger.name, "owner")

    assert hidden.status_code == unknown.status_code == join_self.status_code == 404
    assert await hidden.get_json() == await unknown.get_json() == await join_self.get_json()
    assert await _role(live_database, organization["id"], outsider) is None
    assert await _role(live_database, organization["id"], stranger) is None


async def test_unknown_user_is_404(live_client: Client, live_database: Database) -> None:
    owner = await new_caller(live_database)
    organization = await _organization(live_client, owner)

    response = await _add(live_client, owner, organization["id"], unique_name("nobody"))

    assert response.status_code == 404
    assert isinstance((await response.get_json())["detail"], str)


async def test_existing_member_is_409_and_keeps_the_role(
    live_client: Client, live_database: Database
) -> None:
    owner, member = await new_caller(live_database), await new_caller(live_database)
    organization = await _organization(live_client, owner)
    assert (await _add(live_client, owner, organization["id"], member.name)).status_code == 201

    again = await _add(live_client, owner, organization["id"], member.name)
    as_owner = await _add(live_client, owner, organization["id"], member.name, "owner")
    owner_again = await _add(live_client, owner, organization["id"], owner.name, "member")

    assert again.status_code == as_owner.status_code == owner_again.status_code == 409
    for response in (again, as_owner, owner_again):
        assert isinstance((await response.get_json())["detail"], str)
    assert await _role(live_database, organization["id"], member) is Role.MEMBER
    assert await _role(live_database, organization["id"], owner) is Role.OWNER


@dataclass(frozen=True)
class Tenant:
    """An organization with one space and one todo, as its owner sees it."""

    owner: Caller
    organization_id: str
    space_id: str
    todo: dict[str, Any]


async def _tenant(client: Client, database: Database) -> Tenant:
    owner = await new_caller(database)
    organization = await _organization(client, owner)
    space = await client.post(
        "/spaces",
        json={"name": "inbox", "organization_id": organization["id"]},
        headers=owner.headers,
    )
    assert space.status_code == 201
    space_id = (await space.get_json())["id"]
    todo = await client.post(
        "/todos", json={"title": "secret plan", "space_id": space_id}, headers=owner.headers
    )
    assert todo.status_code == 201
    return Tenant(owner, organization["id"], space_id, await todo.get_json())


async def test_other_organizations_objects_answer_like_unknown_ids(
    live_client: Client, live_database: Database
) -> None:
    victim = await _tenant(live_client, live_database)
    intruder = await _tenant(live_client, live_database)
    headers = intruder.owner.headers

    def requests(organization_id: str, space_id: str, todo_id: str) -> dict[str, Any]:
        return {
            "get organization": ("GET", f"/organizations/{organization_id}", None),
            "add member": (
                "POST",
                f"/organizations/{organization_id}/members",
                {"user_name": intruder.owner.name, "role": "owner"},
            ),
            "create space": (
                "POST",
                "/spaces",
                {"name": "planted", "organization_id": organization_id},
            ),
            "get space": ("GET", f"/spaces/{space_id}", None),
            "create todo": ("POST", "/todos", {"title": "planted", "space_id": space_id}),
            "get todo": ("GET", f"/todos/{todo_id}", None),
            "patch todo": ("PATCH", f"/todos/{todo_id}", {"title": "defaced"}),
            "delete todo": ("DELETE", f"/todos/{todo_id}", None),
        }

    async def answers(organization_id: str, space_id: str, todo_id: str) -> dict[str, Any]:
        outcomes = {}
        for label, (method, path, body) in requests(organization_id, space_id, todo_id).items():
            response = await live_client.open(path, method=method, json=body, headers=headers)
            outcomes[label] = (response.status_code, await response.get_json())
        return outcomes

    foreign = await answers(victim.organization_id, victim.space_id, victim.todo["id"])
    unknown = await answers(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))

    assert {label: status for label, (status, _) in foreign.items()} == dict.fromkeys(foreign, 404)
    assert foreign == unknown
    for _, body in foreign.values():
        assert isinstance(body["detail"], str)
        text = str(body)
        assert victim.organization_id not in text
        assert victim.space_id not in text
        assert victim.todo["id"] not in text

    # Lists filtered by the other organization's ids are empty, not refused.
    listed_spaces = await live_client.get(
        "/spaces", query_string={"organization_id": victim.organization_id}, headers=headers
    )
    listed_todos = await live_client.get(
        "/todos", query_string={"space_id": victim.space_id}, headers=headers
    )
    assert listed_spaces.status_code == listed_todos.status_code == 200
    assert await listed_spaces.get_json() == {"items": [], "next_cursor": None}
    assert await listed_todos.get_json() == {"items": [], "next_cursor": None}
    everything = await (await live_client.get("/todos", headers=headers)).get_json()
    assert [todo["id"] for todo in everything["items"]] == [intruder.todo["id"]]
    spaces = await (await live_client.get("/spaces", headers=headers)).get_json()
    assert [space["id"] for space in spaces["items"]] == [intruder.space_id]
    organizations = await (await live_client.get("/organizations", headers=headers)).get_json()
    assert [o["id"] for o in organizations] == [intruder.organization_id]

    # And nothing of the victim's changed.
    victim_organization = uuid.UUID(victim.organization_id)
    assert await _role(live_database, victim.organization_id, intruder.owner) is None
    assert await todo_count(live_database, victim.space_id) == 1
    planted = await live_database.run(
        lambda s: SpaceDAO.get_by_name(s, victim_organization, "planted")
    )
    assert planted is None
    todo = await live_client.get(f"/todos/{victim.todo['id']}", headers=victim.owner.headers)
    assert await todo.get_json() == victim.todo
