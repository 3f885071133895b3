"""Organizations: create, list, read, rename, delete. Non-members get 404 for everything of an
organization; what only owners may do is a 403 for plain members."""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, Response, url_for
from quart_schema import document_headers, document_response, validate_response

from app.api.context import (
    current_user_id,
    daos,
    deletions,
    document_errors,
    documents_no_content,
    owners_only,
    requires_auth,
    transaction,
)
from app.api.idempotency import Created, create_once
from app.api.validation import json_body
from app.db.executor import Executor
from app.db.failures import DuplicateValue
from app.errors import Conflict, NotFound
from app.models import Role
from app.models.organizations import OrganizationWithRole
from app.schemas import (
    IdempotencyHeaders,
    OrganizationCreate,
    OrganizationOut,
    OrganizationUpdate,
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

    async def organization_visible(executor: Executor, organization: dict[str, Any]) -> bool:
        found = await daos().organizations.get_visible(
            executor, uuid.UUID(organization["id"]), user_id
        )
        return found is not None

    created = await create_once(
        create, data, still_visible=organization_visible, gone="organization"
    )
    return created.as_response()


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


@bp.patch("/organizations/<uuid:organization_id>")
@document_errors(401, 403, 404, 409, 422)
@validate_response(OrganizationOut, 200)
@requires_auth
@json_body(OrganizationUpdate)
async def update_organization(
    organization_id: uuid.UUID, data: OrganizationUpdate
) -> OrganizationOut:
    """Rename the organization; owners only."""
    user_id = current_user_id()

    async def rename(executor: Executor) -> OrganizationWithRole:
        organization = await daos().organizations.rename(
            executor, organization_id, user_id, data.name
        )
        if organization is None:
            role = await daos().memberships.role_of(executor, organization_id, user_id)
            raise owners_only(role, "organization", "rename it")
        return organization

    try:
        return _out(await transaction(rename))
    except DuplicateValue:
        raise Conflict("organization name already taken") from None


@bp.delete("/organizations/<uuid:organization_id>")
@document_errors(401, 403, 404)
@documents_no_content
@requires_auth
async def delete_organization(organization_id: uuid.UUID) -> tuple[str, int]:
    """Delete the organization with its members, spaces and todos (204); owners only.

    It is gone for everyone at once; its rows are removed in the background, in batches.
    """
    user_id = current_user_id()

    async def delete(executor: Executor) -> None:
        if not await daos().organizations.mark_deleted(executor, organization_id, user_id):
            role = await daos().memberships.role_of(executor, organization_id, user_id)
            raise owners_only(role, "organization", "delete it")

    await transaction(delete)
    deletions().wake()
    return "", 204
