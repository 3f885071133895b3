"""The tables and every SQL statement of the service: one module per resource, each holding
its table, its DAO classmethods and its prebuilt statements side by side.

Each classmethod takes the executor first, does one job and never commits: the transaction
boundary belongs to the scope (`app.db.database.Database.run`). Visibility is part of the
statements (joins through memberships), so a row the caller may not see is simply not found,
in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.base import NAMING_CONVENTION, BaseDAO, Role
from app.models.changes import ChangeDAO
from app.models.feed import FeedDAO
from app.models.idempotency_keys import IdempotencyKeyDAO
from app.models.login_attempts import LoginAttemptDAO
from app.models.organizations import MembershipDAO, OrganizationDAO
from app.models.schema import SchemaDAO
from app.models.sessions import RevokedTokenDAO
from app.models.spaces import SpaceDAO
from app.models.todos import TodoDAO
from app.models.users import UserDAO

__all__ = [
    "NAMING_CONVENTION",
    "BaseDAO",
    "ChangeDAO",
    "Daos",
    "FeedDAO",
    "IdempotencyKeyDAO",
    "LoginAttemptDAO",
    "MembershipDAO",
    "OrganizationDAO",
    "RevokedTokenDAO",
    "Role",
    "SchemaDAO",
    "SpaceDAO",
    "TodoDAO",
    "UserDAO",
]


@dataclass(frozen=True)
class Daos:
    """The DAO set the app uses; unit tests pass in-memory fakes with the same classmethods."""

    users: type[UserDAO]
    organizations: type[OrganizationDAO]
    memberships: type[MembershipDAO]
    spaces: type[SpaceDAO]
    todos: type[TodoDAO]
    idempotency_keys: type[IdempotencyKeyDAO]
    login_attempts: type[LoginAttemptDAO]
    sessions: type[RevokedTokenDAO]
    schema: type[SchemaDAO]
    changes: type[ChangeDAO]
    feed: type[FeedDAO]

    @classmethod
    def real(cls) -> Daos:
        return cls(
            users=UserDAO,
            organizations=OrganizationDAO,
            memberships=MembershipDAO,
            spaces=SpaceDAO,
            todos=TodoDAO,
            idempotency_keys=IdempotencyKeyDAO,
            login_attempts=LoginAttemptDAO,
            sessions=RevokedTokenDAO,
            schema=SchemaDAO,
            changes=ChangeDAO,
            feed=FeedDAO,
        )
