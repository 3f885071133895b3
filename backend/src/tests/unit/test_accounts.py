"""Sessions and accounts, on FakeDAOs: logging out, changing the password, deleting the account.

Tokens here come from real logins (each costs an argon2 check), because what is tested is
which of a user's tokens still count. Users who only need to be there are made with
`new_caller`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from tests.conftest import PASSWORD, Caller, login, register, unique_name
from tests.unit.assertions import (
    add_member,
    assert_error,
    assert_unauthorized,
    assert_validation_error,
    create_organization,
    create_todo,
    new_caller,
    new_workspace,
)

NEW_PASSWORD = "a new and longer passphrase"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _registered(client: QuartClient, name: str | None = None) -> Caller:
    """A user registered through the API, with the token of one login."""
    name = name or unique_name()
    user = await register(client, name)
    return Caller(uuid.UUID(user["id"]), name, _bearer(await login(client, name)))


async def _login_response(client: QuartClient, name: str, password: str) -> Response:
    return await client.post("/auth/login", json={"username": name, "password": password})


async def _logout(client: QuartClient, headers: dict[str, str], body: Any = None) -> Response:
    if body is None:
        return await client.post("/auth/logout", headers=headers)
    return await client.post("/auth/logout", json=body, headers=headers)


async def _change_password(
    client: QuartClient, caller: Caller, current: str = PASSWORD, new: str = NEW_PASSWORD
) -> Response:
    return await client.post(
        "/me/password",
        json={"current_password": current, "new_password": new},
        headers=caller.headers,
    )


async def _delete_account(
    client: QuartClient, caller: Caller, password: str = PASSWORD
) -> Response:
    return await client.post("/me/deletion", json={"password": password}, headers=caller.headers)


async def _assert_token_works(client: QuartClient, headers: dict[str, str]) -> None:
    response = await client.get("/me", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)


def _max_failures(app: Quart) -> int:
    return int(app.extensions["settings"].login_max_failures_per_user)


# Logout -------------------------------------------------------------------------------------


async def test_logout_without_a_token_is_401(client: QuartClient) -> None:
    await assert_unauthorized(await _logout(client, {}))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"everywhere": "yes"}, id="everywhere-as-string"),
        pytest.param({"everywhere": "true"}, id="everywhere-as-string-true"),
        pytest.param({"everywhere": 1}, id="everywhere-as-number"),
        pytest.param({"everywhere": None}, id="everywhere-null"),
        pytest.param({"all": True}, id="unknown-field"),
        pytest.param({"everywhere": True, "token": "x"}, id="extra-field"),
        pytest.param([True], id="list-body"),
    ],
)
async def test_logout_refuses_an_invalid_body_and_keeps_the_token(
    client: QuartClient, body: Any
) -> None:
    caller = await _registered(client)

    response = await _logout(client, caller.headers, body)

    await assert_validation_error(response)
    await _assert_token_works(client, caller.headers)


async def test_two_logins_in_a_row_give_distinct_tokens(client: QuartClient) -> None:
    name = unique_name()
    await register(client, name)

    first, second = await login(client, name), await login(client, name)

    assert first != second


async def test_a_logged_out_token_is_refused_everywhere(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client, caller)
    todo = await create_todo(client, caller, workspace.space["id"])

    response = await _logout(client, caller.headers)

    assert response.status_code == 204
    assert await response.get_data() == b""
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/me", None),
        ("GET", "/todos", None),
        ("GET", f"/todos/{todo['id']}", None),
        ("POST", "/todos", {"title": "after logout", "space_id": workspace.space["id"]}),
        ("PATCH", f"/todos/{todo['id']}", {"done": True}),
        ("GET", "/organizations", None),
        ("POST", "/auth/logout", None),
    ]
    for method, path, body in requests:
        with subtests.test(request=f"{method} {path}"):
            await assert_unauthorized(
                await client.open(path, method=method, json=body, headers=caller.headers)
            )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="no-body"),
        pytest.param({}, id="empty-object"),
        pytest.param({"everywhere": False}, id="everywhere-false"),
    ],
)
async def test_logout_refuses_only_the_presented_token(client: QuartClient, body: Any) -> None:
    caller = await _registered(client)
    second = _bearer(await login(client, caller.name))

    response = await _logout(client, caller.headers, body)

    assert response.status_code == 204
    await assert_unauthorized(await client.get("/me", headers=caller.headers))
    await _assert_token_works(client, second)


async def test_logout_leaves_other_users_tokens_alone(client: QuartClient) -> None:
    caller, other = await new_caller(client), await new_caller(client)

    assert (await _logout(client, caller.headers)).status_code == 204

    await _assert_token_works(client, other.headers)


async def test_logout_everywhere_refuses_every_token_issued_so_far(client: QuartClient) -> None:
    caller = await _registered(client)
    second = _bearer(await login(client, caller.name))

    response = await _logout(client, caller.headers, {"everywhere": True})

    assert response.status_code == 204
    for headers in (caller.headers, second):
        await assert_unauthorized(await client.get("/me", headers=headers))
        await assert_unauthorized(await client.get("/todos", headers=headers))


async def test_a_new_login_works_after_logout_everywhere(client: QuartClient) -> None:
    caller = await _registered(client)
    assert (await _logout(client, caller.headers, {"everywhere": True})).status_code == 204

    token = await login(client, caller.name)

    await _assert_token_works(client, _bearer(token))


# Change the password ------------------------------------------------------------------------


async def test_a_wrong_current_password_is_403_and_changes_nothing(client: QuartClient) -> None:
    caller = await _registered(client)

    response = await _change_password(client, caller, current="not the password")

    assert isinstance(await assert_error(response, 403), str)
    await _assert_token_works(client, caller.headers)
    await assert_unauthorized(await _login_response(client, caller.name, NEW_PASSWORD))


async def test_wrong_current_passwords_count_as_failed_logins(
    client: QuartClient, app: Quart
) -> None:
    caller = await _registered(client)
    for _ in range(_max_failures(app)):
        await assert_error(await _change_password(client, caller, current="a guess"), 403)

    response = await _login_response(client, caller.name, PASSWORD)

    await assert_error(response, 429)
    assert int(response.headers["Retry-After"]) > 0


async def test_a_password_change_is_429_while_logins_are_limited(
    client: QuartClient, app: Quart
) -> None:
    """A stolen token must not open a way around the login limits."""
    caller = await _registered(client)
    for _ in range(_max_failures(app)):
        await assert_unauthorized(await _login_response(client, caller.name, "a guess"))

    response = await _change_password(client, caller)

    await assert_error(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    await _assert_token_works(client, caller.headers)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"current_password": PASSWORD, "new_password": "x" * 7},
            "new_password",
            id="new-too-short",
        ),
        pytest.param(
            {"current_password": PASSWORD, "new_password": "x" * 257},
            "new_password",
            id="new-too-long",
        ),
        pytest.param({"current_password": PASSWORD}, "new_password", id="new-missing"),
        pytest.param({"new_password": NEW_PASSWORD}, "current_password", id="current-missing"),
        pytest.param(
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "user_id": "x"},
            "user_id",
            id="extra-field",
        ),
    ],
)
async def test_a_password_change_refuses_an_invalid_body(
    client: QuartClient, body: dict[str, Any], field: str
) -> None:
    caller = await _registered(client)

    response = await client.post("/me/password", json=body, headers=caller.headers)

    detail = await assert_validation_error(response)
    assert [item["loc"] for item in detail] == [[field]]
    await _assert_token_works(client, caller.headers)


async def test_a_password_change_answers_a_new_token_in_the_login_shape(
    client: QuartClient, app: Quart
) -> None:
    caller = await _registered(client)

    response = await _change_password(client, caller)

    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.extensions["settings"].token_ttl_seconds
    me = await client.get("/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200
    assert (await me.get_json())["id"] == str(caller.id)


async def test_a_password_change_refuses_every_earlier_token(client: QuartClient) -> None:
    caller = await _registered(client)
    second = _bearer(await login(client, caller.name))

    response = await _change_password(client, caller)

    assert response.status_code == 200
    for headers in (caller.headers, second):
        await assert_unauthorized(await client.get("/me", headers=headers))
        await assert_unauthorized(await client.get("/organizations", headers=headers))


async def test_after_a_password_change_only_the_new_password_logs_in(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    assert (await _change_password(client, caller)).status_code == 200

    old = await _login_response(client, caller.name, PASSWORD)
    new = await _login_response(client, caller.name, NEW_PASSWORD)

    await assert_unauthorized(old)
    assert new.status_code == 200, await new.get_data(as_text=True)
    await _assert_token_works(client, _bearer((await new.get_json())["access_token"]))


# Delete the account -------------------------------------------------------------------------


async def test_deleting_the_account_with_a_wrong_password_is_403_and_keeps_it(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client, caller)

    response = await _delete_account(client, caller, "not the password")

    assert isinstance(await assert_error(response, 403), str)
    await _assert_token_works(client, caller.headers)
    organization = await client.get(
        f"/organizations/{workspace.organization['id']}", headers=caller.headers
    )
    assert organization.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing-password"),
        pytest.param({"password": ""}, id="empty-password"),
        pytest.param({"password": PASSWORD, "force": True}, id="extra-field"),
    ],
)
async def test_deleting_the_account_refuses_an_invalid_body(client: QuartClient, body: Any) -> None:
    caller = await _registered(client)

    response = await client.post("/me/deletion", json=body, headers=caller.headers)

    await assert_validation_error(response)
    await _assert_token_works(client, caller.headers)


async def test_the_last_owner_of_a_shared_organization_cannot_delete_the_account(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    member = await new_caller(client)
    organization = await create_organization(client, caller)
    await add_member(client, caller, organization["id"], member)

    response = await _delete_account(client, caller)

    detail = await assert_error(response, 409)
    assert isinstance(detail, str)
    assert organization["name"] in detail
    assert "owner" in detail.lower()
    assert "delete the organization" in detail.lower()
    await _assert_token_works(client, caller.headers)
    members = await client.get(
        f"/organizations/{organization['id']}/members", headers=member.headers
    )
    roles = {m["user_id"]: m["role"] for m in (await members.get_json())["items"]}
    assert roles == {str(caller.id): "owner", str(member.id): "member"}


async def test_the_account_can_go_once_another_member_is_made_owner(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    member = await new_caller(client)
    organization = await create_organization(client, caller)
    await add_member(client, caller, organization["id"], member)
    promoted = await client.patch(
        f"/organizations/{organization['id']}/members/{member.id}",
        json={"role": "owner"},
        headers=caller.headers,
    )
    assert promoted.status_code == 200

    response = await _delete_account(client, caller)

    assert response.status_code == 204
    assert await response.get_data() == b""
    members = await client.get(
        f"/organizations/{organization['id']}/members", headers=member.headers
    )
    assert members.status_code == 200
    assert [(m["user_id"], m["role"]) for m in (await members.get_json())["items"]] == [
        (str(member.id), "owner")
    ]


async def test_a_deleted_accounts_tokens_are_refused(client: QuartClient) -> None:
    caller = await _registered(client)
    second = _bearer(await login(client, caller.name))

    assert (await _delete_account(client, caller)).status_code == 204

    for headers in (caller.headers, second):
        await assert_unauthorized(await client.get("/me", headers=headers))
        await assert_unauthorized(await client.get("/todos", headers=headers))
    await assert_unauthorized(await _login_response(client, caller.name, PASSWORD))


async def test_organizations_only_the_caller_belonged_to_go_with_the_account(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client, caller)
    assert (await _delete_account(client, caller)).status_code == 204

    again = await _registered(client, caller.name)
    reused = await client.post(
        "/organizations", json={"name": workspace.organization["name"]}, headers=again.headers
    )

    assert reused.status_code == 201, await reused.get_data(as_text=True)
    reused_id = (await reused.get_json())["id"]
    listed = await (await client.get("/organizations", headers=again.headers)).get_json()
    assert [o["id"] for o in listed] == [reused_id]
    for path in (
        f"/organizations/{workspace.organization['id']}",
        f"/spaces/{workspace.space['id']}",
    ):
        assert (await client.get(path, headers=again.headers)).status_code == 404


async def test_the_deleted_accounts_todos_stay_without_an_author(client: QuartClient) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client)
    await add_member(client, workspace.owner, workspace.organization["id"], caller)
    todo = await create_todo(client, caller, workspace.space["id"])

    assert (await _delete_account(client, caller)).status_code == 204

    response = await client.get(f"/todos/{todo['id']}", headers=workspace.owner.headers)
    assert response.status_code == 200
    kept = await response.get_json()
    assert kept["user_id"] is None
    assert (kept["title"], kept["content"], kept["done"]) == (
        todo["title"],
        todo["content"],
        todo["done"],
    )
    listed = await (await client.get("/todos", headers=workspace.owner.headers)).get_json()
    assert [t["id"] for t in listed["items"]] == [todo["id"]]


async def test_an_owner_may_still_change_a_deleted_accounts_todo(client: QuartClient) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client)
    await add_member(client, workspace.owner, workspace.organization["id"], caller)
    todo = await create_todo(client, caller, workspace.space["id"])
    assert (await _delete_account(client, caller)).status_code == 204

    response = await client.patch(
        f"/todos/{todo['id']}", json={"done": True}, headers=workspace.owner.headers
    )

    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert (body["done"], body["user_id"]) == (True, None)


async def test_a_plain_member_still_cannot_change_a_deleted_accounts_todo(
    client: QuartClient,
) -> None:
    caller = await _registered(client)
    workspace = await new_workspace(client)
    member = await new_caller(client)
    for joiner in (caller, member):
        await add_member(client, workspace.owner, workspace.organization["id"], joiner)
    todo = await create_todo(client, caller, workspace.space["id"])
    assert (await _delete_account(client, caller)).status_code == 204

    response = await client.patch(
        f"/todos/{todo['id']}", json={"done": True}, headers=member.headers
    )

    await assert_error(response, 403)


async def test_a_deleted_accounts_name_can_be_registered_again(client: QuartClient) -> None:
    caller = await _registered(client)
    assert (await _delete_account(client, caller)).status_code == 204

    response = await client.post(
        "/auth/register", json={"name": caller.name, "password": NEW_PASSWORD}
    )

    assert response.status_code == 201, await response.get_data(as_text=True)
    assert (await response.get_json())["id"] != str(caller.id)
    await assert_unauthorized(await client.get("/me", headers=caller.headers))
    token = await login(client, caller.name, NEW_PASSWORD)
    me = await (await client.get("/me", headers=_bearer(token))).get_json()
    assert (me["name"], me["organizations"]) == (caller.name, [])
