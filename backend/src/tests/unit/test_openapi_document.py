"""The OpenAPI document says what the service enforces, no more and no less.

A client (or a fuzzer: tests/live_db/test_fuzz_openapi_live.py) that sends what the document
allows must not be refused, and what the document refuses must be refused. These tests pin the
places where quart-schema and pydantic alone got that wrong, and check the hand-written
patterns against the code that enforces them, value by value.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from quart.typing import TestClientProtocol as QuartClient

from app.api.etags import expected_versions
from app.errors import InvalidInput
from app.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    IF_MATCH_PATTERN,
    NUL_FREE_PATTERN,
    RESOURCE_NAME_PATTERN,
    OrganizationCreate,
    TodoCreate,
)

TRIMMED = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
"""Whitespace pydantic trims from names (Unicode White_Space)."""
NEAR_MISSES = "\x1c\x1f\ufeff\u180e\u200b"
"""Characters some regex engines or `str.isspace` take for whitespace, which pydantic keeps."""


async def _document(client: QuartClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = await response.get_json()
    assert isinstance(document, dict)
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _matches(pattern: str, value: str) -> bool:
    """As JSON Schema applies `pattern` (a search; these patterns anchor themselves)."""
    return re.search(pattern, value) is not None


OPTIONAL_BODIES = {"POST /auth/logout"}
"""Without a body, logout ends the token presented (a body can ask for every token)."""


async def test_every_request_body_is_required_but_the_optional_ones(client: QuartClient) -> None:
    with_body = [
        (label, op) for label, op in _operations(await _document(client)) if "requestBody" in op
    ]

    assert with_body
    for label, operation in with_body:
        required = label not in OPTIONAL_BODIES
        assert operation["requestBody"].get("required") is required, label


async def test_every_operation_with_a_body_documents_400_and_413(client: QuartClient) -> None:
    for label, operation in _operations(await _document(client)):
        if "requestBody" in operation:
            assert {"400", "413"} <= set(operation["responses"]), label


async def test_uuid_path_parameters_are_documented_as_uuids(client: QuartClient) -> None:
    parameters = [
        (label, parameter)
        for label, operation in _operations(await _document(client))
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    ]

    assert parameters
    for label, parameter in parameters:
        assert parameter["schema"] == {"type": "string", "format": "uuid"}, label


async def test_optional_headers_are_strings_with_their_format(client: QuartClient) -> None:
    headers = {
        parameter["name"]: parameter["schema"]
        for _, operation in _operations(await _document(client))
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "header"
    }

    assert headers["idempotency-key"]["pattern"] == IDEMPOTENCY_KEY_PATTERN
    assert headers["if-match"]["pattern"] == IF_MATCH_PATTERN
    for schema in headers.values():
        assert schema["type"] == "string"
        assert "default" not in schema
        assert "anyOf" not in schema


async def test_a_todo_change_documents_fields_that_may_be_absent_but_not_null(
    client: QuartClient,
) -> None:
    document = await _document(client)
    body = document["paths"]["/todos/{todo_id}"]["patch"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]

    assert schema["minProperties"] == 1
    assert schema["properties"]["title"]["type"] == "string"
    assert schema["properties"]["content"]["type"] == "string"
    assert schema["properties"]["done"]["type"] == "boolean"
    for field in schema["properties"].values():
        assert "anyOf" not in field
        assert "default" not in field


def _if_match_accepted(value: str) -> bool:
    try:
        expected_versions(value)
    except InvalidInput:
        return False
    return True


IF_MATCH_TEXT = st.text(alphabet=' \t",*W/019\xa0\x0b', max_size=12)


@given(st.one_of(IF_MATCH_TEXT, st.from_regex(IF_MATCH_PATTERN, fullmatch=True)))
def test_if_match_pattern_is_what_the_service_accepts(value: str) -> None:
    assert _matches(IF_MATCH_PATTERN, value) == _if_match_accepted(value)


def _name_accepted(value: str) -> bool:
    try:
        OrganizationCreate(name=value)
    except ValidationError:
        return False
    return True


NAME_TEXT = st.text(alphabet=st.sampled_from(f"{TRIMMED}{NEAR_MISSES}\x00ab"), max_size=110)


@given(
    st.one_of(
        NAME_TEXT,
        st.builds(
            lambda pad, body: pad + body + pad,
            st.text(alphabet=TRIMMED, max_size=3),
            st.text(alphabet="ab \x00", min_size=95, max_size=105),
        ),
        st.from_regex(RESOURCE_NAME_PATTERN, fullmatch=True),
    )
)
def test_resource_name_pattern_is_what_the_service_accepts(value: str) -> None:
    assert _matches(RESOURCE_NAME_PATTERN, value) == _name_accepted(value)


@given(st.text(alphabet="\x00ab", min_size=1, max_size=5))
def test_text_pattern_refuses_exactly_the_nul_the_service_refuses(title: str) -> None:
    body = {"title": title, "space_id": "00000000-0000-4000-8000-000000000000"}
    try:
        TodoCreate.model_validate(body)
        accepted = True
    except ValidationError:
        accepted = False

    assert _matches(NUL_FREE_PATTERN, title) == accepted
