"""Request and response shapes of the API (not tables: see app.models).

Create, update and public models are separate, so a password or its hash can never be
serialised by accident.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from app.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Cursor


def _no_nul(value: str) -> str:
    """PostgreSQL and CockroachDB text cannot hold U+0000, which JSON allows: refuse it here."""
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character (U+0000)")
    return value


NUL_FREE_PATTERN = r"^[^\x00]*$"


class _NoNul:
    """Refuses U+0000 (see `_no_nul`) and says so in the document, as a pattern: without it
    the document offers text that is a 422."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_no_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = NUL_FREE_PATTERN
        return json_schema


NoNul = _NoNul()

UserName = Annotated[
    str, StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]


class RequestModel(BaseModel):
    """Bodies reject unknown fields, so a typo is a 422 and not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RegisterRequest(RequestModel):
    name: UserName
    password: Password


class LoginRequest(RequestModel):
    """JSON, or the OAuth2 password flow's form fields (`grant_type`, `scope` are accepted)."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    grant_type: Literal["password"] | None = None
    scope: str | None = Field(default=None, max_length=1024)
    client_id: str | None = Field(default=None, max_length=256)
    client_secret: str | None = Field(default=None, max_length=256)


class TokenOut(ResponseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int


class UserOut(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class OrganizationRoleOut(ResponseModel):
    id: uuid.UUID
    name: str
    role: Literal["owner", "member"]


class MeOut(UserOut):
    organizations: list[OrganizationRoleOut]


_TRIMMED = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""What `strip_whitespace` trims: Unicode White_Space, spelled out because regex engines
(JSON Schema's, Python's) disagree on what `\\s` means."""

RESOURCE_NAME_PATTERN = (
    rf"^[{_TRIMMED}]*[^{_TRIMMED}\x00]([^\x00]{{0,98}}[^{_TRIMMED}\x00])?[{_TRIMMED}]*$"
)
"""1 to 100 characters, no NUL, once surrounding whitespace is trimmed: `minLength` and
`maxLength` would count the whitespace that trimming drops."""

ResourceName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    NoNul,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": RESOURCE_NAME_PATTERN,
            "description": "1 to 100 characters once surrounding whitespace is trimmed",
        }
    ),
]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
Content = Annotated[str, StringConstraints(max_length=10_000), NoNul]
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]


class OrganizationCreate(RequestModel):
    name: ResourceName


class OrganizationOut(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    role: Literal["owner", "member"] = Field(description="the caller's role")


class MemberAdd(RequestModel):
    user_name: UserName
    role: Literal["member", "owner"] = "member"


class MemberListQuery(RequestModel):
    limit: PageSize = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class MemberItem(ResponseModel):
    """A member as the member list shows them."""

    user_id: uuid.UUID
    user_name: str
    role: Literal["owner", "member"]
    joined_at: datetime


class MemberPage(ResponseModel):
    items: list[MemberItem]
    next_cursor: str | None


class RoleChange(RequestModel):
    role: Literal["member", "owner"]


class OrganizationUpdate(RequestModel):
    name: ResourceName


class SpaceUpdate(RequestModel):
    name: ResourceName


class LogoutRequest(RequestModel):
    BODY_OPTIONAL: ClassVar[bool] = True
    """`POST /auth/logout` without a body logs out the token presented."""

    everywhere: StrictBool = Field(
        default=False, description="refuse every token of the caller issued so far"
    )


CurrentPassword = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordChange(RequestModel):
    current_password: CurrentPassword
    new_password: Password


class AccountDeletion(RequestModel):
    password: CurrentPassword


class MemberOut(ResponseModel):
    organization_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str
    role: Literal["owner", "member"]
    created_at: datetime


class SpaceCreate(RequestModel):
    name: ResourceName
    organization_id: uuid.UUID


class SpaceOut(ResponseModel):
    id: uuid.UUID
    name: str
    organization_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class SpaceListQuery(RequestModel):
    organization_id: uuid.UUID | None = None
    limit: PageSize = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class SpacePage(ResponseModel):
    items: list[SpaceOut]
    next_cursor: str | None


class TodoCreate(RequestModel):
    title: Title
    content: Content = ""
    space_id: uuid.UUID
    done: StrictBool = False


def _fields_present_not_null(schema: dict[str, Any]) -> None:
    """TodoUpdate as the document should show it: each field may be left out but is never
    null, and one at least is there (what `_present_and_not_null` checks). Without this the
    document offers null, and `{}`, as valid bodies, which are 422s."""
    for field_schema in schema["properties"].values():
        variants = field_schema.pop("anyOf", [])
        field_schema.update(next(v for v in variants if v.get("type") != "null"))
        field_schema.pop("default", None)
    schema["minProperties"] = 1


class TodoUpdate(RequestModel):
    """Only the fields present change; at least one must be present, none may be null."""

    model_config = ConfigDict(json_schema_extra=_fields_present_not_null)

    title: Title | None = None
    content: Content | None = None
    done: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _present_and_not_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if not data:
                raise ValueError("give at least one of title, content, done")
            nulls = [name for name, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"null is not a value for {', '.join(sorted(nulls))}")
        return data

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class TodoOut(ResponseModel):
    id: uuid.UUID
    title: str
    content: str
    done: bool
    space_id: uuid.UUID
    user_id: uuid.UUID | None = Field(
        description="the author; null once they deleted their account"
    )
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: object) -> TodoOut:
        """From a todos row, without validating again what the database's types guarantee."""
        return cls.model_construct(**_fields_of(row))


def todo_page_json(rows: Sequence[Any], next_cursor: str | None) -> bytes:
    """A TodoPage as JSON, straight from the rows: the list route's hot path.

    The rows hold exactly TodoOut's fields, typed by the database, so they need no model
    objects and no validation in between. orjson writes them several times faster than
    pydantic's serializer (the driver's UUIDs are a subclass that pydantic checks the slow
    way), in the same JSON: UTC timestamps end in "Z" as pydantic writes them, and UUIDs go
    through `str` (tests/unit/test_schemas.py compares both encoders).
    """
    return _dumps({"items": _fields_of_all(rows), "next_cursor": next_cursor})


def todo_json(row: object) -> bytes:
    """One TodoOut as JSON, straight from its row, as `todo_page_json` writes each item."""
    return _dumps(_fields_of(row))


def _fields_of_all(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Each row as a dict. The driver's records (`keys()`, and iteration over their values in
    that order) are paired with their column names without a Python call per row, which
    halves the cost of a page's dicts; other rows (the unit tests' fakes) answer `_asdict`."""
    if not rows or not hasattr(rows[0], "keys"):
        return [_fields_of(row) for row in rows]
    return list(map(dict, map(zip, repeat(tuple(rows[0].keys())), rows)))


def _fields_of(row: Any) -> dict[str, Any]:
    fields: dict[str, Any] = row._asdict()
    return fields


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z, default=str)


class TodoListQuery(RequestModel):
    space_id: uuid.UUID | None = None
    done: bool | None = None
    limit: PageSize = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class TodoPage(ResponseModel):
    items: list[TodoOut]
    next_cursor: str | None


IDEMPOTENCY_KEY_PATTERN = "^[!-~]{1,255}$"
"""1 to 255 visible ASCII characters, as app.api.idempotency requires (else 422)."""

IF_MATCH_PATTERN = (
    r'^[ \t]*(\*|(W/)?("[0-9]+"|[0-9]+)([ \t]*,[ \t]*(W/)?("[0-9]+"|[0-9]+))*)[ \t]*$'
)
"""`*`, or versions as numbers or ETags (weak or not), comma-separated, as
app.api.etags.expected_versions reads them (else 422)."""


def _without_default(schema: dict[str, Any]) -> None:
    """An absent header is what None means: with a null default in the document, clients
    (and fuzzers) send the text "null", which is no valid value of any header here."""
    schema.pop("default", None)


class IdempotencyHeaders(RequestModel):
    """Documented, not validated here: a retried POST with the same key replays the first
    response (for 24 hours) instead of creating a duplicate."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}),
        Field(
            description="any 1 to 255 visible ASCII characters, new for each new request",
            json_schema_extra=_without_default,
        ),
    ] = None


class IfNoneMatchHeaders(RequestModel):
    """Documented, not validated here: the versions (ETags) the client holds; 304 if current."""

    model_config = ConfigDict(extra="ignore")

    if_none_match: Annotated[
        str | None,
        WithJsonSchema({"type": "string"}),
        Field(
            description='ETags held, such as "3" (a list, or *): 304 without a body if current',
            json_schema_extra=_without_default,
        ),
    ] = None


class IfMatchHeaders(RequestModel):
    """Documented, not validated here: the version (ETag) the change expects; 412 if stale."""

    model_config = ConfigDict(extra="ignore")

    if_match: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "pattern": IF_MATCH_PATTERN}),
        Field(
            description='the version read, as its ETag ("3") or as a number; or *',
            json_schema_extra=_without_default,
        ),
    ] = None


class HealthOut(ResponseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(ResponseModel):
    status: Literal["ready"] = "ready"
    revision: str


class NoContent(ResponseModel):
    """Marks a documented response without a body (204); see app.http.openapi."""


class EventStream(ResponseModel):
    """Marks a documented `text/event-stream` response; see app.http.openapi."""


class ErrorItem(ResponseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(ResponseModel):
    """The one shape of every error response."""

    detail: str | list[ErrorItem]


MAX_CHANGES_PAGE = 1000


class ChangesQuery(RequestModel):
    since: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_CHANGES_PAGE)] = 500


class ChangeOut(ResponseModel):
    kind: Literal["organization", "member", "space", "todo"]
    op: Literal["upsert", "delete"]
    id: uuid.UUID = Field(description="the object's id; a member's is its user's id")
    data: dict[str, Any] | None = Field(
        description="the object as its GET returns it; null for a delete"
    )


class ChangesOut(ResponseModel):
    changes: list[ChangeOut]
    next: str = Field(description="pass as `since` to read on from here")
    more: bool = Field(description="true: more changes are ready now, ask again at once")


class EventsQuery(RequestModel):
    since: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="resume after this token (as Last-Event-ID does)"
    )


class EventsHeaders(RequestModel):
    """Documented, not validated here: where a reconnecting client left off."""

    model_config = ConfigDict(extra="ignore")

    last_event_id: Annotated[
        str | None,
        WithJsonSchema({"type": "string"}),
        Field(
            description="the `id:` of the last event received: the stream resumes after it",
            json_schema_extra=_without_default,
        ),
    ] = None
