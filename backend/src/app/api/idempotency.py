"""`Idempotency-Key` on POST: a retried request gets the first response, not a duplicate.

The key is claimed in the same transaction that creates the resource and the response is
stored there too, so both commit together or not at all. Two identical requests racing each
other serialize on the key's unique index: the loser's transaction is retried (SQLSTATE
40001) or sees the winner's row, and replays its response. Errors are not stored: a request
that failed can be retried with the same key. Keys expire after IDEMPOTENCY_TTL_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from pydantic import BaseModel
from quart import Response, request

from app.api.context import (
    current_caller,
    daos,
    json_response,
    session_checked,
    settings,
    transaction,
)
from app.db.executor import Executor
from app.errors import Conflict, InvalidInput, NotFound, Unauthorized

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Created:
    """A response as stored for replay: JSON-ready body, status and headers."""

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 201

    def as_response(self) -> Response:
        """The response, serialised here: the body is JSON-ready already, and a tuple with a
        headers dict would cost quart-schema a pydantic TypeAdapter per request."""
        return json_response(orjson.dumps(self.body), self.status, self.headers)


StillVisible = Callable[[Executor, dict[str, Any]], Awaitable[bool]]
"""Whether the caller may still see what a stored response shows (its JSON body given)."""


async def create_once(
    work: Callable[[Executor], Awaitable[Created]],
    body: BaseModel,
    *,
    still_visible: StillVisible,
    gone: str,
    single_statement: bool = False,
) -> Created:
    """Run `work` in a transaction; with an Idempotency-Key, at most once per user and key.

    A retry replays the first response only while the caller can still see what it created
    (`still_visible`); once they have left the organization, or it or the space is deleted,
    the retry is the 404 (`NotFound(gone)`) any other request of theirs would get.

    `single_statement` says that `work` sends one statement: without a key it then runs as
    that statement's own transaction (see `transaction`). With a key it always runs in a
    transaction, beside the statements that claim and complete the key.
    """
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return await transaction(work, single_statement=single_statement)
    if not _SANE_KEY.match(key):
        raise InvalidInput(
            ["header", IDEMPOTENCY_KEY],
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            "idempotency_key_invalid",
        )
    caller = current_caller()
    user_id = caller.user_id
    check_session = not session_checked()
    fingerprint = _fingerprint(body)
    ttl = timedelta(seconds=settings().idempotency_ttl_seconds)

    async def once(executor: Executor) -> Created:
        # A replay must not outlive the token: on a route whose statement checks the session
        # itself (requires_auth_in_statement), check it here, before anything is replayed.
        if check_session and not await daos().sessions.is_valid(executor, caller):
            raise Unauthorized("the token is no longer valid: log in again")
        keys = daos().idempotency_keys
        claim = await keys.claim(executor, user_id, key, fingerprint, ttl)
        if claim is not None:
            created = await work(executor)
            await keys.complete(
                executor,
                claim,
                created.status,
                json.dumps(created.body),
                json.dumps(created.headers),
            )
            return created
        stored = await keys.find(executor, user_id, key)
        if stored.request_hash != fingerprint:
            raise InvalidInput(
                ["header", IDEMPOTENCY_KEY],
                "this Idempotency-Key was already used for a different request",
                "idempotency_key_reused",
            )
        if stored.status_code is None or stored.response_body is None:
            raise Conflict("a request with this Idempotency-Key is still in progress")
        replayed = json.loads(stored.response_body)
        if not await still_visible(executor, replayed):
            raise NotFound(gone)
        headers = json.loads(stored.response_headers or "{}")
        return Created(replayed, {**headers, REPLAYED: "true"}, stored.status_code)

    return await transaction(once)


def _fingerprint(body: BaseModel) -> str:
    """Same route and same validated body (whatever its whitespace or key order) -> same hash."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()
