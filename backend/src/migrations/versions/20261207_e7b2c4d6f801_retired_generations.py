"""revoked_tokens: a row for every token generation already retired

Revision ID: e7b2c4d6f801
Revises: d41e7b9c0a55
Create Date: 2026-12-07 07:30:00.000000+00:00

From this revision on, the hot statements refuse a retired generation by its row in
revoked_tokens rather than by reading users.token_generation; users whose generation moved on
before it get those rows here. Data only: the schema is unchanged.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import context, op

revision: str = "e7b2c4d6f801"
down_revision: str | None = "d41e7b9c0a55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of app.models.sessions.generation_key and RETIRED_GENERATION_KEPT as they are
# at this revision: a migration must not change when the application does.
_GENERATIONS = uuid.UUID("5d1c3f0e-7a9b-4e52-8c1d-2b6f0a9e4c37")
_KEPT = timedelta(days=30, hours=1)
_BATCH = 1000


def upgrade() -> None:
    if context.is_offline_mode():
        return  # `--sql` prints DDL for an empty database: no users to read
    connection = op.get_bind()
    users = connection.execute(
        sa.text("SELECT id, token_generation FROM users WHERE token_generation > 0")
    ).all()
    until = datetime.now(UTC) + _KEPT
    rows = [
        {"id": str(uuid.uuid5(_GENERATIONS, f"{user_id}/{old}")), "user_id": str(user_id)}
        for user_id, generation in users
        for old in range(generation)
    ]
    insert = sa.text(
        "INSERT INTO revoked_tokens (id, user_id, expires_at) "
        "VALUES (CAST(:id AS UUID), CAST(:user_id AS UUID), :expires_at) "
        "ON CONFLICT (id) DO NOTHING"
    )
    for start in range(0, len(rows), _BATCH):
        connection.execute(
            insert, [{**row, "expires_at": until} for row in rows[start : start + _BATCH]]
        )


def downgrade() -> None:
    """Nothing to undo: the rows are revoked tokens like any other, purged once expired."""
