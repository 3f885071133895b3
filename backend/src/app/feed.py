"""Reading the change feed: a page after a token, as the route and the live streams read it.

Without a token the feed starts with a snapshot, page by page, of every object whose latest
write is below the horizon it started at; the log then carries on from that horizon, so an
object that changes while the snapshot is read arrives once, from the log. Each change comes
with the token after it (what an event stream sends as its `id:`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.api.feed_tokens import STAGES, FeedToken, cursor_values
from app.db.executor import Executor, Row
from app.errors import Gone, NotFound
from app.models import Daos
from app.models.changes import Kind
from app.schemas import ChangeOut, MemberOut, OrganizationOut, ResponseModel, SpaceOut, TodoOut

TOO_OLD = (
    "this token is older than the feed keeps changes (CHANGES_RETENTION_SECONDS): "
    "start again without `since`"
)
_DATA: dict[str, type[ResponseModel]] = {
    "organization": OrganizationOut,
    "member": MemberOut,
    "space": SpaceOut,
    "todo": TodoOut,
}


@dataclass
class FeedPage:
    next: FeedToken
    changes: list[ChangeOut] = field(default_factory=list)
    after: list[FeedToken] = field(default_factory=list)
    """The token after each change, in step with `changes`."""
    more: bool = False

    def add(self, change: ChangeOut, after: FeedToken) -> None:
        self.changes.append(change)
        self.after.append(after)


async def read_feed(
    executor: Executor,
    daos: Daos,
    organization_id: uuid.UUID,
    caller_id: uuid.UUID,
    token: FeedToken | None,
    limit: int,
    retention: timedelta,
) -> FeedPage:
    """One page of the feed after `token` (the first page of a snapshot without one), as
    `caller_id` sees it: NotFound unless they are a member."""
    if await daos.memberships.role_of(executor, organization_id, caller_id) is None:
        raise NotFound("organization")
    if token is None:
        token = FeedToken(organization_id, STAGES[0], await daos.changes.horizon(executor))
    elif token.position < (await daos.changes.oldest_allowed(executor, retention) or -1):
        raise Gone(TOO_OLD)
    page = FeedPage(token)
    while token.stage != "changes":
        token = await _snapshot_step(executor, daos, token, caller_id, limit, page)
        if len(page.changes) >= limit:
            page.next, page.more = token, True
            return page
    await _log_step(executor, daos, token, caller_id, limit - len(page.changes), retention, page)
    return page


async def _snapshot_step(
    executor: Executor,
    daos: Daos,
    token: FeedToken,
    caller_id: uuid.UUID,
    limit: int,
    page: FeedPage,
) -> FeedToken:
    kind: Kind = token.stage  # type: ignore[assignment]
    fetch = limit - len(page.changes)
    after = cursor_values(kind, token.after) if token.after else None
    rows = await daos.feed.snapshot_page(
        executor,
        kind,
        token.organization_id,
        caller_id,
        below=token.position,
        after=after,
        fetch=fetch,
    )
    for row in rows:
        page.add(_upsert(kind, row), _after_snapshot_row(token, kind, row))
    if len(rows) < fetch:
        following = STAGES[STAGES.index(kind) + 1]
        return FeedToken(token.organization_id, following, token.position)
    return page.after[-1]


def _after_snapshot_row(token: FeedToken, kind: Kind, row: Row) -> FeedToken:
    width = 3 if kind == "todo" else 1
    values = [getattr(row, f"cursor_{index}") for index in range(width)]
    return FeedToken(
        token.organization_id,
        kind,
        token.position,
        tuple(value.isoformat() if hasattr(value, "isoformat") else str(value) for value in values),
    )


async def _log_step(
    executor: Executor,
    daos: Daos,
    token: FeedToken,
    caller_id: uuid.UUID,
    limit: int,
    retention: timedelta,
    page: FeedPage,
) -> None:
    organization_id = token.organization_id
    if limit <= 0:
        page.next, page.more = token, True
        return
    window = await daos.changes.window(executor, organization_id, token.cursor(), limit, retention)
    if window.oldest_allowed is not None and token.position < window.oldest_allowed:
        raise Gone(TOO_OLD)
    wanted: dict[str, set[uuid.UUID]] = defaultdict(set)
    for entry in window.entries:
        wanted[entry.kind].add(entry.object_id)
        if entry.kind == "member" and entry.object_id == caller_id:
            wanted["organization"].add(organization_id)  # the caller's role is in its data
    current: dict[str, dict[uuid.UUID, Row]] = {
        kind: await daos.feed.current(executor, kind, organization_id, caller_id, sorted(ids))  # type: ignore[arg-type]
        for kind, ids in wanted.items()
    }
    last_op: dict[tuple[str, uuid.UUID], str] = {}
    for entry in window.entries:
        row = current[entry.kind].get(entry.object_id)
        key = (entry.kind, entry.object_id)
        after = FeedToken(
            organization_id, "changes", entry.position, (entry.kind, str(entry.object_id))
        )
        if entry.deleted:
            gone = row is None or row.change_position >= window.horizon
            if gone and last_op.get(key) != "delete":
                delete = ChangeOut(kind=entry.kind, op="delete", id=entry.object_id, data=None)
                page.add(delete, after)
                last_op[key] = "delete"
        elif row is not None and row.change_position == entry.position:
            page.add(_upsert(entry.kind, row), after)  # type: ignore[arg-type]
            last_op[key] = "upsert"
            if entry.kind == "member" and entry.object_id == caller_id:
                organization = current["organization"].get(organization_id)
                if organization is not None:
                    page.add(_upsert("organization", organization), after)
    if window.more:
        last = window.entries[-1]
        page.next = FeedToken(
            organization_id, "changes", last.position, (last.kind, str(last.object_id))
        )
        page.more = True
    else:
        page.next = FeedToken(organization_id, "changes", window.horizon)


def _upsert(kind: Kind, row: Row) -> ChangeOut:
    data: dict[str, Any] = _DATA[kind].model_validate(row).model_dump(mode="json")
    return ChangeOut(kind=kind, op="upsert", id=row.object_id, data=data)
