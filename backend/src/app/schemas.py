"""Request and response shapes of the API (not tables: see models.py).

Create, update and public models are separate, so a password or its hash can never be
serialised by accident.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
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


class HealthOut(ResponseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(ResponseModel):
    status: Literal["ready"] = "ready"
    revision: str


class ErrorItem(ResponseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(ResponseModel):
    """The one shape of every error response."""

    detail: str | list[ErrorItem]
