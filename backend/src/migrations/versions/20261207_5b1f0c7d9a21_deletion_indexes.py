"""indexes for revoked tokens, deletions and member pages

Revision ID: 5b1f0c7d9a21
Revises: 2e0504cbed6f
Create Date: 2026-12-07 04:06:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b1f0c7d9a21"
down_revision: str | None = "2e0504cbed6f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_revoked_tokens_expires_at"), "revoked_tokens", ["expires_at"], unique=False
    )
    op.create_index(op.f("ix_revoked_tokens_user_id"), "revoked_tokens", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_memberships_organization_id_created_at_id"),
        "memberships",
        ["organization_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_organizations_deleted_at"), "organizations", ["deleted_at"], unique=False
    )
    op.create_index(op.f("ix_spaces_deleted_at"), "spaces", ["deleted_at"], unique=False)
    op.create_index(op.f("ix_users_deleted_at"), "users", ["deleted_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_users_deleted_at"), table_name="users")
    op.drop_index(op.f("ix_spaces_deleted_at"), table_name="spaces")
    op.drop_index(op.f("ix_organizations_deleted_at"), table_name="organizations")
    op.drop_index(op.f("ix_memberships_organization_id_created_at_id"), table_name="memberships")
    op.drop_index(op.f("ix_revoked_tokens_user_id"), table_name="revoked_tokens")
    op.drop_index(op.f("ix_revoked_tokens_expires_at"), table_name="revoked_tokens")
