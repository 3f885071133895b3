"""Live event streams against two real replicas (`minor-illusion serve` processes) on one
database: a write through one reaches a stream on the other within a second; a stream resumes
from `Last-Event-ID` without loss; it ends within a second when its caller loses access; too
many streams are a 429; heartbeats; SIGTERM ends streams at once with a `retry:` hint."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db import migrate
from tests.conftest import TEST_SECRET, Served, create_database, served, unique_name

pytestmark = pytest.mark.live_db

MAX_STREAMS = 3
HEARTBEAT_SECONDS = 1.0
WITHIN = 1.0
"""How soon an event or the end of a stream must arrive (API.md)."""


@dataclass
class SSE:
    """One stream read on a thread: its events and comments, with when they arrived."""

    response: httpx.Response
    items: queue.Queue[tuple[float, dict[str, str]]] = field(default_factory=queue.Queue)

    def next(self, timeout: float = 10.0) -> tuple[float, dict[str, str]]:
        return self.items.get(timeout=timeout)

    def next_change(self, timeout: float = 10.0) -> tuple[float, dict[str, Any], str]:
        while True:
            at, item = self.next(timeout)
            if item.get("event") == "change":
                return at, json.loads(item["data"]), item["id"]
            assert item.get("event") != "end", item


def _read(response: httpx.Response, items: queue.Queue[tuple[float, dict[str, str]]]) -> None:
    item: dict[str, str] = {}
    with contextlib.suppress(httpx.HTTPError):
        for line in response.iter_lines():
            if not line:
                if item:
                    items.put((time.monotonic(), item))
                item = {}
            elif line.startswith(":"):
                items.put((time.monotonic(), {"comment": line[1:].strip()}))
            else:
                name, _, value = line.partition(":")
                item[name] = value.removeprefix(" ")
    items.put((time.monotonic(), {"closed": "yes"}))


@contextlib.contextmanager
def _stream(
    base_url: str, path: str, token: str, last_event_id: str | None = None
) -> Iterator[SSE]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SSE(response)
        reader = threading.Thread(target=_read, args=(response, sse.items), daemon=True)
        reader.start()
        yield sse
        response.close()


@dataclass
class Replicas:
    a: Served
    b: Served
    env: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def replicas(
    embedded_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    url = create_database(embedded_server_url, "minor_illusion_events")
    migrate.upgrade(url)
    folder = tmp_path_factory.mktemp("events")
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_PREVIOUS", "ROOT_PATH"}}
    env.update(
        DATABASE_URL=url,
        SECRET_KEY=TEST_SECRET,
        LOG_LEVEL="WARNING",
        DATA_DIR=str(folder),
        EVENTS_MAX_STREAMS_PER_USER=str(MAX_STREAMS),
        EVENTS_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
    )
    starting = [
        served(env, folder / f"replica-{name}.log", "--no-migrate", "--workers", "1")
        for name in ("a", "b")
    ]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(manager.__enter__) for manager in starting]
        running = [future.result() for future in futures]
        for manager in starting:
            stack.push(manager.__exit__)
        yield Replicas(running[0], running[1], env, folder)


@dataclass
class Org:
    owner: str
    member: str
    member_id: str
    organization_id: str
    space_id: str

    @property
    def events(self) -> str:
        return f"/organizations/{self.organization_id}/events"


def _user(http: httpx.Client) -> tuple[str, str, str]:
    name = unique_name()
    assert (
        http.post(
            "/auth/register", json={"name": name, "password": "pw for events tests"}
        ).status_code
        == 201
    )
    login = http.post("/auth/login", json={"username": name, "password": "pw for events tests"})
    token = login.json()["access_token"]
    me = http.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
    return name, token, me["id"]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def org(replicas: Replicas) -> Org:
    with httpx.Client(base_url=replicas.a.base_url, timeout=30) as http:
        _, owner, _ = _user(http)
        member_name, member, member_id = _user(http)
        organization = http.post(
            "/organizations", json={"name": unique_name("org")}, headers=_auth(owner)
        ).json()
        added = http.post(
            f"/organizations/{organization['id']}/members",
            json={"user_name": member_name},
            headers=_auth(owner),
        )
        assert added.status_code == 201
        space = http.post(
            "/spaces",
            json={"name": "s", "organization_id": organization["id"]},
            headers=_auth(owner),
        ).json()
    return Org(owner, member, member_id, organization["id"], space["id"])


def _create_todo(base_url: str, org: Org, title: str) -> tuple[float, dict[str, Any]]:
    """Create a todo; when its commit was acknowledged, and the todo."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        response = http.post(
            "/todos", json={"title": title, "space_id": org.space_id}, headers=_auth(org.owner)
        )
    assert response.status_code == 201
    return time.monotonic(), response.json()


def _catch_up(sse: SSE) -> None:
    """Read the snapshot a new stream starts with (organization, 2 members, space)."""
    for _ in range(4):
        sse.next_change()


SETTLED = 1.5
"""Long enough for a stream's first checks to have passed: what ends it later is the loss."""


def test_a_write_through_another_replica_reaches_the_stream_within_a_second(
    replicas: Replicas, org: Org
) -> None:
    with _stream(replicas.a.base_url, org.events, org.member) as sse:
        _catch_up(sse)
        for index in range(3):
            committed, todo = _create_todo(replicas.b.base_url, org, f"from b {index}")
            arrived, change, event_id = sse.next_change()
            assert change["op"] == "upsert"
            assert change["data"] == todo
            assert arrived - committed < WITHIN
        # An event's id is a token of the feed: reading on from it finds nothing more.
        with httpx.Client(base_url=replicas.b.base_url) as http:
            page = http.get(
                f"/organizations/{org.organization_id}/changes",
                params={"since": event_id},
                headers=_auth(org.member),
            ).json()
        assert page["changes"] == []


def test_a_stream_resumes_after_its_last_event_id_without_loss(
    replicas: Replicas, org: Org
) -> None:
    with _stream(replicas.a.base_url, org.events, org.member) as sse:
        _catch_up(sse)
        _, first = _create_todo(replicas.a.base_url, org, "before the break")
        _, change, last_id = sse.next_change()
        assert change["id"] == first["id"]
    missed = [_create_todo(replicas.b.base_url, org, f"while away {i}")[1] for i in range(3)]
    with _stream(replicas.b.base_url, org.events, org.member, last_event_id=last_id) as sse:
        seen = [sse.next_change()[1]["data"] for _ in missed]
        assert seen == missed
        _, after = _create_todo(replicas.a.base_url, org, "after the break")
        assert sse.next_change()[1]["data"] == after


def _assert_ends_within_a_second(sse: SSE, since: float, reason: str) -> None:
    while True:
        at, item = sse.next(timeout=5)
        if item.get("event") == "end" or "closed" in item:
            break
    assert at - since < WITHIN
    assert reason in item.get("data", "")


def _remove_the_member(http: httpx.Client, org: Org) -> httpx.Response:
    path = f"/organizations/{org.organization_id}/members/{org.member_id}"
    return http.delete(path, headers=_auth(org.owner))


def _log_the_member_out(http: httpx.Client, org: Org) -> httpx.Response:
    return http.post("/auth/logout", headers=_auth(org.member))


def _delete_the_organization(http: httpx.Client, org: Org) -> httpx.Response:
    return http.delete(f"/organizations/{org.organization_id}", headers=_auth(org.owner))


@pytest.mark.parametrize(
    ("loss", "reason"),
    [
        pytest.param(_remove_the_member, "can no longer see", id="removed"),
        pytest.param(_log_the_member_out, "revoked", id="token revoked"),
        pytest.param(_delete_the_organization, "can no longer see", id="organization deleted"),
    ],
)
def test_a_stream_ends_within_a_second_when_its_caller_loses_access(
    replicas: Replicas, org: Org, loss: Callable[[httpx.Client, Org], httpx.Response], reason: str
) -> None:
    """The loss goes through the other replica; the member's stream is on the first."""
    with _stream(replicas.a.base_url, org.events, org.member) as sse:
        _catch_up(sse)
        time.sleep(SETTLED)
        with httpx.Client(base_url=replicas.b.base_url) as http:
            assert loss(http, org).status_code == 204
        _assert_ends_within_a_second(sse, time.monotonic(), reason)


def test_too_many_streams_for_one_user_are_a_429_with_retry_after(
    replicas: Replicas, org: Org
) -> None:
    with contextlib.ExitStack() as open_streams:
        for _ in range(MAX_STREAMS):
            open_streams.enter_context(_stream(replicas.a.base_url, org.events, org.member))
        with httpx.Client(base_url=replicas.a.base_url) as http:
            refused = http.get(org.events, headers=_auth(org.member))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert set(refused.json()) == {"detail"}
    # Closed streams give their places back.
    deadline = time.monotonic() + 5
    while True:
        with (
            httpx.Client(base_url=replicas.a.base_url) as http,
            http.stream("GET", org.events, headers=_auth(org.member)) as response,
        ):
            if response.status_code == 200 or time.monotonic() > deadline:
                assert response.status_code == 200
                break
        time.sleep(0.1)


def test_an_idle_stream_gets_heartbeats(replicas: Replicas, org: Org) -> None:
    with _stream(replicas.a.base_url, org.events, org.member) as sse:
        _catch_up(sse)
        started = time.monotonic()
        at, item = sse.next(timeout=HEARTBEAT_SECONDS * 3)
        assert item == {"comment": "heartbeat"}
        assert at - started < HEARTBEAT_SECONDS * 2


@pytest.mark.parametrize("since", ["garbage", "x" * 5000], ids=["malformed", "too long"])
def test_a_bad_last_event_id_is_a_422_and_outsiders_get_404(
    replicas: Replicas, org: Org, since: str
) -> None:
    with httpx.Client(base_url=replicas.a.base_url) as http:
        bad = http.get(org.events, headers={**_auth(org.member), "Last-Event-ID": since})
        assert bad.status_code == 422
        _, stranger, _ = _user(http)
        assert http.get(org.events, headers=_auth(stranger)).status_code == 404


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one process", "worker processes"])
def test_sigterm_ends_open_streams_at_once_with_a_retry_hint(
    replicas: Replicas, org: Org, workers: str
) -> None:
    """With worker processes, the supervising process passes the word on (app.cli)."""
    log = replicas.folder / f"sigterm-{workers}.log"
    with served(replicas.env, log, "--no-migrate", "--workers", workers) as server:
        with _stream(server.base_url, org.events, org.member) as sse:
            _catch_up(sse)
            sent = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            at, item = sse.next(timeout=5)
            assert item.get("event") == "end", item
            assert "retry" in item
            assert int(item["retry"]) > 0
            assert at - sent < WITHIN
        assert server.process.wait(timeout=10) == 0


def test_a_copy_kept_by_events_with_a_reconnect_equals_a_snapshot(
    replicas: Replicas, org: Org
) -> None:
    """Writers on both replicas (creates, changes, deletes, a member added and removed)
    while a client keeps a copy from the events of replica A, drops the connection half-way
    and resumes on replica B from its Last-Event-ID: afterwards the copy equals a snapshot,
    and no event was applied twice."""
    copy: dict[tuple[str, str], Any] = {}
    seen_ids: set[str] = set()

    def apply(change: dict[str, Any], event_id: str) -> None:
        assert event_id not in seen_ids, "an event came twice"
        seen_ids.add(event_id)
        key = (change["kind"], change["id"])
        if change["op"] == "upsert":
            copy[key] = change["data"]
        else:
            copy.pop(key, None)

    def write(base_url: str, worker: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30, headers=_auth(org.owner)) as http:
            mine: list[str] = []
            for step in range(12):
                time.sleep(0.1)  # spread over the disconnection
                if step % 4 == 3 and mine:
                    assert http.delete(f"/todos/{mine.pop(0)}").status_code == 204
                elif step % 2 == 1 and mine:
                    patched = http.patch(f"/todos/{mine[-1]}", json={"title": f"{worker}.{step}"})
                    assert patched.status_code == 200
                else:
                    created = http.post(
                        "/todos", json={"title": f"w{worker}", "space_id": org.space_id}
                    )
                    mine.append(created.json()["id"])
            if worker == 0:
                added = http.post(
                    f"/organizations/{org.organization_id}/members",
                    json={"user_name": _user(http)[0]},
                )
                assert added.status_code == 201
                gone = http.delete(
                    f"/organizations/{org.organization_id}/members/{added.json()['user_id']}"
                )
                assert gone.status_code == 204

    def drain(sse: SSE, quiet: float, most: float = 60.0) -> str | None:
        """Apply events until no change came for `quiet` seconds (heartbeats do not count),
        or for `most` seconds at most; the last event's id."""
        last = None
        until, end = time.monotonic() + quiet, time.monotonic() + most
        while (left := min(until, end) - time.monotonic()) > 0:
            try:
                _, item = sse.next(timeout=left)
            except queue.Empty:
                break
            if item.get("event") == "change":
                apply(json.loads(item["data"]), item["id"])
                last = item["id"]
                until = time.monotonic() + quiet
        return last

    with ThreadPoolExecutor(4) as pool:
        with _stream(replicas.a.base_url, org.events, org.owner) as sse:
            writers = [
                pool.submit(write, url, n)
                for n, url in enumerate([replicas.a.base_url, replicas.b.base_url] * 2)
            ]
            last_id = drain(sse, 5.0, most=0.6)
        assert last_id is not None
        time.sleep(0.3)  # writes go on meanwhile
        assert not all(writer.done() for writer in writers), "reconnect while writing"
        with _stream(replicas.b.base_url, org.events, org.owner, last_event_id=last_id) as sse:
            for writer in writers:
                writer.result()
            drain(sse, 2.0)

    with httpx.Client(base_url=replicas.a.base_url, headers=_auth(org.owner)) as http:
        snapshot: dict[tuple[str, str], Any] = {}
        since = None
        while True:
            page = http.get(
                f"/organizations/{org.organization_id}/changes",
                params={"since": since} if since else {},
            ).json()
            for change in page["changes"]:
                snapshot[(change["kind"], change["id"])] = change["data"]
            since = page["next"]
            if not page["more"]:
                break
    assert copy == snapshot
