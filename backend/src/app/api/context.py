"""What a handler needs from the running app: settings, DAOs, transactions, the caller.

Handlers import these instead of reaching into `current_app.extensions`, which keeps them
readable and keeps the app's wiring in one place (`create_app`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from pydantic import BaseModel
from quart import Response, current_app, g, request
from quart_schema import security_scheme
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from app.db.database import Database, Work
from app.db.failures import MissingReference
from app.errors import Forbidden, NotFound, Unauthorized
from app.models import Daos
from app.schemas import ErrorOut, NoContent
from app.security import InvalidToken, verify_token
from app.settings import Settings

P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
T = TypeVar("T")

BEARER_SCHEME = "bearerAuth"
REQUIRES_AUTH_ATTRIBUTE = "_minor_illusion_requires_auth"


def settings() -> Settings:
    return cast(Settings, current_app.extensions["settings"])


def daos() -> Daos:
    return cast(Daos, current_app.extensions["daos"])


def database() -> Database:
    return cast(Database, current_app.extensions["database"])


async def transaction(work: Work[T], *, single_statement: bool = False) -> T:
    """The one way from a handler to the database: run `work(executor)` as one transaction of
    the app's database, re-run whole on a serialization failure.

    `single_statement=True` for a unit that sends one statement (see `Database.run`): it then
    runs as that statement's own transaction, one round trip instead of three.
    """
    return await database().run(work, single_statement=single_statement)


def requires_auth(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse the request with 401 unless it carries a valid bearer token.

    Also documents the bearer scheme in OpenAPI and marks the route, so a test can prove
    that every route not meant to be public is protected.
    """

    @wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.user_id = _user_id_from_header(request.headers.get("Authorization"))
        try:
            return await handler(*args, **kwargs)
        except (NotFound, Forbidden, MissingReference):
            await refuse_unless_caller_exists()
            raise

    setattr(wrapper, REQUIRES_AUTH_ATTRIBUTE, True)
    return cast(
        Callable[P, Awaitable[R]], security_scheme([{BEARER_SCHEME: []}])(cast(Any, wrapper))
    )


async def refuse_unless_caller_exists() -> None:
    """401 when the token's user has been deleted since it was issued.

    Tokens are checked by signature alone, with no user lookup per request. A deleted user
    has no memberships left, so whatever such a token asks for is found empty or missing:
    only then, and for empty lists, is the user looked up.
    """
    user_id = current_user_id()
    if not await transaction(lambda x: daos().users.exists(x, user_id), single_statement=True):
        raise Unauthorized("the token's user no longer exists")


def document_errors(*statuses: int) -> Callable[[F], F]:
    """List these error statuses, with the one error shape, in the route's OpenAPI entry.

    Errors are rendered by the app's error handlers, so this only documents them.
    """

    def decorator(handler: F) -> F:
        for status in statuses:
            _document_response(handler, status, ErrorOut)
        return handler

    return decorator


def documents_no_content(handler: F) -> F:
    """Document a 204 without a body for the route (rendered by app.http.openapi.Provider)."""
    return _document_response(handler, 204, NoContent)


def _document_response(handler: F, status: int, model: type[BaseModel]) -> F:
    """Add a response to the route's OpenAPI entry the way quart-schema's decorators do,
    keeping any model a decorator already gave that status."""
    responses = getattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
    responses.setdefault(status, (model, None))
    setattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, responses)
    return handler


def json_response(
    body: BaseModel | bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response serialised by pydantic's Rust encoder in one step (or already serialised).

    For the hot routes, which build their response themselves and so need no second
    validation; they document it with `document_response`.
    """
    data = body.model_dump_json() if isinstance(body, BaseModel) else body
    response = Response(data, status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def current_user_id() -> uuid.UUID:
    """The authenticated caller; only valid inside a route decorated with `requires_auth`."""
    return cast(uuid.UUID, g.user_id)


def _user_id_from_header(header: str | None) -> uuid.UUID:
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    try:
        return verify_token(token.strip(), settings().verification_keys())
    except InvalidToken:
        raise Unauthorized("invalid or expired token") from None
