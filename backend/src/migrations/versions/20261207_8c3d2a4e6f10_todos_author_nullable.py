"""todos may outlive their author: user_id nullable, old foreign key dropped

Revision ID: 8c3d2a4e6f10
Revises: 5b1f0c7d9a21
Create Date: 2026-12-07 04:07:00.000000+00:00

The foreign key is dropped here and made again (ON DELETE SET NULL) in the next revision: on
CockroachDB a dropped constraint's name is only free once the drop has committed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c3d2a4e6f10"
down_revision: str | None = "5b1f0c7d9a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("todos", "user_id", existing_type=sa.UUID(), nullable=True)
    op.drop_constraint(op.f("fk_todos_user_id_users"), "todos", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        op.f("fk_todos_user_id_users"), "todos", "users", ["user_id"], ["id"], ondelete="CASCADE"
    )
    op.alter_column("todos", "user_id", existing_type=sa.UUID(), nullable=False)
