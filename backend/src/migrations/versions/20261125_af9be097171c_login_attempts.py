"""login attempts: failed and in-progress logins per user name and client address

Revision ID: af9be097171c
Revises: cbf1bb26cd59
Create Date: 2026-11-25 03:56:24.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "af9be097171c"
down_revision: str | None = "cbf1bb26cd59"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("in_progress", sa.Boolean(), server_default="true", nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index(
        op.f("ix_login_attempts_user_name_created_at"),
        "login_attempts",
        ["user_name", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_login_attempts_address_created_at"),
        "login_attempts",
        ["address", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_login_attempts_created_at"), "login_attempts", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_attempts_created_at"), table_name="login_attempts")
    op.drop_index(op.f("ix_login_attempts_address_created_at"), table_name="login_attempts")
    op.drop_index(op.f("ix_login_attempts_user_name_created_at"), table_name="login_attempts")
    op.drop_table("login_attempts")
