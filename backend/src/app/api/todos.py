"""Todos: members read every todo of their organization's spaces; authors and owners change.

Each request is one statement on the happy path: visibility and the right to change are part
of the INSERT, UPDATE or DELETE itself. Only when it matched nothing is a second query made to
tell the caller why (404, 403 or 412).
"""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, Response, request, url_for
from quart_schema import (
    document_headers,
    document_response,
)

from app.api.context import (
    current_caller,
    daos,
    document_errors,
    documents_no_content,
    json_response,
    refuse_unless_session_valid,
    requires_auth_in_statement,
    transaction,
)
from app.api.etags import IF_MATCH, IF_NONE_MATCH, etag, expected_versions, none_match
from app.api.idempotency import Created, create_once
from app.api.validation import json_body, query_args
from app.db.executor import Executor
from app.errors import APIError, Forbidden, NotFound, PreconditionFailed
from app.models import Role
from app.models.sessions import Caller
from app.models.todos import TodoRow
from app.pagination import next_cursor
from app.schemas import (
    IdempotencyHeaders,
    IfMatchHeaders,
    IfNoneMatchHeaders,
    NoContent,
    TodoCreate,
    TodoListQuery,
    TodoOut,
    TodoPage,
    TodoUpdate,
    todo_json,
    todo_page_json,
)

bp = Blueprint("todos", __name__)


@bp.post("/todos")
@document_errors(401, 404, 422)
@document_response(TodoOut, 201)
@document_headers(IdempotencyHeaders)
@requires_auth_in_statement
@json_body(TodoCreate)
async def create_todo(data: TodoCreate) -> Response:
    """Create a todo in a space of an organization the caller belongs to (404 otherwise)."""
    caller = current_caller()

    async def create(executor: Executor) -> Created:
        todo = await daos().todos.create_visible(
            executor,
            space_id=data.space_id,
            caller=caller,
            title=data.title,
            content=data.content,
            done=data.done,
        )
        if todo is None:
            raise NotFound("space")
        headers = {
            "Location": url_for("todos.get_todo", todo_id=todo.id),
            "ETag": etag(todo.version),
        }
        return Created(TodoOut.from_row(todo).model_dump(mode="json"), headers)

    async def space_visible(executor: Executor, _: dict[str, Any]) -> bool:
        space = await daos().spaces.get_visible(executor, data.space_id, caller.user_id)
        return space is not None

    created = await create_once(
        create, data, still_visible=space_visible, gone="space", single_statement=True
    )
    return created.as_response()


@bp.get("/todos")
@document_errors(401, 422)
@document_response(TodoPage, 200)
@requires_auth_in_statement
@query_args(TodoListQuery)
async def list_todos(query_args: TodoListQuery) -> Response:
    """The todos the caller can see, newest first, a page at a time (keyset cursor)."""
    caller = current_caller()
    rows = await transaction(
        lambda x: daos().todos.page_visible(
            x,
            caller,
            space_id=query_args.space_id,
            done=query_args.done,
            after=query_args.cursor,
            fetch=query_args.limit + 1,
        ),
        single_statement=True,
    )
    if not rows:
        await refuse_unless_session_valid()
    page, cursor = next_cursor(rows, query_args.limit)
    return json_response(todo_page_json(page, cursor))


@bp.get("/todos/<uuid:todo_id>")
@document_errors(401, 404)
@document_response(TodoOut, 200)
@document_response(NoContent, 304)
@document_headers(IfNoneMatchHeaders)
@requires_auth_in_statement
async def get_todo(todo_id: uuid.UUID) -> Response:
    """One todo. With `If-None-Match` naming its current version: 304, without a body."""
    caller = current_caller()
    todo = await transaction(
        lambda x: daos().todos.get_visible(x, todo_id, caller), single_statement=True
    )
    if todo is None:
        raise NotFound("todo")
    tag = etag(todo.version)
    if none_match(request.headers.get(IF_NONE_MATCH), todo.version):
        return Response(b"", status=304, headers={"ETag": tag})
    return json_response(todo_json(todo), headers={"ETag": tag})


@bp.patch("/todos/<uuid:todo_id>")
@document_errors(401, 403, 404, 412, 422)
@document_response(TodoOut, 200)
@document_headers(IfMatchHeaders)
@requires_auth_in_statement
@json_body(TodoUpdate)
async def update_todo(todo_id: uuid.UUID, data: TodoUpdate) -> Response:
    """Change some fields; the version grows by one. Authors and organization owners only."""
    caller = current_caller()
    versions = expected_versions(request.headers.get(IF_MATCH))

    async def update(executor: Executor) -> TodoRow:
        todos = daos().todos
        todo = await todos.update_permitted(executor, todo_id, caller, data.changes(), versions)
        if todo is None:
            raise await _refusal(executor, todo_id, caller, versions)
        return todo

    todo = await transaction(update, single_statement=True)
    return json_response(todo_json(todo), headers={"ETag": etag(todo.version)})


@bp.delete("/todos/<uuid:todo_id>")
@document_errors(401, 403, 404, 412, 422)
@documents_no_content
@document_headers(IfMatchHeaders)
@requires_auth_in_statement
async def delete_todo(todo_id: uuid.UUID) -> tuple[str, int]:
    """Delete a todo (204). Authors and organization owners only."""
    caller = current_caller()
    versions = expected_versions(request.headers.get(IF_MATCH))

    async def delete(executor: Executor) -> None:
        if not await daos().todos.delete_permitted(executor, todo_id, caller, versions):
            raise await _refusal(executor, todo_id, caller, versions)

    await transaction(delete, single_statement=True)
    return "", 204


async def _refusal(
    executor: Executor, todo_id: uuid.UUID, caller: Caller, versions: list[int] | None
) -> APIError:
    """Why a change matched nothing: not visible (404), not allowed (403), or stale (412).
    (A token that no longer counts is a 401: `requires_auth_in_statement` asks after this.)"""
    access = await daos().todos.access_of(executor, todo_id, caller.user_id)
    if access is None:
        return NotFound("todo")
    if access.author_id != caller.user_id and access.caller_role is not Role.OWNER:
        return Forbidden("only the author or an organization owner can change this todo")
    if versions is not None and access.version not in versions:
        return PreconditionFailed()
    return NotFound("todo")  # deleted between the change and this look: it is gone
