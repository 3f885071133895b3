"""One error type, and the handlers that render every failure as `{"detail": ...}`.

Whatever goes wrong (our own checks, quart-schema validation, malformed JSON, unknown routes,
an unreachable database, a bug), the client gets the same JSON shape with the right status and
never a traceback, SQL or secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from app.db.failures import (
    DatabaseBusy,
    DatabaseUnavailable,
    DuplicateValue,
    InvalidData,
    MissingReference,
)

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 2


class APIError(Exception):
    """An error the client caused or must know about; `detail` is safe to show."""

    status: int = 400
    detail: str | list[dict[str, Any]] = "bad request"
    headers: Mapping[str, str] = MappingProxyType({})

    def __init__(self, detail: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(detail or str(self.detail))
        if detail is not None:
            self.detail = detail
        if headers is not None:
            self.headers = headers


class InvalidInput(APIError):
    """A 422 for input quart-schema does not see (headers, cursors), in the same list shape."""

    status = 422

    def __init__(self, loc: list[str | int], msg: str, error_type: str) -> None:
        super().__init__(msg)
        self.detail = [{"loc": loc, "msg": msg, "type": error_type}]


class Unauthorized(APIError):
    status = 401
    detail = "not authenticated"
    headers = MappingProxyType({"WWW-Authenticate": "Bearer"})


class Forbidden(APIError):
    status = 403
    detail = "not allowed"


class NotFound(APIError):
    status = 404

    def __init__(self, what: str = "resource") -> None:
        super().__init__(f"{what} not found")


class Conflict(APIError):
    status = 409
    detail = "already exists"


class Gone(APIError):
    status = 410
    detail = "gone"


class PreconditionFailed(APIError):
    status = 412
    detail = "the resource has changed (If-Match does not match its version)"


class TooManyRequests(APIError):
    """A 429 whose Retry-After says how many seconds until the client may try again."""

    status = 429
    detail = "too many failed logins, try again later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after_seconds)})


class ServiceUnavailable(APIError):
    status = 503
    detail = "database unavailable, try again shortly"
    headers = MappingProxyType({"Retry-After": str(RETRY_AFTER_SECONDS)})


def error_response(
    status: int, detail: str | list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify({"detail": detail})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_details(error: BaseException) -> list[dict[str, Any]]:
    """pydantic's errors reduced to loc/msg/type (its `input` and `ctx` may echo secrets)."""
    if isinstance(error, ValidationError):
        return [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False)
        ]
    return [{"loc": [], "msg": str(error), "type": "value_error"}]


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return error_response(error.status, error.detail, error.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def _validation_error(error: RequestSchemaValidationError) -> Response:
        return error_response(422, validation_details(error.validation_error))

    @app.errorhandler(DatabaseUnavailable)
    async def _database_unavailable(error: DatabaseUnavailable) -> Response:
        event = "database busy" if isinstance(error, DatabaseBusy) else "database unavailable"
        log.warning(event, reason=str(error), cause=type(error.__cause__).__name__)
        return error_response(
            ServiceUnavailable.status, ServiceUnavailable.detail, ServiceUnavailable.headers
        )

    @app.errorhandler(asyncpg.InternalClientError)
    async def _connection_out_of_step(error: asyncpg.InternalClientError) -> Response:
        """A pooled connection the server ended (its shutdown, say) and asyncpg has not yet
        seen close: the server's goodbye left the driver's protocol state in error, and the
        next statement fails with "another operation is in progress". The database is what
        went away, so the client hears 503, as for any lost connection."""
        log.warning("database unavailable", reason=str(error), cause=type(error).__name__)
        return error_response(
            ServiceUnavailable.status, ServiceUnavailable.detail, ServiceUnavailable.headers
        )

    @app.errorhandler(InvalidData)
    async def _invalid_data(error: InvalidData) -> Response:
        log.warning("database refused a value", sqlstate=str(error))
        detail = [
            {"loc": [], "msg": "a value is not accepted by the database", "type": "data_error"}
        ]
        return error_response(422, detail)

    @app.errorhandler(MissingReference)
    async def _missing_reference(error: MissingReference) -> Response:
        return error_response(409, "a resource this request refers to no longer exists")

    @app.errorhandler(DuplicateValue)
    async def _duplicate_value(error: DuplicateValue) -> Response:
        return error_response(409, "a value that must be unique is already taken")

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        headers = {}
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[attr-defined]
        return error_response(status, _http_detail(status, error), headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", error_type=type(error).__name__)
        return error_response(500, "internal server error")


def _http_detail(status: int, error: HTTPException) -> str:
    if status == 400:
        return "malformed request body"
    if status == 413:
        return "request body too large"
    return (error.name or "error").lower()
