"""Spaces: the containers of todos inside an organization, visible to its members."""

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
from app.api.validation import json_body, query_args
from app.db.executor import Executor
from app.errors import NotFound
from app.pagination import next_cursor
from app.schemas import IdempotencyHeaders, SpaceCreate, SpaceListQuery, SpaceOut, SpacePage

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

    return (await create_once(create, data, single_statement=True)).as_response()


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
    if not rows:
        await refuse_unless_caller_exists()
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
