"""teams and accounts: revoked tokens, token generations, soft deletion

Revision ID: 2e0504cbed6f
Revises: af9be097171c
Create Date: 2026-12-07 04:05:00.000000+00:00

Columns and a new table only; their indexes follow in the next revision, and the todos'
foreign key in the two after it. CockroachDB runs schema changes asynchronously, so each
revision (its own transaction) makes changes that do not depend on one another.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e0504cbed6f"
down_revision: str | None = "af9be097171c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_revoked_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revoked_tokens")),
    )
    op.add_column(
        "organizations", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.alter_column("organizations", "name", existing_type=sa.VARCHAR(length=100), nullable=True)
    op.add_column("spaces", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "users", sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.alter_column("users", "name", existing_type=sa.VARCHAR(length=64), nullable=True)


def downgrade() -> None:
    op.alter_column("users", "name", existing_type=sa.VARCHAR(length=64), nullable=False)
    op.drop_column("users", "deleted_at")
    op.drop_column("users", "token_generation")
    op.drop_column("spaces", "deleted_at")
    op.alter_column("organizations", "name", existing_type=sa.VARCHAR(length=100), nullable=False)
    op.drop_column("organizations", "deleted_at")
    op.drop_table("revoked_tokens")
