"""Todos, on FakeDAOs: create, list, read, change and delete, with versions as ETags.

Members see every todo of their organizations' spaces; only the author and the organization's
owners may change or delete one. Listing and paging live in test_pagination.py. The last
section checks that the OpenAPI document describes the resource routes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel
from quart.typing import TestClientProtocol as QuartClient

from app.api.etags import expected_versions
from app.errors import InvalidInput
from app.schemas import (
    MemberAdd,
    MemberOut,
    OrganizationCreate,
    OrganizationOut,
    SpaceCreate,
    SpaceOut,
    SpacePage,
    TodoCreate,
    TodoOut,
    TodoPage,
    TodoUpdate,
)
from tests import fakes
from tests.unit.assertions import (
    Caller,
    Workspace,
    add_member,
    assert_error,
    assert_validation_error,
    create_todo,
    new_caller,
    new_workspace,
)


@dataclass(frozen=True)
class Team:
    """An organization with an owner and a plain member, and one space."""

    workspace: Workspace
    member: Caller

    @property
    def owner(self) -> Caller:
        return self.workspace.owner

    @property
    def space_id(self) -> str:
        return str(self.workspace.space["id"])


@pytest.fixture
async def team(client: QuartClient) -> Team:
    workspace = await new_workspace(client)
    member = await new_caller(client)
    await add_member(client, workspace.owner, workspace.organization["id"], member)
    return Team(workspace=workspace, member=member)


async def _todos(client: QuartClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get("/todos", query_string=params, headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    page = await response.get_json()
    assert set(page) == {"items", "next_cursor"}
    return page


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def _if_match(caller: Caller, if_match: str | None) -> dict[str, str]:
    return caller.headers if if_match is None else {**caller.headers, "If-Match": if_match}


async def _patch(
    client: QuartClient,
    caller: Caller,
    todo_id: str,
    body: Any,
    if_match: str | None = None,
) -> Any:
    return await client.patch(f"/todos/{todo_id}", json=body, headers=_if_match(caller, if_match))


async def _delete(
    client: QuartClient, caller: Caller, todo_id: str, if_match: str | None = None
) -> Any:
    return await client.delete(f"/todos/{todo_id}", headers=_if_match(caller, if_match))


def _stored(todo_id: str) -> fakes.FakeTodo:
    return fakes.FakeTodoDAO.rows[uuid.UUID(todo_id)]


async def _fetched(client: QuartClient, caller: Caller, todo_id: str) -> dict[str, Any]:
    response = await client.get(f"/todos/{todo_id}", headers=caller.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert response.headers.get("ETag") == f'"{body["version"]}"'
    return body


# Create -------------------------------------------------------------------------------------


async def test_create_todo_accepts_the_largest_fields(client: QuartClient) -> None:
    workspace = await new_workspace(client)

    body = await create_todo(
        client,
        workspace.owner,
        workspace.space["id"],
        title="t" * 200,
        content="c" * 10_000,
        done=True,
    )

    assert (len(body["title"]), len(body["content"]), body["done"]) == (200, 10_000, True)


async def test_create_todo_as_a_member_who_is_not_the_owner(
    team: Team, client: QuartClient
) -> None:
    body = await create_todo(client, team.member, team.space_id)

    assert body["user_id"] == str(team.member.id)
    assert _ids((await _todos(client, team.owner))["items"]) == [body["id"]]


INVALID_TODOS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("empty-title", {"title": ""}, ["title"]),
    ("201-character-title", {"title": "t" * 201}, ["title"]),
    ("null-title", {"title": None}, ["title"]),
    ("10001-character-content", {"content": "c" * 10_001}, ["content"]),
    ("null-content", {"content": None}, ["content"]),
    ("done-as-string", {"done": "yes"}, ["done"]),
    ("done-as-string-true", {"done": "true"}, ["done"]),
    ("done-as-number", {"done": 1}, ["done"]),
    ("null-done", {"done": None}, ["done"]),
    ("space-id-not-a-uuid", {"space_id": "not-a-uuid"}, ["space_id"]),
    ("null-space-id", {"space_id": None}, ["space_id"]),
    ("unknown-field", {"priority": 1}, ["priority"]),
    ("extra-version", {"version": 7}, ["version"]),
    ("extra-user-id", {"user_id": str(uuid.uuid4())}, ["user_id"]),
]


async def test_create_todo_refuses_an_invalid_body(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    valid = {"title": "fine", "space_id": workspace.space["id"]}

    for case, changes, loc in INVALID_TODOS:
        with subtests.test(case=case):
            response = await client.post(
                "/todos", json={**valid, **changes}, headers=workspace.owner.headers
            )

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    for missing in ("title", "space_id"):
        with subtests.test(case=f"missing-{missing}"):
            body = {key: value for key, value in valid.items() if key != missing}
            response = await client.post("/todos", json=body, headers=workspace.owner.headers)

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [[missing]]
    assert fakes.FakeTodoDAO.rows == {}


# Get ----------------------------------------------------------------------------------------


async def test_get_todo_as_a_member_with_its_etag(team: Team, client: QuartClient) -> None:
    todo = await create_todo(client, team.owner, team.space_id, content="details")

    assert await _fetched(client, team.member, todo["id"]) == todo


# Patch --------------------------------------------------------------------------------------


async def test_author_patches_a_todo_and_its_version_grows(team: Team, client: QuartClient) -> None:
    todo = await create_todo(client, team.member, team.space_id)

    response = await _patch(
        client, team.member, todo["id"], {"title": "renamed", "content": "new", "done": True}
    )

    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body == {
        **todo,
        "title": "renamed",
        "content": "new",
        "done": True,
        "version": 2,
        "updated_at": body["updated_at"],
    }
    assert datetime.fromisoformat(body["updated_at"]) >= datetime.fromisoformat(todo["updated_at"])
    assert response.headers.get("ETag") == '"2"'
    assert await _fetched(client, team.owner, todo["id"]) == body


async def test_patch_changes_only_the_given_fields(team: Team, client: QuartClient) -> None:
    todo = await create_todo(client, team.member, team.space_id, content="keep", done=True)

    response = await _patch(client, team.member, todo["id"], {"done": False})

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["title"], body["content"], body["done"]) == (todo["title"], "keep", False)
    assert body["version"] == 2


async def test_a_plain_member_cannot_patch_someone_elses_todo(
    team: Team, client: QuartClient
) -> None:
    todo = await create_todo(client, team.owner, team.space_id)

    plain = await _patch(client, team.member, todo["id"], {"title": "hijacked"})
    with_current_version = await _patch(
        client, team.member, todo["id"], {"title": "hijacked"}, if_match='"1"'
    )
    with_stale_version = await _patch(
        client, team.member, todo["id"], {"title": "hijacked"}, if_match='"7"'
    )

    for response in (plain, with_current_version, with_stale_version):
        assert isinstance(await assert_error(response, 403), str)
    assert await _fetched(client, team.owner, todo["id"]) == todo


async def test_patch_with_the_current_version_in_any_if_match_form(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])
    forms = {
        "bare": "{v}",
        "etag": '"{v}"',
        "weak-etag": 'W/"{v}"',
        "padded": '  "{v}"  ',
        "list": '"99", "{v}"',
        "star": "*",
    }

    version = 1
    for case, form in forms.items():
        with subtests.test(case=case):
            response = await _patch(
                client,
                workspace.owner,
                todo["id"],
                {"title": f"via {case}"},
                if_match=form.format(v=version),
            )

            assert response.status_code == 200, await response.get_data(as_text=True)
            assert (await response.get_json())["version"] == version + 1
            assert response.headers.get("ETag") == f'"{version + 1}"'
        version = _stored(todo["id"]).version


async def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])
    changed = await _patch(client, workspace.owner, todo["id"], {"title": "second"})
    current = await changed.get_json()
    assert current["version"] == 2

    for if_match in ("1", '"1"', 'W/"1"', '"3"', '"0", "1"'):
        with subtests.test(if_match=if_match):
            response = await _patch(
                client, workspace.owner, todo["id"], {"title": "lost update"}, if_match=if_match
            )

            assert isinstance(await assert_error(response, 412), str)
    assert await _fetched(client, workspace.owner, todo["id"]) == current


MALFORMED_IF_MATCHES = (
    "abc",
    "1.5",
    "1.0",
    "",
    '"',
    '""',
    '"1',
    "W/",
    "-1",
    "+1",
    "1e3",
    "\uff11",
    '"1"x',
    "1,,2",
)


async def test_patch_or_delete_with_a_malformed_if_match_is_422_and_changes_nothing(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])

    for if_match in MALFORMED_IF_MATCHES:
        with subtests.test(if_match=if_match):
            patched = await _patch(
                client, workspace.owner, todo["id"], {"done": True}, if_match=if_match
            )
            deleted = await _delete(client, workspace.owner, todo["id"], if_match=if_match)

            for response in (patched, deleted):
                detail = await assert_validation_error(response)
                assert [item["loc"] for item in detail] == [["header", "If-Match"]]
    assert await _fetched(client, workspace.owner, todo["id"]) == todo


@pytest.mark.parametrize("huge", [str(2**31), "9" * 19, "9" * 400])
async def test_a_version_no_todo_can_have_is_stale_not_an_error(
    client: QuartClient, huge: str
) -> None:
    """Versions are 32-bit: a larger tag is well-formed but names no state, so 412."""
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])

    response = await _patch(client, workspace.owner, todo["id"], {"done": True}, if_match=huge)

    await assert_error(response, 412)
    assert await _fetched(client, workspace.owner, todo["id"]) == todo


@pytest.mark.parametrize("digit", ["\uff11", "\u00b2", "\u0663"])
def test_if_match_versions_are_ascii_digits_only(digit: str) -> None:
    """Headers arrive as latin-1 over HTTP, so this guards the parser itself."""
    with pytest.raises(InvalidInput):
        expected_versions(digit)


INVALID_PATCHES: list[tuple[str, Any, list[str] | None]] = [
    ("empty-object", {}, None),
    ("null-title", {"title": None}, None),
    ("null-content", {"content": None}, None),
    ("null-done", {"done": None}, None),
    ("null-beside-a-value", {"title": "fine", "done": None}, None),
    ("empty-title", {"title": ""}, ["title"]),
    ("201-character-title", {"title": "t" * 201}, ["title"]),
    ("10001-character-content", {"content": "c" * 10_001}, ["content"]),
    ("done-as-string", {"done": "yes"}, ["done"]),
    ("done-as-string-true", {"done": "true"}, ["done"]),
    ("unknown-field", {"priority": 1}, ["priority"]),
    ("version-field", {"version": 9}, ["version"]),
    ("author-field", {"user_id": str(uuid.uuid4())}, ["user_id"]),
    ("move-to-another-space", {"space_id": str(uuid.uuid4())}, ["space_id"]),
    ("list-body", [{"title": "x"}], None),
    ("empty-list-body", [], None),
    ("string-body", "title", None),
]


async def test_patch_refuses_an_invalid_body(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])

    for case, body, loc in INVALID_PATCHES:
        with subtests.test(case=case):
            response = await _patch(client, workspace.owner, todo["id"], body)

            detail = await assert_validation_error(response)
            if loc is not None:
                assert [item["loc"] for item in detail] == [loc]
    assert await _fetched(client, workspace.owner, todo["id"]) == todo


# Delete -------------------------------------------------------------------------------------


async def test_delete_with_a_stale_or_malformed_if_match_keeps_the_todo(
    client: QuartClient,
) -> None:
    workspace = await new_workspace(client)
    todo = await create_todo(client, workspace.owner, workspace.space["id"])
    current = await (await _patch(client, workspace.owner, todo["id"], {"done": True})).get_json()

    stale = await _delete(client, workspace.owner, todo["id"], if_match='"1"')
    malformed = await _delete(client, workspace.owner, todo["id"], if_match="abc")

    assert isinstance(await assert_error(stale, 412), str)
    detail = await assert_validation_error(malformed)
    assert [item["loc"] for item in detail] == [["header", "If-Match"]]
    assert await _fetched(client, workspace.owner, todo["id"]) == current
    deleted = await _delete(client, workspace.owner, todo["id"], if_match='W/"2"')
    assert deleted.status_code == 204


# Text the database cannot store ---------------------------------------------------------------


async def test_text_the_database_cannot_store_is_refused_with_422(
    client: QuartClient, subtests: pytest.Subtests
) -> None:
    """PostgreSQL refuses a NUL character in text: refused at the door, not a 500 later."""
    workspace = await new_workspace(client)
    space_id, organization_id = workspace.space["id"], workspace.organization["id"]
    todo = await create_todo(client, workspace.owner, space_id)
    nul = "before\x00after"
    cases: list[tuple[str, str, str, dict[str, Any], list[str]]] = [
        ("organization-name", "POST", "/organizations", {"name": nul}, ["name"]),
        (
            "space-name",
            "POST",
            "/spaces",
            {"name": nul, "organization_id": organization_id},
            ["name"],
        ),
        ("todo-title", "POST", "/todos", {"title": nul, "space_id": space_id}, ["title"]),
        (
            "todo-content",
            "POST",
            "/todos",
            {"title": "fine", "content": nul, "space_id": space_id},
            ["content"],
        ),
        ("patched-title", "PATCH", f"/todos/{todo['id']}", {"title": nul}, ["title"]),
        ("patched-content", "PATCH", f"/todos/{todo['id']}", {"content": nul}, ["content"]),
    ]

    for case, method, path, body, loc in cases:
        with subtests.test(case=case):
            response = await client.open(
                path, method=method, json=body, headers=workspace.owner.headers
            )

            detail = await assert_validation_error(response)
            assert [item["loc"] for item in detail] == [loc]
    with subtests.test(case="lone-surrogate-title"):
        response = await client.post(
            "/todos",
            data=f'{{"title": "half \\udfff", "space_id": "{space_id}"}}',
            headers={**workspace.owner.headers, "Content-Type": "application/json"},
        )

        detail = await assert_validation_error(response)
        assert [item["loc"] for item in detail] == [["title"]]
    assert len(fakes.FakeOrganizationDAO.rows) == 1
    assert len(fakes.FakeSpaceDAO.rows) == 1
    assert await _fetched(client, workspace.owner, todo["id"]) == todo


# OpenAPI: the resource routes are documented --------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document must say about one resource route."""

    route: str
    success: int
    body: type[BaseModel] | None
    """The success body's model; a list of it when `many`."""
    errors: set[int]
    request: type[BaseModel] | None = None
    query: set[str] = field(default_factory=set)
    many: bool = False

    @property
    def method(self) -> str:
        return self.route.split()[0].lower()

    @property
    def path(self) -> str:
        return self.route.split()[1]


MALFORMED_OR_OVERSIZED_BODY = {400, 413}
"""Documented for every operation that reads a body, whatever its route (app.http.openapi)."""
IDEMPOTENT = {"idempotency-key"}
CONDITIONAL = {"if-match"}
PAGE_ITEMS: dict[type[BaseModel], type[BaseModel]] = {TodoPage: TodoOut, SpacePage: SpaceOut}
RESOURCE_OPERATIONS = [
    Operation("POST /organizations", 201, OrganizationOut, {401, 409, 422}, OrganizationCreate),
    Operation("GET /organizations", 200, OrganizationOut, {401}, many=True),
    Operation("GET /organizations/{organization_id}", 200, OrganizationOut, {401, 404}),
    Operation(
        "POST /organizations/{organization_id}/members",
        201,
        MemberOut,
        {401, 403, 404, 409, 422},
        MemberAdd,
    ),
    Operation("POST /spaces", 201, SpaceOut, {401, 404, 422}, SpaceCreate),
    Operation(
        "GET /spaces", 200, SpacePage, {401, 422}, query={"organization_id", "limit", "cursor"}
    ),
    Operation("GET /spaces/{space_id}", 200, SpaceOut, {401, 404}),
    Operation("POST /todos", 201, TodoOut, {401, 404, 422}, TodoCreate),
    Operation(
        "GET /todos", 200, TodoPage, {401, 422}, query={"space_id", "done", "limit", "cursor"}
    ),
    Operation("GET /todos/{todo_id}", 200, TodoOut, {401, 404}),
    Operation("PATCH /todos/{todo_id}", 200, TodoOut, {401, 403, 404, 412, 422}, TodoUpdate),
    Operation("DELETE /todos/{todo_id}", 204, None, {401, 403, 404, 412, 422}),
]


def _expected_headers(operation: Operation) -> set[str]:
    if operation.route == "GET /todos/{todo_id}":
        return {"if-none-match"}
    if operation.method == "post":
        return IDEMPOTENT
    return CONDITIONAL if operation.method in {"patch", "delete"} else set()


@pytest.fixture
async def openapi(client: QuartClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert isinstance(spec, dict)
    return spec


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s to `#/components/schemas/...` until a concrete schema."""
    while "$ref" in schema:
        prefix = "#/components/schemas/"
        assert schema["$ref"].startswith(prefix)
        schema = spec["components"]["schemas"][schema["$ref"].removeprefix(prefix)]
    return schema


def _json_schema(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    return _resolve(spec, container["content"]["application/json"]["schema"])


def _operation(spec: dict[str, Any], operation: Operation) -> dict[str, Any]:
    assert operation.path in spec["paths"], sorted(spec["paths"])
    assert operation.method in spec["paths"][operation.path]
    entry = spec["paths"][operation.path][operation.method]
    assert isinstance(entry, dict)
    return entry


def _parameters(spec: dict[str, Any], operation: Operation, where: str) -> dict[str, Any]:
    parameters = _operation(spec, operation).get("parameters", [])
    return {p["name"].lower(): p for p in parameters if p["in"] == where}


async def test_openapi_documents_the_request_bodies(
    openapi: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for operation in RESOURCE_OPERATIONS:
        with subtests.test(operation=operation.route):
            entry = _operation(openapi, operation)
            if operation.request is None:
                assert "requestBody" not in entry
                continue
            schema = _json_schema(openapi, entry["requestBody"])
            fields = operation.request.model_fields
            assert set(schema["properties"]) == set(fields)
            assert schema.get("additionalProperties") is False
            required = {name for name, field in fields.items() if field.is_required()}
            assert set(schema.get("required", [])) == required


async def test_openapi_documents_the_parameters(
    openapi: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for operation in RESOURCE_OPERATIONS:
        with subtests.test(operation=operation.route):
            query = _parameters(openapi, operation, "query")
            in_path = _parameters(openapi, operation, "path")
            headers = _parameters(openapi, operation, "header")

            assert set(query) == operation.query
            if "limit" in query:
                limit = query["limit"]["schema"]
                assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 50)
            assert set(in_path) == set(re.findall(r"{(\w+)}", operation.path))
            assert all(parameter.get("required") for parameter in in_path.values())
            assert set(headers) == _expected_headers(operation)


async def test_openapi_documents_the_success_responses(
    openapi: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for operation in RESOURCE_OPERATIONS:
        with subtests.test(operation=operation.route):
            responses = _operation(openapi, operation)["responses"]
            assert str(operation.success) in responses, sorted(responses)
            if operation.body is None:
                assert "content" not in responses[str(operation.success)]
                continue
            schema = _json_schema(openapi, responses[str(operation.success)])
            if operation.many:
                assert schema["type"] == "array"
                schema = _resolve(openapi, schema["items"])
            assert set(schema["properties"]) == set(operation.body.model_fields)
            if operation.body in PAGE_ITEMS:
                items = _resolve(openapi, schema["properties"]["items"]["items"])
                assert set(items["properties"]) == set(PAGE_ITEMS[operation.body].model_fields)


async def test_openapi_documents_the_error_statuses_with_the_one_error_shape(
    openapi: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for operation in RESOURCE_OPERATIONS:
        with subtests.test(operation=operation.route):
            responses = _operation(openapi, operation)["responses"]
            errors = {int(status) for status in responses if int(status) >= 400}
            body_errors = MALFORMED_OR_OVERSIZED_BODY if operation.request is not None else set()
            assert errors == operation.errors | body_errors
            for status in errors:
                schema = _json_schema(openapi, responses[str(status)])
                assert set(schema["properties"]) == {"detail"}
                assert schema["required"] == ["detail"]
