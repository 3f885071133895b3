"""The change feed: what changed in an organization since a token, exactly (app.models.changes).

Without a token the feed starts with a snapshot, page by page, of every object whose latest
write is below the horizon it started at; the log then carries on from that horizon, so an
object that changes while the snapshot is read arrives once, from the log.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from quart import Blueprint
from quart_schema import validate_response

from app.api.context import (
    current_user_id,
    daos,
    document_errors,
    requires_auth,
    settings,
    transaction,
)
from app.api.feed_tokens import BadToken, FeedToken, cursor_values
from app.api.validation import query_args
from app.errors import InvalidInput
from app.feed import read_feed
from app.schemas import (
    ChangesOut,
    ChangesQuery,
)

bp = Blueprint("changes", __name__)


@bp.get("/organizations/<uuid:organization_id>/changes")
@document_errors(401, 404, 410, 422)
@validate_response(ChangesOut, 200)
@requires_auth
@query_args(ChangesQuery)
async def list_changes(organization_id: uuid.UUID, query_args: ChangesQuery) -> ChangesOut:
    """What changed in the organization since `since` (without it, everything visible now),
    in an order that gives exactly the service's state when applied; members only."""
    user_id = current_user_id()
    config = settings()
    token = None
    if query_args.since is not None:
        token = decode_token(query_args.since, config.verification_keys(), organization_id)
    retention = timedelta(seconds=config.changes_retention_seconds)

    page = await transaction(
        lambda x: read_feed(x, daos(), organization_id, user_id, token, query_args.limit, retention)
    )
    return ChangesOut(
        changes=page.changes, next=page.next.encode(config.signing_key()), more=page.more
    )


def decode_token(text: str, keys: tuple[str, ...], organization_id: uuid.UUID) -> FeedToken:
    try:
        token = FeedToken.decode(text, keys, organization_id)
        if token.stage == "changes":
            token.cursor()
        elif token.after:
            cursor_values(token.stage, token.after)
    except (BadToken, ValueError) as error:
        message = str(error) if isinstance(error, BadToken) else "not a change feed token"
        raise InvalidInput(["query", "since"], message, "value_error") from None
    return token
