"""Live change streams: the change feed pushed to clients as it commits, on every replica.

Each process polls the change log (app.models.changes) every `POLL_INTERVAL_SECONDS`, so a
write through any replica reaches the streams of every replica; PostgreSQL's LISTEN/NOTIFY
would only shorten the wait, and CockroachDB has none. The polling is shared:

- per organization with open streams, one statement per poll asks whether the log has
  anything new below the horizon (an idle stream costs nothing more);
- per *channel* (the streams of one organization opened with one access token), one feed
  read per batch of changes, whatever the number of streams on it; its changes go to each
  of them, each stream skipping what its own catch-up already sent;
- per channel, every `ACCESS_CHECK_SECONDS`, one check that the token still counts and its
  user is still a member: a stream ends within a second of its caller losing access.

A stream first catches up by itself (a snapshot without a token, or the feed after its
`Last-Event-ID`), then joins its channel once it is level with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import structlog

from app.api.feed_tokens import FeedToken
from app.db.database import Database
from app.db.executor import Executor
from app.db.failures import DatabaseUnavailable
from app.errors import NotFound
from app.feed import FeedPage, read_feed
from app.memory import release_free_memory
from app.models import Daos
from app.models.sessions import Caller
from app.schemas import ChangeOut
from app.signals import STREAMS_END_SIGNAL

log = structlog.get_logger(__name__)

POLL_INTERVAL_SECONDS = 0.2
ACCESS_CHECK_SECONDS = 0.5
READ_LIMIT = 1000
TRIM_INTERVAL_SECONDS = 5.0
SHUTDOWN_RETRY_MS = 1000
"""The `retry:` hint sent when the server shuts down: reconnect (to another replica) soon."""


class Rendered:
    """A page's events as the bytes of the stream, each rendered once however many streams
    send it (serialising and signing per stream made 1,000 streams CPU-bound)."""

    def __init__(self, page: FeedPage, key: str) -> None:
        self.page = page
        self.key = key
        self._events: list[bytes] | None = None

    def events(self) -> list[bytes]:
        if self._events is None:
            self._events = [
                render_event(change, after, self.key)
                for change, after in zip(self.page.changes, self.page.after, strict=True)
            ]
        return self._events

    def after(self, token: FeedToken) -> bytes:
        """The events after `token`, as one chunk."""
        mine = token.cursor()
        events = self.events()
        if not self.page.after or self.page.after[0].cursor() > mine:
            return b"".join(events)
        return b"".join(
            event
            for event, after in zip(events, self.page.after, strict=True)
            if after.cursor() > mine
        )


def render_event(change: ChangeOut, after: FeedToken, key: str) -> bytes:
    data = orjson.dumps(change.model_dump(mode="json"))
    return b"id: " + after.encode(key).encode() + b"\nevent: change\ndata: " + data + b"\n\n"


@dataclass(frozen=True)
class End:
    """The last item of a stream: why it ends, and a reconnection hint if it should."""

    reason: str
    retry_ms: int | None = None


@dataclass(eq=False)
class Stream:
    user_id: uuid.UUID
    token: FeedToken
    queue: asyncio.Queue[bytes | End] = field(default_factory=asyncio.Queue)

    def push(self, page: Rendered) -> None:
        """Queue a page this stream read itself, from its own token."""
        if page.page.changes:
            self.queue.put_nowait(b"".join(page.events()))
        self.token = page.page.next

    def push_shared(self, page: Rendered) -> None:
        """Queue what this stream has not had yet of a page its channel read: while catching
        up by itself, it may have read past the channel's token."""
        if chunk := page.after(self.token):
            self.queue.put_nowait(chunk)
        if page.page.next.cursor() > self.token.cursor():
            self.token = page.page.next

    def end(self, reason: str, retry_ms: int | None = None) -> None:
        self.queue.put_nowait(End(reason, retry_ms))


@dataclass(eq=False)
class Channel:
    organization_id: uuid.UUID
    caller: Caller
    token: FeedToken
    streams: set[Stream] = field(default_factory=set)
    checked_at: float = 0.0


class TooManyStreams(Exception):
    pass


class LiveChanges:
    """The streams of this process and the task that feeds them."""

    def __init__(
        self,
        database: Database,
        daos: Daos,
        *,
        max_streams_per_user: int,
        retention: timedelta,
        signing_key: Callable[[], str],
    ) -> None:
        self.database = database
        self.signing_key = signing_key
        self.daos = daos
        self.max_streams_per_user = max_streams_per_user
        self.retention = retention
        self.channels: dict[tuple[uuid.UUID, Caller], Channel] = {}
        self.per_user: Counter[uuid.UUID] = Counter()
        self.closing = False
        self.opened_since_trim = False
        self._task: asyncio.Task[None] | None = None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.end_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def end_all(self) -> None:
        """The server is shutting down: end every stream at once, with a `retry:` hint."""
        self.closing = True
        for channel in self.channels.values():
            for stream in channel.streams:
                stream.end("the server is shutting down", SHUTDOWN_RETRY_MS)

    # Streams --------------------------------------------------------------------------------

    def reserve(self, user_id: uuid.UUID) -> None:
        """Count a stream of `user_id` in, or refuse it (TooManyStreams)."""
        if self.per_user[user_id] >= self.max_streams_per_user:
            raise TooManyStreams
        self.per_user[user_id] += 1

    def release(self, user_id: uuid.UUID) -> None:
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]

    async def read(
        self, caller: Caller, token: FeedToken | None, organization_id: uuid.UUID
    ) -> FeedPage:
        """One page of the feed as `caller` sees it; NotFound once they may not."""
        return await self.database.run(
            lambda x: read_feed(
                x,
                self.daos,
                organization_id,
                caller.user_id,
                token,
                READ_LIMIT,
                self.retention,
            )
        )

    async def join(self, stream: Stream, caller: Caller) -> None:
        """Catch `stream` up from its token by itself, then add it to its channel, whose
        reads it then shares."""
        organization_id = stream.token.organization_id
        key = (organization_id, caller)
        while True:
            channel = self.channels.get(key)
            self.opened_since_trim = True
            if channel is not None and stream.token.cursor() >= channel.token.cursor():
                channel.streams.add(stream)  # no await since the comparison: still level
                return
            page = await self.read(caller, stream.token, organization_id)
            stream.push(Rendered(page, self.signing_key()))
            if page.more:
                continue
            if key not in self.channels:
                self.channels[key] = Channel(organization_id, caller, stream.token, {stream})
                return

    def leave(self, stream: Stream, caller: Caller) -> None:
        key = (stream.token.organization_id, caller)
        channel = self.channels.get(key)
        if channel is not None:
            channel.streams.discard(stream)
            if not channel.streams:
                del self.channels[key]

    # Polling --------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        trimmed_at = 0.0
        while True:
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
            now = loop.time()
            if self.opened_since_trim and now - trimmed_at >= TRIM_INTERVAL_SECONDS:
                # Opening streams reads a feed page each, whose objects are freed at once:
                # below the streams that stay, glibc keeps those pages (app.memory).
                self.opened_since_trim, trimmed_at = False, now
                release_free_memory()
            try:
                await self._poll(now)
            except DatabaseUnavailable:
                continue  # the streams wait; the next poll catches up
            except Exception:  # the poller must outlive any one failure
                log.exception("polling the change log failed")

    async def _poll(self, now: float) -> None:
        by_organization: dict[uuid.UUID, list[Channel]] = {}
        for channel in list(self.channels.values()):
            by_organization.setdefault(channel.organization_id, []).append(channel)
        for organization_id, channels in by_organization.items():
            oldest = min((channel.token for channel in channels), key=FeedToken.cursor)
            if await self._anything_new(organization_id, oldest):
                for channel in channels:
                    await self._read_channel(channel)
            for channel in channels:
                if now - channel.checked_at >= ACCESS_CHECK_SECONDS:
                    channel.checked_at = now
                    await self._check_access(channel)

    async def _anything_new(self, organization_id: uuid.UUID, oldest: FeedToken) -> bool:
        cursor = oldest.cursor()
        window = await self.database.run(
            lambda x: self.daos.changes.window(x, organization_id, cursor, 1, self.retention),
            single_statement=True,
        )
        return bool(window.entries)

    async def _read_channel(self, channel: Channel) -> None:
        while channel.streams:
            try:
                page = await self.read(channel.caller, channel.token, channel.organization_id)
            except NotFound:
                self._end_channel(channel, "the caller can no longer see this organization")
                return
            rendered = Rendered(page, self.signing_key())
            for stream in channel.streams:
                stream.push_shared(rendered)
            channel.token = page.next
            if not page.more:
                return

    async def _check_access(self, channel: Channel) -> None:
        caller = channel.caller
        if caller.expires_at <= datetime.now(UTC):
            self._end_channel(channel, "the access token expired")
            return

        async def check(executor: Executor) -> str | None:
            if not await self.daos.sessions.is_valid(executor, caller):
                return "the access token was revoked"
            role = await self.daos.memberships.role_of(
                executor, channel.organization_id, caller.user_id
            )
            return "the caller can no longer see this organization" if role is None else None

        reason = await self.database.run(check)
        if reason is not None:
            self._end_channel(channel, reason)

    def _end_channel(self, channel: Channel, reason: str) -> None:
        for stream in channel.streams:
            stream.end(reason)
        self.channels.pop((channel.organization_id, channel.caller), None)


def end_streams_on_shutdown_signal(live: LiveChanges) -> Callable[[], None]:
    """End every stream when STREAMS_END_SIGNAL arrives; returns what undoes it."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(STREAMS_END_SIGNAL, live.end_all)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None  # no signals here (not the main thread, or not Unix)

    def undo() -> None:
        loop.remove_signal_handler(STREAMS_END_SIGNAL)
        # Not back to the default, which ends the process: a supervisor may still send it.
        signal.signal(STREAMS_END_SIGNAL, signal.SIG_IGN)

    return undo
