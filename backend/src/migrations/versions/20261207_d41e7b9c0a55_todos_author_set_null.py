"""todos' author foreign key: ON DELETE SET NULL

Revision ID: d41e7b9c0a55
Revises: 8c3d2a4e6f10
Create Date: 2026-12-07 04:08:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d41e7b9c0a55"
down_revision: str | None = "8c3d2a4e6f10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_foreign_key(
        op.f("fk_todos_user_id_users"), "todos", "users", ["user_id"], ["id"], ondelete="SET NULL"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_todos_user_id_users"), "todos", type_="foreignkey")
