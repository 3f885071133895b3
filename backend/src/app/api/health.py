"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from app.api.context import daos, document_errors, transaction
from app.db.failures import DatabaseUnavailable
from app.db.migrate import head_revision
from app.errors import ServiceUnavailable
from app.schemas import HealthOut, ReadyOut

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@validate_response(HealthOut, 200)
async def healthz() -> HealthOut:
    """200 while the process can answer, whatever the database does."""
    return HealthOut()


@bp.get("/readyz")
@document_errors(503)
@validate_response(ReadyOut, 200)
async def readyz() -> ReadyOut:
    """200 only when the database answers and its schema is at the migrations' head."""
    try:
        revision = await transaction(daos().schema.current_revision, single_statement=True)
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unreachable") from None
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database schema at {revision or 'nothing'}, expected {head}")
    return ReadyOut(revision=revision)
