"""Organizations and their members. Non-members get 404 for everything of an organization."""

from __future__ import annotations

import uuid

from quart import Blueprint, Response, url_for
from quart_schema import document_headers, document_response, validate_response

from app.api.context import (
    current_user_id,
    daos,
    document_errors,
    refuse_unless_caller_exists,
    requires_auth,
    transaction,
)
from app.api.idempotency import Created, create_once
from app.api.validation import json_body
from app.db.executor import Executor
from app.errors import APIError, Conflict, Forbidden, NotFound
from app.models import Role
from app.models.organizations import OrganizationWithRole
from app.schemas import (
    IdempotencyHeaders,
    MemberAdd,
    MemberOut,
    OrganizationCreate,
    OrganizationOut,
)

bp = Blueprint("organizations", __name__)


def _out(organization: OrganizationWithRole) -> OrganizationOut:
    return OrganizationOut(
        id=organization.id,
        name=organization.name,
        created_at=organization.created_at,
        role=organization.role.value,
    )


@bp.post("/organizations")
@document_errors(401, 409, 422)
@document_response(OrganizationOut, 201)
@document_headers(IdempotencyHeaders)
@requires_auth
@json_body(OrganizationCreate)
async def create_organization(data: OrganizationCreate) -> Response:
    """Create an organization; the caller becomes its owner."""
    user_id = current_user_id()

    async def create(executor: Executor) -> Created:
        organization = await daos().organizations.create_owned(executor, data.name, user_id)
        if organization is None:
            raise Conflict("organization name already taken")
        out = OrganizationOut(
            id=organization.id,
            name=organization.name,
            created_at=organization.created_at,
            role=Role.OWNER.value,
        )
        location = url_for("organizations.get_organization", organization_id=organization.id)
        return Created(out.model_dump(mode="json"), {"Location": location})

    return (await create_once(create, data)).as_response()


@bp.get("/organizations")
@document_errors(401)
@validate_response(list[OrganizationOut], 200)
@requires_auth
async def list_organizations() -> list[OrganizationOut]:
    """The caller's organizations, with the caller's role in each, oldest first."""
    user_id = current_user_id()
    organizations = await transaction(
        lambda x: daos().organizations.list_with_roles(x, user_id), single_statement=True
    )
    if not organizations:
        await refuse_unless_caller_exists()
    return [_out(organization) for organization in organizations]


@bp.get("/organizations/<uuid:organization_id>")
@document_errors(401, 404)
@validate_response(OrganizationOut, 200)
@requires_auth
async def get_organization(organization_id: uuid.UUID) -> OrganizationOut:
    user_id = current_user_id()
    organization = await transaction(
        lambda x: daos().organizations.get_visible(x, organization_id, user_id),
        single_statement=True,
    )
    if organization is None:
        raise NotFound("organization")
    return _out(organization)


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
            raise _refused(refusal.caller_role, refusal.user_exists, refusal.already_member)
        out = MemberOut(
            organization_id=member.organization_id,
            user_id=member.user_id,
            user_name=member.user_name,
            role=member.role.value,
            created_at=member.created_at,
        )
        return Created(out.model_dump(mode="json"))

    return (await create_once(add, data, single_statement=True)).as_response()


def _refused(caller_role: Role | None, user_exists: bool, already_member: bool) -> APIError:
    if caller_role is None:
        return NotFound("organization")
    if caller_role is not Role.OWNER:
        return Forbidden("only owners can add members")
    if not user_exists:
        return NotFound("user")
    if already_member:
        return Conflict("already a member")
    return Conflict("membership changed meanwhile, try again")
