"""Request and response shapes of the API (not tables: see models.py).

Create, update and public models are separate, so a password or its hash can never be
serialised by accident.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    model_validator,
)
from typing_extensions import TypedDict

from app.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Cursor


def _no_nul(value: str) -> str:
    """PostgreSQL and CockroachDB text cannot hold U+0000, which JSON allows: refuse it here."""
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character (U+0000)")
    return value


NoNul = AfterValidator(_no_nul)

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


ResourceName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
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


class TodoUpdate(RequestModel):
    """Only the fields present change; at least one must be present, none may be null."""

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
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: object) -> TodoOut:
        """From a todos row, without validating again what the database's types guarantee:
        the list route builds fifty of these per request."""
        return cls.model_construct(**{name: getattr(row, name) for name in cls.model_fields})


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    return TypedDict(name, fields)  # type: ignore[operator]


# TodoOut's fields as a TypedDict: pydantic then serialises plain dicts with each field's
# type known in advance, which is much faster than inferring it value by value.
_TODO_ITEM = _typed_dict(
    "TodoItem", {name: field.annotation for name, field in TodoOut.model_fields.items()}
)
_TODO_PAGE_JSON: TypeAdapter[Any] = TypeAdapter(
    _typed_dict(
        "TodoPageJSON", {"items": list.__class_getitem__(_TODO_ITEM), "next_cursor": str | None}
    )
)


def todo_page_json(rows: Sequence[Any], next_cursor: str | None) -> bytes:
    """A TodoPage as JSON, straight from the rows: the list route's hot path.

    The rows hold exactly TodoOut's fields, typed by the database, so they need no model
    objects in between; the encoder writes the UUIDs and timestamps as TodoOut would.
    """
    fields = TodoOut.model_fields
    items = [
        row._asdict() if hasattr(row, "_asdict") else {name: getattr(row, name) for name in fields}
        for row in rows
    ]
    return _TODO_PAGE_JSON.dump_json({"items": items, "next_cursor": next_cursor})


class TodoListQuery(RequestModel):
    space_id: uuid.UUID | None = None
    done: bool | None = None
    limit: PageSize = DEFAULT_PAGE_SIZE
    cursor: Cursor | None = None


class TodoPage(ResponseModel):
    items: list[TodoOut]
    next_cursor: str | None


class IdempotencyHeaders(RequestModel):
    """Documented, not validated here: a retried POST with the same key replays the first
    response (for 24 hours) instead of creating a duplicate."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str | None = Field(default=None, max_length=255)


class IfMatchHeaders(RequestModel):
    """Documented, not validated here: the version (ETag) the change expects; 412 if stale."""

    model_config = ConfigDict(extra="ignore")

    if_match: str | None = None


class HealthOut(ResponseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(ResponseModel):
    status: Literal["ready"] = "ready"
    revision: str


class NoContent(ResponseModel):
    """Marks a documented response without a body (204); see app.openapi."""


class ErrorItem(ResponseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(ResponseModel):
    """The one shape of every error response."""

    detail: str | list[ErrorItem]
