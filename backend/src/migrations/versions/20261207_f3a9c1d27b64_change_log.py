"""the change log: a position on every changing row, the log, and horizons for retention

Revision ID: f3a9c1d27b64
Revises: e7b2c4d6f801
Create Date: 2026-12-07 16:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f3a9c1d27b64"
down_revision: str | None = "e7b2c4d6f801"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANGING_TABLES = ("memberships", "organizations", "spaces", "todos")


def upgrade() -> None:
    for table in CHANGING_TABLES:
        # Rows from before the log carry position 0: a snapshot delivers them.
        op.add_column(
            table, sa.Column("change_position", sa.Numeric(), server_default="0", nullable=False)
        )
    op.create_table(
        "changes",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Numeric(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "position", "kind", "object_id", name=op.f("pk_changes")
        ),
    )
    op.create_table(
        "change_horizons",
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("taken_at", name=op.f("pk_change_horizons")),
    )


def downgrade() -> None:
    op.drop_table("change_horizons")
    op.drop_table("changes")
    for table in CHANGING_TABLES:
        op.drop_column(table, "change_position")
