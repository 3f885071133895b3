"""The members of an organization on a real database: the list, role changes, removals, and
the rule that an organization always keeps an owner, also when its owners race each other.

Every rule here is enforced in the SQL (see app.models.organizations), so these tests go
through the API and check what a client sees next: the member list, and 404s for whoever
was removed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from app.db.database import Database
from tests.conftest import Caller, Team, create_todo, new_caller, unique_name

pytestmark = pytest.mark.live_db

ROUNDS = 10
"""How many times the two owners race each other: each round is one chance to see both win."""


async def _organization(client: Client, owner: Caller) -> str:
    response = await client.post(
        "/organizations", json={"name": unique_name("org")}, headers=owner.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return str((await response.get_json())["id"])


async def _add(
    client: Client, owner: Caller, organization_id: str, newcomer: Caller, role: str = "member"
) -> None:
    response = await client.post(
        f"/organizations/{organization_id}/members",
        json={"user_name": newcomer.name, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)


async def _set_role(
    client: Client, caller: Caller, organization_id: str, member: Caller, role: str
) -> Any:
    return await client.patch(
        f"/organizations/{organization_id}/members/{member.id}",
        json={"role": role},
        headers=caller.headers,
    )


async def _remove(client: Client, caller: Caller, organization_id: str, member: Caller) -> Any:
    return await client.delete(
        f"/organizations/{organization_id}/members/{member.id}", headers=caller.headers
    )


async def _members(client: Client, caller: Caller, organization_id: str) -> list[dict[str, Any]]:
    """Every member as `caller` sees them: one page of the default size, the last one."""
    response = await client.get(f"/organizations/{organization_id}/members", headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert page["next_cursor"] is None
    return list(page["items"])


async def _roles(client: Client, caller: Caller, organization_id: str) -> dict[str, str]:
    """user id -> role, as `caller` sees the member list."""
    return {m["user_id"]: m["role"] for m in await _members(client, caller, organization_id)}


async def test_members_are_listed_in_join_order_a_page_at_a_time(
    live_client: Client, live_database: Database
) -> None:
    owner = await new_caller(live_database)
    organization_id = await _organization(live_client, owner)
    newcomers = [await new_caller(live_database) for _ in range(4)]
    for number, newcomer in enumerate(newcomers):
        await _add(
            live_client, owner, organization_id, newcomer, "owner" if number == 2 else "member"
        )
    url = f"/organizations/{organization_id}/members"

    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        response = await live_client.get(url, query_string=query, headers=newcomers[0].headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        page = await response.get_json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "the cursors never end"

    assert [len(items) for items in pages] == [2, 2, 1]
    listed = [member for items in pages for member in items]
    expected = [owner, *newcomers]
    assert [m["user_id"] for m in listed] == [str(caller.id) for caller in expected]
    assert [m["user_name"] for m in listed] == [caller.name for caller in expected]
    assert [m["role"] for m in listed] == ["owner", "member", "member", "owner", "member"]
    for member in listed:
        assert set(member) == {"user_id", "user_name", "role", "joined_at"}
    joined = [datetime.fromisoformat(m["joined_at"]) for m in listed]
    assert all(moment.utcoffset() is not None for moment in joined)
    assert joined == sorted(joined)
    assert await _members(live_client, owner, organization_id) == listed


async def test_outsiders_get_the_404_of_an_unknown_organization_from_every_member_route(
    live_client: Client, team: Team
) -> None:
    stranger, member = team.stranger, team.member

    async def answers(organization_id: str) -> list[tuple[int, Any]]:
        base = f"/organizations/{organization_id}/members"
        responses = [
            await live_client.get(base, headers=stranger.headers),
            await live_client.get(base, query_string={"limit": 1}, headers=stranger.headers),
            await live_client.patch(
                f"{base}/{member.id}", json={"role": "owner"}, headers=stranger.headers
            ),
            await live_client.patch(
                f"{base}/{stranger.id}", json={"role": "owner"}, headers=stranger.headers
            ),
            await live_client.delete(f"{base}/{member.id}", headers=stranger.headers),
            await live_client.delete(f"{base}/{stranger.id}", headers=stranger.headers),
        ]
        return [(r.status_code, await r.get_json()) for r in responses]

    hidden = await answers(team.organization_id)
    unknown = await answers(str(uuid.uuid4()))

    assert [status for status, _ in hidden] == [404] * 6
    assert hidden == unknown
    assert await _roles(live_client, team.owner, team.organization_id) == {
        str(team.owner.id): "owner",
        str(member.id): "member",
    }


async def test_an_owner_promotes_and_demotes_a_member(live_client: Client, team: Team) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id

    promoted = await _set_role(live_client, owner, organization_id, member, "owner")

    assert promoted.status_code == 200
    body = await promoted.get_json()
    assert set(body) == {"user_id", "user_name", "role", "joined_at"}
    assert (body["user_id"], body["user_name"], body["role"]) == (
        str(member.id),
        member.name,
        "owner",
    )
    # The new role counts from the next request on: the promoted member may now do what only
    # owners may, such as demoting the one who promoted them.
    demoted_owner = await _set_role(live_client, member, organization_id, owner, "member")
    assert demoted_owner.status_code == 200
    assert (await demoted_owner.get_json())["role"] == "member"
    assert await _roles(live_client, member, organization_id) == {
        str(owner.id): "member",
        str(member.id): "owner",
    }
    # The demoted owner may change no role now; demoting the only owner left is refused as
    # what it would do (409), the answer the loser of two owners demoting each other gets.
    refused = await _set_role(live_client, owner, organization_id, member, "member")
    assert refused.status_code == 409
    unchanged = await _set_role(live_client, member, organization_id, member, "owner")
    assert unchanged.status_code == 200
    assert (await unchanged.get_json())["role"] == "owner"


async def test_a_user_who_is_not_a_member_is_404_for_role_changes_and_removal(
    live_client: Client, team: Team
) -> None:
    owner, stranger, organization_id = team.owner, team.stranger, team.organization_id

    changed = await _set_role(live_client, owner, organization_id, stranger, "owner")
    removed = await _remove(live_client, owner, organization_id, stranger)
    nobody = await live_client.patch(
        f"/organizations/{organization_id}/members/{uuid.uuid4()}",
        json={"role": "member"},
        headers=owner.headers,
    )

    assert changed.status_code == removed.status_code == nobody.status_code == 404
    assert isinstance((await changed.get_json())["detail"], str)
    assert (
        await live_client.get(f"/organizations/{organization_id}", headers=stranger.headers)
    ).status_code == 404
    assert str(stranger.id) not in await _roles(live_client, owner, organization_id)


async def test_a_plain_member_may_change_no_role_and_remove_nobody_else(
    live_client: Client, live_database: Database, team: Team
) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id
    # A second owner, so that no request below touches the last owner: each is refused only
    # because plain members may not make it.
    co_owner, colleague = await new_caller(live_database), await new_caller(live_database)
    await _add(live_client, owner, organization_id, co_owner, "owner")
    await _add(live_client, owner, organization_id, colleague)
    before = await _roles(live_client, owner, organization_id)

    responses = [
        await _set_role(live_client, member, organization_id, member, "owner"),
        await _set_role(live_client, member, organization_id, owner, "member"),
        await _set_role(live_client, member, organization_id, colleague, "owner"),
        await _remove(live_client, member, organization_id, owner),
        await _remove(live_client, member, organization_id, colleague),
        await _remove(live_client, member, organization_id, co_owner),
    ]

    assert [r.status_code for r in responses] == [403] * 6
    for response in responses:
        assert isinstance((await response.get_json())["detail"], str)
    assert await _roles(live_client, owner, organization_id) == before


@pytest.mark.parametrize("removed_by", ["owner", "themselves"])
async def test_a_removed_member_sees_nothing_of_the_organization_from_the_next_request(
    live_client: Client, live_database: Database, team: Team, removed_by: str
) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id
    own_todo = await create_todo(live_client, member, team.space_id, title="mine")
    owners_todo = await create_todo(live_client, owner, team.space_id, title="theirs")
    urls = [
        f"/organizations/{organization_id}",
        f"/organizations/{organization_id}/members",
        f"/spaces/{team.space_id}",
        f"/todos/{own_todo['id']}",
        f"/todos/{owners_todo['id']}",
    ]
    for url in urls:
        assert (await live_client.get(url, headers=member.headers)).status_code == 200

    remover = owner if removed_by == "owner" else member
    removed = await _remove(live_client, remover, organization_id, member)

    assert removed.status_code == 204
    assert await removed.get_data() == b""
    for url in urls:
        response = await live_client.get(url, headers=member.headers)
        assert response.status_code == 404, url
    changes = [
        await live_client.patch(
            f"/todos/{own_todo['id']}", json={"title": "still mine?"}, headers=member.headers
        ),
        await live_client.delete(f"/todos/{own_todo['id']}", headers=member.headers),
        await live_client.post(
            "/todos", json={"title": "late", "space_id": team.space_id}, headers=member.headers
        ),
        await live_client.post(
            "/spaces",
            json={"name": "late", "organization_id": organization_id},
            headers=member.headers,
        ),
        await _remove(live_client, member, organization_id, member),
    ]
    assert [r.status_code for r in changes] == [404] * 5
    organizations = await live_client.get("/organizations", headers=member.headers)
    assert await organizations.get_json() == []
    spaces = await live_client.get("/spaces", headers=member.headers)
    todos = await live_client.get("/todos", headers=member.headers)
    assert (await spaces.get_json())["items"] == (await todos.get_json())["items"] == []
    # The organization and the member's todo stay for the others.
    assert await _roles(live_client, owner, organization_id) == {str(owner.id): "owner"}
    kept = await live_client.get(f"/todos/{own_todo['id']}", headers=owner.headers)
    assert kept.status_code == 200
    assert (await kept.get_json())["title"] == "mine"


async def test_the_last_owner_can_neither_step_down_nor_leave(
    live_client: Client, team: Team
) -> None:
    owner, member, organization_id = team.owner, team.member, team.organization_id

    demoted = await _set_role(live_client, owner, organization_id, owner, "member")
    left = await _remove(live_client, owner, organization_id, owner)

    assert demoted.status_code == left.status_code == 409
    for response in (demoted, left):
        assert isinstance((await response.get_json())["detail"], str)
    assert await _roles(live_client, owner, organization_id) == {
        str(owner.id): "owner",
        str(member.id): "member",
    }
    # An owner may step down once another owner exists.
    promoted = await _set_role(live_client, owner, organization_id, member, "owner")
    stepped_down = await _set_role(live_client, owner, organization_id, owner, "member")
    assert promoted.status_code == stepped_down.status_code == 200
    assert await _roles(live_client, member, organization_id) == {
        str(owner.id): "member",
        str(member.id): "owner",
    }


async def _two_owners(client: Client, database: Database) -> tuple[str, Caller, Caller]:
    first, second = await new_caller(database), await new_caller(database)
    organization_id = await _organization(client, first)
    await _add(client, first, organization_id, second, "owner")
    return organization_id, first, second


async def _mutual_demotions(
    client: Client, database: Database, rounds: int
) -> list[tuple[int, Any]]:
    """Two owners demote each other at once, `rounds` times (the winner makes the other an
    owner again between rounds). Checks in every round that exactly one demotion went through
    and one owner is left, the winner; returns each round's losing (status, body)."""
    organization_id, first, second = await _two_owners(client, database)
    retries_before = database.stats.retries
    refusals: list[tuple[int, Any]] = []

    for round_number in range(rounds):
        responses = await asyncio.gather(
            _set_role(client, first, organization_id, second, "member"),
            _set_role(client, second, organization_id, first, "member"),
        )

        statuses = [r.status_code for r in responses]
        bodies = [await r.get_json() for r in responses]
        assert statuses.count(200) == 1, (round_number, statuses, bodies)
        winner, loser = (first, second) if statuses[0] == 200 else (second, first)
        demotion = bodies[statuses.index(200)]
        assert (demotion["user_id"], demotion["role"]) == (str(loser.id), "member")
        roles = await _roles(client, winner, organization_id)
        assert roles == {str(winner.id): "owner", str(loser.id): "member"}, round_number
        refusals.append((statuses[1 - statuses.index(200)], bodies[1 - statuses.index(200)]))
        restored = await _set_role(client, winner, organization_id, loser, "owner")
        assert restored.status_code == 200
        assert set((await _roles(client, winner, organization_id)).values()) == {"owner"}

    retries = database.stats.retries - retries_before
    losers = [status for status, _ in refusals]
    print(f"{rounds} rounds of mutual demotion: {retries} serialization retries, losers {losers}")
    return refusals


async def test_two_owners_demoting_each_other_at_once_leave_exactly_one_owner(
    live_client: Client, live_database: Database
) -> None:
    refusals = await _mutual_demotions(live_client, live_database, ROUNDS)

    for status, body in refusals:
        assert status == 409, refusals
        assert isinstance(body["detail"], str)


async def test_two_owners_leaving_at_once_leave_exactly_one_owner(
    live_client: Client, live_database: Database
) -> None:
    for round_number in range(ROUNDS // 2):
        organization_id, first, second = await _two_owners(live_client, live_database)

        responses = await asyncio.gather(
            _remove(live_client, first, organization_id, first),
            _remove(live_client, second, organization_id, second),
        )

        statuses = [r.status_code for r in responses]
        assert sorted(statuses) == [204, 409], (round_number, statuses)
        stayed = second if statuses[0] == 204 else first
        left = first if stayed is second else second
        assert await _roles(live_client, stayed, organization_id) == {str(stayed.id): "owner"}
        gone = await live_client.get(f"/organizations/{organization_id}", headers=left.headers)
        assert gone.status_code == 404
