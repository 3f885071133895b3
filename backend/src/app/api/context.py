"""What a handler needs from the running app: settings, DAOs, transactions, the caller.

Handlers import these instead of reaching into `current_app.extensions`, which keeps them
readable and keeps the app's wiring in one place (`create_app`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from pydantic import BaseModel
from quart import Response, current_app, g, request
from quart_schema import security_scheme
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

from app.db.database import Database, Work
from app.db.failures import MissingReference
from app.deletions import Deletions
from app.errors import APIError, Forbidden, NotFound, Unauthorized
from app.models import Daos, Role
from app.models.sessions import Caller
from app.schemas import ErrorOut, NoContent
from app.security import InvalidToken, TokenClaims, verify_token
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


def deletions() -> Deletions:
    """The worker's background removal of deleted rows: `wake()` it after marking some."""
    return cast(Deletions, current_app.extensions["deletions"])


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
    """Refuse the request with 401 unless it carries a valid bearer token that still counts
    (not logged out, not from before a password change, its user not deleted).

    Asks the database first, one short statement; the hot routes use
    `requires_auth_in_statement` instead. Also documents the bearer scheme in OpenAPI and
    marks the route, so a test can prove that every route not meant to be public is protected.
    """

    @wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.caller = _caller_from_header(request.headers.get("Authorization"))
        await refuse_unless_session_valid()
        return await handler(*args, **kwargs)

    return _protected(wrapper)


def requires_auth_in_statement(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`requires_auth` for handlers whose statements check the session themselves
    (`app.models.sessions.token_not_revoked` in their WHERE), so a valid request is one round
    trip. A revoked token finds nothing there: whenever the handler refuses, or finds an empty
    list (it then calls `refuse_unless_session_valid`), the session is asked, and a token
    that no longer counts is a 401 rather than a 404, 403 or 412."""

    @wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.caller = _caller_from_header(request.headers.get("Authorization"))
        try:
            return await handler(*args, **kwargs)
        except (APIError, MissingReference) as error:
            if not isinstance(error, Unauthorized):
                await refuse_unless_session_valid()
            raise

    return _protected(wrapper)


def _protected(wrapper: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    setattr(wrapper, REQUIRES_AUTH_ATTRIBUTE, True)
    return cast(
        Callable[P, Awaitable[R]], security_scheme([{BEARER_SCHEME: []}])(cast(Any, wrapper))
    )


async def refuse_unless_session_valid() -> None:
    """401 when the caller's token no longer counts: logged out, issued before a password
    change or a logout everywhere, or its user deleted since it was issued."""
    caller = current_caller()
    if not await transaction(lambda x: daos().sessions.is_valid(x, caller), single_statement=True):
        raise Unauthorized("the token is no longer valid: log in again")
    g.session_checked = True


def session_checked() -> bool:
    """Whether this request has asked the database that the caller's token still counts."""
    return bool(g.get("session_checked", False))


def owners_only(role: Role | None, thing: str, action: str) -> APIError:
    """Why an owners-only change of `thing` did nothing, from the caller's role in its
    organization: 404 when they cannot see it (or it went meanwhile), 403 for plain members."""
    if role is Role.MEMBER:
        return Forbidden(f"only owners of the organization can {action}")
    return NotFound(thing)


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


def current_caller() -> Caller:
    """The authenticated caller; only valid inside a route decorated with `requires_auth`."""
    return cast(Caller, g.caller)


def current_user_id() -> uuid.UUID:
    return current_caller().user_id


def _caller_from_header(header: str | None) -> Caller:
    if not header:
        raise Unauthorized("missing bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    try:
        claims = verify_token(token.strip(), settings().verification_keys())
    except InvalidToken:
        raise Unauthorized("invalid or expired token") from None
    return _caller(claims)


@functools.lru_cache(maxsize=4096)
def _caller(claims: TokenClaims) -> Caller:
    """One Caller per token, like the verified claims it comes from: a client sends the same
    token with every request, and a Caller is immutable (its statement parameters included)."""
    return Caller(
        user_id=claims.user_id,
        token_id=claims.token_id,
        generation=claims.generation,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )
