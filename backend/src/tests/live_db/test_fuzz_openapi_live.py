"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every operation in `/openapi.json` gets generated requests, valid and invalid, and every
answer must keep the contract: never a 5xx, a documented status code, the documented content
type and body schema, valid input accepted and invalid input refused with a 4xx, 401 without
a token, 405 with `Allow` for a method a path does not have. A second test follows the links
between operations (create an organization, a space in it, a todo in that, then read, change
and delete the todo through the id and the ETag in the answers).

The service runs in-process over ASGI, on the live database, as the owner of an organization
with a space and todos. The document is extended (for generation only, never what it promises)
with examples naming those rows and with links between operations, so that requests reach
real resources and not only 404s. Generation is derandomized, so every run sends the same
requests; `FUZZ_EXAMPLES=200 backend/dev test tests/live_db/test_fuzz_openapi_live.py` hunts
longer than the default, which keeps CI fast.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from quart import Quart
from quart.typing import TestClientProtocol as Client
from schemathesis import Case, HookContext, Response
from schemathesis.config import SchemathesisConfig

from app.main import create_app
from app.pagination import Keyset
from app.schemas import IDEMPOTENCY_KEY_PATTERN
from app.settings import Settings
from tests import fakes
from tests.conftest import PASSWORD, Team, create_todo, make_settings, register, unique_name

pytestmark = pytest.mark.live_db

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
"""Generated requests per operation in the fuzzing phase (on top of the examples and the
boundary values of the coverage phase); raise it for a longer hunt."""

STATEFUL_SCENARIOS = FUZZ_EXAMPLES
"""Scenarios (chains of linked requests) of the stateful test."""
STATEFUL_STEPS = 10


class Row(StrEnum):
    """Rows the examples name before they exist: each test makes them, and the real ids (and
    names) take the place of these values just before a request is sent."""

    ORGANIZATION = "00000000-0000-4000-8000-00000000f001"
    SPACE = "00000000-0000-4000-8000-00000000f002"
    TODO_TO_READ = "00000000-0000-4000-8000-00000000f003"
    TODO_TO_CHANGE = "00000000-0000-4000-8000-00000000f004"
    TODO_TO_DELETE = "00000000-0000-4000-8000-00000000f005"
    USER_TO_ADD = "fuzz-placeholder-user-to-add"
    USER_TO_LOG_IN = "fuzz-placeholder-user-to-log-in"


VALID_CURSORS = [
    Keyset(datetime(9999, 1, 1, tzinfo=UTC), uuid.UUID(int=0)).encode(),  # before every row
    Keyset(datetime(2000, 1, 1, tzinfo=UTC), uuid.UUID(int=0)).encode(),  # after every row
]
"""A cursor is only valid as the service issued it (any other string is a 422, as it should
be), which a JSON Schema cannot say; for generation, the cursor may be one of these."""


IF_MATCH_EXAMPLES = ['"1"', "1", 'W/"1", "12"', "*", '"4294967296"', "2 ,\t3"]
"""The forms of If-Match the service reads (random ones are mostly a single short number)."""


def _plain(value: object) -> Any:
    """`Row` members as the plain strings a JSON document holds."""
    return json.loads(json.dumps(value))


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    assert isinstance(operation, dict)
    return operation


def _parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    for parameter in _operation(document, method, path).get("parameters", []):
        if parameter["name"] == name:
            assert isinstance(parameter, dict)
            return parameter
    raise AssertionError(f"{method.upper()} {path} has no parameter {name}")


def _parameter_example(
    document: dict[str, Any], method: str, path: str, name: str, value: object
) -> None:
    _parameter(document, method, path, name)["example"] = _plain(value)


def _parameter_examples(
    document: dict[str, Any], method: str, path: str, name: str, values: list[str]
) -> None:
    _parameter(document, method, path, name)["examples"] = {
        f"example-{number}": {"value": value} for number, value in enumerate(values)
    }


def _body_example(document: dict[str, Any], method: str, path: str, value: object) -> None:
    body = _operation(document, method, path)["requestBody"]["content"]["application/json"]
    body["example"] = _plain(value)


def _links(
    document: dict[str, Any], method: str, path: str, status: str, links: dict[str, Any]
) -> None:
    response = _operation(document, method, path)["responses"][status]
    response.setdefault("links", {}).update(links)


def fuzzing_document(served: dict[str, Any]) -> dict[str, Any]:
    """The served document with examples naming real rows, real cursors, and links between
    operations: they steer generation past the 404 of an unknown id and the 422 of a made-up
    cursor, and change nothing the document promises."""
    document = copy.deepcopy(served)
    _parameter_example(document, "get", "/todos/{todo_id}", "todo_id", Row.TODO_TO_READ)
    _parameter_example(document, "patch", "/todos/{todo_id}", "todo_id", Row.TODO_TO_CHANGE)
    _parameter_examples(document, "patch", "/todos/{todo_id}", "if-match", IF_MATCH_EXAMPLES)
    _parameter_example(document, "delete", "/todos/{todo_id}", "todo_id", Row.TODO_TO_DELETE)
    _parameter_examples(document, "delete", "/todos/{todo_id}", "if-match", IF_MATCH_EXAMPLES)
    _parameter_example(document, "get", "/todos", "space_id", Row.SPACE)
    _parameter_example(document, "get", "/spaces", "organization_id", Row.ORGANIZATION)
    _parameter_example(document, "get", "/spaces/{space_id}", "space_id", Row.SPACE)
    for method, path in (
        ("get", "/organizations/{organization_id}"),
        ("post", "/organizations/{organization_id}/members"),
        ("get", "/organizations/{organization_id}/members"),
        ("patch", "/organizations/{organization_id}"),
        ("get", "/organizations/{organization_id}/changes"),
    ):
        _parameter_example(document, method, path, "organization_id", Row.ORGANIZATION)
    # A feed token is signed and bound to its organization, so a made-up one is a 422, and
    # any value standing for a real one, wrapped in a list by a negative case, is valid
    # again: `since` is left out here (tests/unit/test_changes.py tries bad tokens).
    changes = _operation(document, "get", "/organizations/{organization_id}/changes")
    changes["parameters"] = [p for p in changes["parameters"] if p["name"] != "since"]
    # An event stream never ends by itself, so there is no whole response to check here:
    # tests/live_db/test_events_live.py holds it to its contract.
    del document["paths"]["/organizations/{organization_id}/events"]
    for path in ("/todos", "/spaces", "/organizations/{organization_id}/members"):
        _parameter(document, "get", path, "cursor")["schema"] = {"enum": VALID_CURSORS}
    _body_example(document, "post", "/todos", {"title": "fuzzed", "space_id": Row.SPACE})
    _body_example(document, "patch", "/todos/{todo_id}", {"done": True})
    _body_example(
        document, "post", "/spaces", {"name": "fuzzed", "organization_id": Row.ORGANIZATION}
    )
    _body_example(
        document,
        "post",
        "/organizations/{organization_id}/members",
        {"user_name": Row.USER_TO_ADD, "role": "owner"},
    )
    _body_example(
        document, "post", "/auth/login", {"username": Row.USER_TO_LOG_IN, "password": PASSWORD}
    )

    todo_id = {"todo_id": "$response.body#/id"}
    at_this_version = {**todo_id, "header.if-match": "$response.header.ETag"}
    todo_links = {
        "GetTodo": {"operationId": "get_get_todo", "parameters": todo_id},
        "UpdateTodo": {"operationId": "patch_update_todo", "parameters": todo_id},
        "DeleteTodo": {"operationId": "delete_delete_todo", "parameters": todo_id},
        "UpdateTodoAtThisVersion": {
            "operationId": "patch_update_todo",
            "parameters": at_this_version,
        },
        "DeleteTodoAtThisVersion": {
            "operationId": "delete_delete_todo",
            "parameters": at_this_version,
        },
    }
    _links(document, "post", "/todos", "201", todo_links)
    _links(document, "get", "/todos/{todo_id}", "200", todo_links)
    _links(document, "patch", "/todos/{todo_id}", "200", todo_links)
    first_space = "$response.body#/items/0/id"
    _links(
        document,
        "get",
        "/spaces",
        "200",
        {
            "GetFirstSpace": {
                "operationId": "get_get_space",
                "parameters": {"space_id": first_space},
            },
            "CreateTodoInFirstSpace": {
                "operationId": "post_create_todo",
                "requestBody": {"space_id": first_space},
            },
        },
    )
    space_id = "$response.body#/id"
    _links(
        document,
        "post",
        "/spaces",
        "201",
        {
            "GetSpace": {"operationId": "get_get_space", "parameters": {"space_id": space_id}},
            "ListTodosOfSpace": {
                "operationId": "get_list_todos",
                "parameters": {"space_id": space_id},
            },
            "CreateTodoInSpace": {
                "operationId": "post_create_todo",
                "requestBody": {"space_id": space_id},
            },
        },
    )
    organization_id = "$response.body#/id"
    _links(
        document,
        "post",
        "/organizations",
        "201",
        {
            "GetOrganization": {
                "operationId": "get_get_organization",
                "parameters": {"organization_id": organization_id},
            },
            "ListSpacesOfOrganization": {
                "operationId": "get_list_spaces",
                "parameters": {"organization_id": organization_id},
            },
            "AddMember": {
                "operationId": "post_add_member",
                "parameters": {"organization_id": organization_id},
            },
            "CreateSpaceInOrganization": {
                "operationId": "post_create_space",
                "requestBody": {"organization_id": organization_id},
            },
        },
    )
    return document


def served_document() -> dict[str, Any]:
    """`/openapi.json` as the service serves it.

    The document does not depend on the database, so an app on the fakes serves it here, at
    import time, where schemathesis needs it to make one test per operation.
    """

    async def fetch(app: Quart) -> Any:
        response = await app.test_client().get("/openapi.json")
        assert response.status_code == 200
        return await response.get_json()

    with tempfile.TemporaryDirectory(prefix="fuzz-openapi-") as data_dir:
        settings = make_settings(Path(data_dir))
        database = fakes.FakeDatabase(settings)
        document = asyncio.run(fetch(create_app(settings, fakes.fake_daos(), database)))
    assert isinstance(document, dict)
    return document


class AppOfTheRunningTest:
    """The ASGI app schemathesis calls: it forwards to the app of the test that is running.

    The schema, and with it the app it calls, is made at import time, before any test has a
    database. schemathesis runs the ASGI lifespan (which opens the app's connection pool) on
    an event loop of its own, in another thread, at the first request of a test, and ends it
    when the test ends.
    """

    def __init__(self) -> None:
        self.app: Quart | None = None

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if self.app is None:
            raise RuntimeError("no fuzz test is running")
        await self.app(scope, receive, send)  # type: ignore[arg-type]


app_of_the_running_test = AppOfTheRunningTest()

schema = schemathesis.openapi.from_dict(
    fuzzing_document(served_document()),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {
                "max-examples": FUZZ_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            # Values mined from the loaded modules are sampled in an order that changes with
            # each process's string hashing: off, so every run sends the same requests.
            "analysis": {"constants": {"enabled": False}},
            "phases": {
                "stateful": {
                    # Only the links above: inferred ones come and go with the data.
                    "inference": {"algorithms": []},
                    "generation": {"mode": "positive"},
                },
            },
            "checks": {
                # schemathesis's default, and 412: a stale If-Match (the todo changed since)
                # is refused, as it should be, a conflict with the state like the 409.
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
                },
            },
        }
    ),
)
schema.app = app_of_the_running_test


@schema.hook
def filter_query(context: HookContext, query: dict[str, Any] | None) -> bool:
    """Skip query strings with an empty list in them: the list stands for a wrong value, but
    it goes out as no parameter at all, so the request schemathesis calls invalid is valid."""
    return not any(value == [] for value in (query or {}).values())


_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


@dataclass
class Caller:
    """Who the fuzzed requests come from, and the real values behind each `Row`."""

    headers: dict[str, str]
    rows: dict[str, str]
    requests: Iterator[int] = field(default_factory=itertools.count)

    def prepare(self, case: Case[Any]) -> None:
        """Put the real rows in place of the `Row` values, and give each request a key of
        its own: the same Idempotency-Key with another body is a 422, as it should be (a
        replay of the same request is test_idempotency_live.py's concern)."""
        case.path_parameters = self._filled(case.path_parameters)
        case.query = self._filled(case.query)
        if isinstance(case.body, dict | list):
            case.body = self._filled(case.body)
        key = case.headers.get("Idempotency-Key") if case.headers else None
        if isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key):
            case.headers["Idempotency-Key"] = f"{key[:240]}.{next(self.requests)}"

    def name_new_organizations_apart(self, case: Case[Any]) -> None:
        """Make a new organization's name unique (a prefix keeps a valid name valid).

        Otherwise a name generated again in a later scenario is a 409 where it was a 201,
        the links from that answer vanish, and Hypothesis, which replays scenarios, sees
        them behave differently (FlakyStrategyDefinition).
        """
        if case.method != "POST" or case.path != "/organizations":
            return
        if isinstance(case.body, dict) and isinstance(case.body.get("name"), str):
            unique = f"{next(self.requests)}-{case.body['name']}"[:100]
            case.body = {**case.body, "name": unique}

    def _filled(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self._filled(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._filled(item) for item in value]
        if isinstance(value, str):
            return self.rows.get(value, value)
        return value


@pytest.fixture
async def caller(live_client: Client, live_settings: Settings, team: Team) -> AsyncIterator[Caller]:
    """The team's owner, with three todos (to read, to change, to delete) and a user who can
    log in; the app schemathesis calls runs on the same database meanwhile."""
    user_to_log_in = unique_name("login")
    await register(live_client, user_to_log_in)
    todos = [await create_todo(live_client, team.owner, team.space_id) for _ in range(3)]
    rows = {
        Row.ORGANIZATION: team.organization_id,
        Row.SPACE: team.space_id,
        Row.TODO_TO_READ: todos[0]["id"],
        Row.TODO_TO_CHANGE: todos[1]["id"],
        Row.TODO_TO_DELETE: todos[2]["id"],
        Row.USER_TO_ADD: team.stranger.name,
        Row.USER_TO_LOG_IN: user_to_log_in,
    }
    app_of_the_running_test.app = create_app(live_settings)
    yield Caller(dict(team.owner.headers), {str(row): value for row, value in rows.items()})
    app_of_the_running_test.app = None


@schema.parametrize()
@hypothesis.settings(
    # The caller's rows are shared by every request of the test on purpose.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
def test_every_operation_keeps_its_contract(case: Case[Any], caller: Caller) -> None:
    """Examples, boundary values (coverage phase) and random requests, valid and invalid."""
    caller.prepare(case)
    case.call_and_validate(headers=caller.headers)


def test_linked_operations_keep_their_contract(caller: Caller) -> None:
    """Chains of requests along the links, where schemathesis also checks that what was
    created can be read (ensure_resource_availability) and what was deleted cannot
    (use_after_free). Valid requests only: the invalid ones are the test above's."""
    reached: set[str] = set()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case[Any]) -> None:
            caller.prepare(case)
            caller.name_new_organizations_apart(case)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": caller.headers}

        def after_call(self, response: Response, case: Case[Any]) -> None:
            super().after_call(response, case)
            reached.add(f"{case.method} {case.path} {response.status_code}")

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],  # what schemathesis runs its own with
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )

    assert {
        "POST /todos 201",
        "GET /todos/{todo_id} 200",
        "PATCH /todos/{todo_id} 200",
        "DELETE /todos/{todo_id} 204",
    } <= reached, sorted(reached)
