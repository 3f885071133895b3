"""Spaces: the containers of todos inside an organization, visible to its members."""

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
from app.api.validation import json_body, query_args
from app.db.executor import Executor
from app.errors import NotFound
from app.models.spaces import SpaceRow
from app.pagination import next_cursor
from app.schemas import (
    IdempotencyHeaders,
    SpaceCreate,
    SpaceListQuery,
    SpaceOut,
    SpacePage,
    SpaceUpdate,
)

bp = Blueprint("spaces", __name__)


@bp.post("/spaces")
@document_errors(401, 404, 422)
@document_response(SpaceOut, 201)
@document_headers(IdempotencyHeaders)
@requires_auth
@json_body(SpaceCreate)
async def create_space(data: SpaceCreate) -> Response:
    """Create a space in an organization the caller belongs to (404 otherwise)."""
    user_id = current_user_id()

    async def create(executor: Executor) -> Created:
        space = await daos().spaces.create_visible(
            executor, data.organization_id, user_id, data.name
        )
        if space is None:
            raise NotFound("organization")
        location = url_for("spaces.get_space", space_id=space.id)
        return Created(
            SpaceOut.model_validate(space).model_dump(mode="json"), {"Location": location}
        )

    async def space_visible(executor: Executor, space: dict[str, Any]) -> bool:
        return (
            await daos().spaces.get_visible(executor, uuid.UUID(space["id"]), user_id) is not None
        )

    created = await create_once(
        create, data, still_visible=space_visible, gone="space", single_statement=True
    )
    return created.as_response()


@bp.get("/spaces")
@document_errors(401, 422)
@validate_response(SpacePage, 200)
@requires_auth
@query_args(SpaceListQuery)
async def list_spaces(query_args: SpaceListQuery) -> SpacePage:
    """The spaces the caller can see, newest first, a page at a time (keyset cursor)."""
    user_id = current_user_id()
    rows = await transaction(
        lambda x: daos().spaces.page_visible(
            x,
            user_id,
            organization_id=query_args.organization_id,
            after=query_args.cursor,
            fetch=query_args.limit + 1,
        ),
        single_statement=True,
    )
    page, cursor = next_cursor(rows, query_args.limit)
    return SpacePage(items=[SpaceOut.model_validate(space) for space in page], next_cursor=cursor)


@bp.get("/spaces/<uuid:space_id>")
@document_errors(401, 404)
@validate_response(SpaceOut, 200)
@requires_auth
async def get_space(space_id: uuid.UUID) -> SpaceOut:
    user_id = current_user_id()
    space = await transaction(
        lambda x: daos().spaces.get_visible(x, space_id, user_id), single_statement=True
    )
    if space is None:
        raise NotFound("space")
    return SpaceOut.model_validate(space)


@bp.patch("/spaces/<uuid:space_id>")
@document_errors(401, 403, 404, 422)
@validate_response(SpaceOut, 200)
@requires_auth
@json_body(SpaceUpdate)
async def update_space(space_id: uuid.UUID, data: SpaceUpdate) -> SpaceOut:
    """Rename the space; owners of its organization only."""
    user_id = current_user_id()

    async def rename(executor: Executor) -> SpaceRow:
        space = await daos().spaces.rename(executor, space_id, user_id, data.name)
        if space is None:
            role = await daos().spaces.role_in(executor, space_id, user_id)
            raise owners_only(role, "space", "rename it")
        return space

    return SpaceOut.model_validate(await transaction(rename))


@bp.delete("/spaces/<uuid:space_id>")
@document_errors(401, 403, 404)
@documents_no_content
@requires_auth
async def delete_space(space_id: uuid.UUID) -> tuple[str, int]:
    """Delete the space with its todos (204); owners of its organization only.

    It is gone for everyone at once; its todos are removed in the background, in batches.
    """
    user_id = current_user_id()

    async def delete(executor: Executor) -> None:
        if not await daos().spaces.mark_deleted(executor, space_id, user_id):
            role = await daos().spaces.role_in(executor, space_id, user_id)
            raise owners_only(role, "space", "delete it")

    await transaction(delete)
    deletions().wake()
    return "", 204
