"""What a handler needs from the running app: settings, DAOs, transactions, the caller.

Handlers import these instead of reaching into `current_app.extensions`, which keeps them
readable and keeps the app's wiring in one place (`create_app`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from quart import current_app, g, request
from quart_schema import security_scheme
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from app.db import Database, UnitOfWork
from app.errors import Unauthorized
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


async def transaction(work: UnitOfWork[T]) -> T:
    """Run `work(session)` in one retried transaction of the app's database."""
    return await database().run(work)


def requires_auth(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse the request with 401 unless it carries a valid bearer token.

    Also documents the bearer scheme in OpenAPI and marks the route, so a test can prove
    that every route not meant to be public is protected.
    """

    @wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.user_id = _user_id_from_header(request.headers.get("Authorization"))
        return await handler(*args, **kwargs)

    setattr(wrapper, REQUIRES_AUTH_ATTRIBUTE, True)
    return cast(
        Callable[P, Awaitable[R]], security_scheme([{BEARER_SCHEME: []}])(cast(Any, wrapper))
    )


def document_errors(*statuses: int) -> Callable[[F], F]:
    """List these error statuses, with the one error shape, in the route's OpenAPI entry.

    Errors are rendered by the app's error handlers, so this only documents them.
    """

    def decorator(handler: F) -> F:
        responses = getattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
        for status in statuses:
            responses.setdefault(status, (ErrorOut, None))
        setattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, responses)
        return handler

    return decorator


def documents_no_content(handler: F) -> F:
    """Document a 204 without a body for the route (rendered by app.openapi.Provider)."""
    responses = getattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
    responses[204] = (NoContent, None)
    setattr(handler, QUART_SCHEMA_RESPONSE_ATTRIBUTE, responses)
    return handler


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
        return verify_token(token.strip(), settings().signing_key())
    except InvalidToken:
        raise Unauthorized("invalid or expired token") from None
