"""The members of an organization: list, add, change a role, remove (or leave).

An organization always keeps an owner: demoting or removing its last one is a 409, and
changes of members are serialised per organization (see app.models.organizations), so two
owners demoting each other at once cannot both succeed.
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, Response
from quart_schema import document_headers, document_response, validate_response

from app.api.context import (
    current_user_id,
    daos,
    document_errors,
    documents_no_content,
    requires_auth,
    transaction,
)
from app.api.idempotency import Created, create_once
from app.api.validation import json_body, query_args
from app.db.executor import Executor
from app.errors import APIError, Conflict, Forbidden, NotFound
from app.models import Role
from app.models.organizations import MemberRow
from app.pagination import next_cursor
from app.schemas import (
    IdempotencyHeaders,
    MemberAdd,
    MemberItem,
    MemberListQuery,
    MemberOut,
    MemberPage,
    RoleChange,
)

bp = Blueprint("members", __name__)

LAST_OWNER = (
    "an organization must keep at least one owner: make another member an owner first "
    "(or delete the organization)"
)


def _item(member: MemberRow) -> MemberItem:
    return MemberItem(
        user_id=member.user_id,
        user_name=member.user_name,
        role=Role(member.role).value,
        joined_at=member.created_at,
    )


@bp.get("/organizations/<uuid:organization_id>/members")
@document_errors(401, 404, 422)
@validate_response(MemberPage, 200)
@requires_auth
@query_args(MemberListQuery)
async def list_members(organization_id: uuid.UUID, query_args: MemberListQuery) -> MemberPage:
    """The members, in the order they joined, a page at a time; members only."""
    user_id = current_user_id()

    async def page(executor: Executor) -> list[MemberRow]:
        rows = await daos().memberships.page_visible(
            executor,
            organization_id,
            user_id,
            after=query_args.cursor,
            fetch=query_args.limit + 1,
        )
        if (
            not rows
            and await daos().memberships.role_of(executor, organization_id, user_id) is None
        ):
            raise NotFound("organization")
        return rows

    rows, cursor = next_cursor(await transaction(page), query_args.limit)
    return MemberPage(items=[_item(member) for member in rows], next_cursor=cursor)


@bp.post("/organizations/<uuid:organization_id>/members")
@document_errors(401, 403, 404, 409, 422)
@document_response(MemberOut, 201)
@document_headers(IdempotencyHeaders)
@requires_auth
@json_body(MemberAdd)
async def add_member(organization_id: uuid.UUID, data: MemberAdd) -> Response:
    """Add an existing user to the organization; owners only."""
    user_id = current_user_id()
    role = Role(data.role)

    async def add(executor: Executor) -> Created:
        memberships = daos().memberships
        member = await memberships.add_by_owner(
            executor, organization_id, user_id, data.user_name, role
        )
        if member is None:
            refusal = await memberships.explain_refused_add(
                executor, organization_id, user_id, data.user_name
            )
            raise _refused_add(refusal.caller_role, refusal.user_exists, refusal.already_member)
        out = MemberOut(
            organization_id=member.organization_id,
            user_id=member.user_id,
            user_name=member.user_name,
            role=member.role.value,
            created_at=member.created_at,
        )
        return Created(out.model_dump(mode="json"))

    async def still_member(executor: Executor, _: dict[str, Any]) -> bool:
        return await daos().memberships.role_of(executor, organization_id, user_id) is not None

    created = await create_once(
        add, data, still_visible=still_member, gone="organization", single_statement=True
    )
    return created.as_response()


def _refused_add(caller_role: Role | None, user_exists: bool, already_member: bool) -> APIError:
    if caller_role is None:
        return NotFound("organization")
    if caller_role is not Role.OWNER:
        return Forbidden("only owners can add members")
    if not user_exists:
        return NotFound("user")
    if already_member:
        return Conflict("already a member")
    return Conflict("membership changed meanwhile, try again")


@bp.patch("/organizations/<uuid:organization_id>/members/<uuid:user_id>")
@document_errors(401, 403, 404, 409, 422)
@validate_response(MemberItem, 200)
@requires_auth
@json_body(RoleChange)
async def change_role(
    organization_id: uuid.UUID, user_id: uuid.UUID, data: RoleChange
) -> MemberItem:
    """Make a member an owner, or an owner a plain member; owners only."""
    member_id, caller_id = user_id, current_user_id()
    role = Role(data.role)

    async def change(executor: Executor) -> MemberRow:
        caller_role = await daos().organizations.lock_for_member_change(
            executor, organization_id, caller_id
        )
        if caller_role is None:
            raise NotFound("organization")
        if caller_role is not Role.OWNER:
            # Two owners demoting each other at once: the second finds itself demoted
            # already, and what it asks would leave no owner: that is the conflict to report.
            memberships = daos().memberships
            if role is Role.MEMBER and await memberships.is_last_owner(
                executor, organization_id, member_id
            ):
                raise Conflict(LAST_OWNER)
            raise Forbidden("only owners can change roles")
        member = await daos().memberships.change_role(executor, organization_id, member_id, role)
        if member is None:
            raise await _not_changed(executor, organization_id, member_id)
        return member

    return _item(await transaction(change))


@bp.delete("/organizations/<uuid:organization_id>/members/<uuid:user_id>")
@document_errors(401, 403, 404, 409)
@documents_no_content
@requires_auth
async def remove_member(organization_id: uuid.UUID, user_id: uuid.UUID) -> tuple[str, int]:
    """Remove a member (owners), or leave (anyone, with their own id): 204. Whoever is
    removed sees nothing of the organization from the next request on."""
    member_id, caller_id = user_id, current_user_id()

    async def remove(executor: Executor) -> None:
        caller_role = await daos().organizations.lock_for_member_change(
            executor, organization_id, caller_id
        )
        if caller_role is None:
            raise NotFound("organization")
        if caller_role is not Role.OWNER and member_id != caller_id:
            raise Forbidden("only owners can remove other members")
        if not await daos().memberships.remove(executor, organization_id, member_id):
            raise await _not_changed(executor, organization_id, member_id)

    await transaction(remove)
    return "", 204


async def _not_changed(
    executor: Executor, organization_id: uuid.UUID, member_id: uuid.UUID
) -> APIError:
    """Why a member's change did nothing: not a member (404), or the last owner (409)."""
    if await daos().memberships.role_of(executor, organization_id, member_id) is None:
        return NotFound("member")
    return Conflict(LAST_OWNER)
