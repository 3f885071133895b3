"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from app.api.context import database, document_errors
from app.db import DatabaseUnavailable
from app.errors import ServiceUnavailable
from app.migrate import head_revision
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
        revision = await database().schema_revision()
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unreachable") from None
    head = head_revision()
    if revision != head:
        raise ServiceUnavailable(f"database schema at {revision or 'nothing'}, expected {head}")
    return ReadyOut(revision=revision)
