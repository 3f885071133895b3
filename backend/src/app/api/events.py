"""The change feed as server-sent events: each change pushed as it commits (app.live)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import cast

import orjson
from quart import Blueprint, Response, current_app, request
from quart_schema import document_headers, document_querystring, document_response

from app.api.changes import decode_token
from app.api.context import current_caller, document_errors, requires_auth, settings
from app.errors import NotFound, ServiceUnavailable, TooManyRequests
from app.live import End, LiveChanges, Rendered, Stream, TooManyStreams
from app.schemas import EventsHeaders, EventsQuery, EventStream

bp = Blueprint("events", __name__)

STREAMS_RETRY_AFTER_SECONDS = 5


def live() -> LiveChanges:
    return cast(LiveChanges, current_app.extensions["live"])


@bp.get("/organizations/<uuid:organization_id>/events")
@document_errors(401, 404, 410, 422, 429, 503)
@document_response(EventStream, 200)
@document_querystring(EventsQuery)
@document_headers(EventsHeaders)
@requires_auth
async def follow_events(organization_id: uuid.UUID) -> Response:
    """The organization's changes as they commit, one event each (`id:` the token after it;
    `Last-Event-ID` or `since` resumes), a heartbeat comment every EVENTS_HEARTBEAT_SECONDS
    (15 s); members only."""
    caller = current_caller()
    config = settings()
    resume = request.headers.get("Last-Event-ID") or request.args.get("since")
    token = None
    if resume:
        token = decode_token(resume, config.verification_keys(), organization_id)
    streams = live()
    if streams.closing:
        raise ServiceUnavailable()
    try:
        streams.reserve(caller.user_id)
    except TooManyStreams:
        raise TooManyRequests(STREAMS_RETRY_AFTER_SECONDS) from None
    try:
        # The first page is read before answering, so a 404 or 410 is an HTTP status.
        page = await streams.read(caller, token, organization_id)
    except BaseException:
        streams.release(caller.user_id)
        raise
    stream = Stream(caller.user_id, page.next)
    stream.push(Rendered(page, config.signing_key()))
    heartbeat = config.events_heartbeat_seconds

    async def events() -> AsyncIterator[bytes]:
        try:
            await streams.join(stream, caller)
            while True:
                try:
                    async with asyncio.timeout(heartbeat):  # no task per wait, unlike wait_for
                        item = await stream.queue.get()
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if isinstance(item, End):
                    yield _end(item)
                    return
                yield item
        except NotFound:
            yield _end(End("the caller can no longer see this organization"))
        finally:
            streams.leave(stream, caller)
            streams.release(caller.user_id)

    response = Response(
        events(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None
    return response


def _end(item: End) -> bytes:
    retry = f"retry: {item.retry_ms}\n" if item.retry_ms is not None else ""
    data = orjson.dumps({"detail": item.reason}).decode()
    return f"{retry}event: end\ndata: {data}\n\n".encode()
