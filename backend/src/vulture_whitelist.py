"""What `vulture` (run by `backend/dev lint`) cannot see used: each name with where it is."""

from app.cli import _ServeConfig, worker_app
from app.models import MembershipDAO, TodoDAO
from app.models.base import BaseDAO
from app.schemas import (
    EventsHeaders,
    IdempotencyHeaders,
    LoginRequest,
    MemberItem,
    TodoOut,
    TokenOut,
)
from app.security import HashingStats
from bench.scale import Latency, Report

# Hypercorn reads these from its Config; each worker process loads worker_app through
# cli.APPLICATION_PATH.
_ServeConfig.errorlog
_ServeConfig.application_path
worker_app
# The DAO calls notebook 01 (jupyter/notebooks/01-database.ipynb) demonstrates.
MembershipDAO.role_of
TodoDAO.count_in_space
# API fields, read by pydantic when it parses or writes the JSON.
LoginRequest.grant_type
LoginRequest.client_id
LoginRequest.client_secret
TokenOut.access_token
TokenOut.token_type
TokenOut.expires_in
TodoOut.updated_at
MemberItem.joined_at
IdempotencyHeaders.idempotency_key  # documents the header in OpenAPI
EventsHeaders.last_event_id  # documents the header in OpenAPI
# SQLAlchemy's declarative base reads it; Alembic's env.py imports it.
BaseDAO.metadata
# Counters the hashing thread keeps; the tests read them to prove that every way a login
# fails does the same argon2 work, without timing it.
HashingStats.current_verifications
HashingStats.legacy_verifications
# Figures written to the benchmark's JSON report by dataclasses.asdict.
Latency.mean_ms
Latency.min_ms
Report.page_limit
Report.deep_fraction
Report.target_ratio
# SQLAlchemy reads these: the compilers of the change log's SQL functions, per dialect.
from app.models import changes  # noqa: E402

changes.WritePosition.inherit_cache
changes.Horizon.inherit_cache
changes._write_position_postgresql
changes._write_position_cockroachdb
changes._horizon_postgresql
changes._horizon_cockroachdb
