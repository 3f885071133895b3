"""Registration, login (JSON or OAuth2 password form) and the caller's own profile."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from quart import Blueprint, request
from quart_schema import document_request, validate_response
from quart_schema.validation import RequestSchemaValidationError

from app.api.context import current_user_id, daos, requires_auth, settings, transaction
from app.api.validation import json_body
from app.db import Session
from app.errors import Conflict, Unauthorized
from app.models import OrganizationWithRole, UserDAO
from app.schemas import (
    LoginRequest,
    MeOut,
    OrganizationRoleOut,
    RegisterRequest,
    TokenOut,
    UserOut,
)
from app.security import check_password, hash_password, issue_token

bp = Blueprint("auth", __name__)

FORM_MIMETYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


@bp.post("/auth/register")
@json_body(RegisterRequest)
@validate_response(UserOut, 201)
async def register(data: RegisterRequest) -> tuple[UserOut, int]:
    password_hash = await hash_password(data.password)
    user = await transaction(
        lambda s: daos().users.create(s, data.name, password_hash), autocommit=True
    )
    if user is None:
        raise Conflict("user name already taken")
    return UserOut.model_validate(user), 201


@bp.post("/auth/login")
@document_request(LoginRequest)
@validate_response(TokenOut, 200)
async def login() -> TokenOut:
    """Exchange a user name and password for a bearer token (JSON or OAuth2 form body).

    Unknown users and wrong passwords get the same 401 after the same amount of work.
    """
    credentials = await _login_request()
    user = await transaction(
        lambda s: daos().users.get_by_name(s, credentials.username), autocommit=True
    )
    check = await check_password(credentials.password, user.password_hash if user else None)
    if user is None or not check.valid:
        raise Unauthorized("incorrect user name or password")
    if check.new_hash is not None:
        new_hash = check.new_hash
        await transaction(
            lambda s: daos().users.set_password_hash(s, user.id, new_hash), autocommit=True
        )
    ttl = settings().token_ttl_seconds
    token = issue_token(user.id, settings().signing_key(), ttl)
    return TokenOut(access_token=token, expires_in=ttl)


async def _login_request() -> LoginRequest:
    """The credentials, from a form (OAuth2 password flow) or from a JSON body."""
    data: Any
    if request.mimetype in FORM_MIMETYPES:
        data = (await request.form).to_dict()
    else:
        data = await request.get_json()
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as error:
        raise RequestSchemaValidationError(error) from None


@bp.get("/me")
@validate_response(MeOut, 200)
@requires_auth
async def me() -> MeOut:
    user_id = current_user_id()

    async def load(session: Session) -> tuple[UserDAO | None, list[OrganizationWithRole]]:
        user = await daos().users.get(session, user_id)
        if user is None:
            return None, []
        return user, list(await daos().organizations.list_with_roles(session, user_id))

    user, organizations = await transaction(load)
    if user is None:  # the token is valid but its user was deleted
        raise Unauthorized("user no longer exists")
    return MeOut(
        id=user.id,
        name=user.name,
        created_at=user.created_at,
        organizations=[
            OrganizationRoleOut(id=o.id, name=o.name, role=o.role.value) for o in organizations
        ],
    )
