"""The database goes away under a running `minor-illusion serve`, and comes back.

A real service process on a PostgreSQL of the module's own, with clients creating, patching
and reading todos concurrently. In the middle the database is taken away in one of three
ways: a fast shutdown (every session ends with an error, as in a failover), an immediate
shutdown (as close to a crash as pg_ctl gets: no checkpoint, crash recovery at the next
start) or a freeze (SIGSTOP: connections stay open and nothing answers, as when a host
stalls). Throughout:

- every answer is 200/201 or a 503 with `Retry-After`, never a 500 nor a dropped connection,
  and it comes within the time the connect and statement timeouts allow;
- while the database is away, `/readyz` says 503 and `/healthz` 200;
- once it is back, the same process serves again, without a restart;
- every write a client saw acknowledged (201 for a create, 200 for a patch) is in the
  database afterwards, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg2
import pytest

from app.db import migrate
from app.db.urls import normalise
from bench.connection import Connection, ConnectionDropped, Reply
from bench.postgres import RestartablePostgres, restartable_postgres
from tests.conftest import (
    TEST_SECRET,
    create_database,
    register_and_log_in,
    served,
    unique_name,
)
from tests.live_db.test_cli_live import cli_env

pytestmark = pytest.mark.live_db

CONNECT_TIMEOUT_S = 2.0
STATEMENT_TIMEOUT_S = 3.0
ANSWER_WITHIN_S = CONNECT_TIMEOUT_S * 2 + STATEMENT_TIMEOUT_S + 2.0
"""The slowest answer allowed: waiting for a pooled connection and opening one are each
bounded by the connect timeout, the statement by the statement timeout; plus slack for a
busy machine."""
CLIENTS = 32
BEFORE_S = 1.0
RECOVER_WITHIN_S = 15.0
AFTER_S = 1.5
"""After the first success following the outage, how long traffic runs before the final
window in which every request must succeed."""
OUTAGES = {
    # kind: how long the database stays away
    "stopped": 3.0,
    "crashed": 3.0,
    "frozen": STATEMENT_TIMEOUT_S + CONNECT_TIMEOUT_S + 1.0,
}


@dataclass
class Service:
    """`minor-illusion serve` on the module's database, and what the tests share."""

    process: subprocess.Popen[bytes]
    postgres: RestartablePostgres
    database_url: str
    port: int
    log: Path
    token: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """The database server lives outside pytest's temporary root: as root, PostgreSQL and
    pg_ctl run as an unprivileged user who must traverse to its folder, and every pytest
    session that starts (another one alongside, say) closes that root to others again."""
    scratch = Path(tempfile.mkdtemp(prefix="minor-illusion-outage-"))
    log = scratch / "serve.log"
    try:
        with restartable_postgres(scratch) as postgres:
            database_url = create_database(postgres.url, "outage")
            migrate.upgrade(database_url)
            env = {
                **cli_env(scratch / "data"),
                "DATABASE_URL": database_url,
                "SECRET_KEY": TEST_SECRET,
                "DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_S),
                "DB_STATEMENT_TIMEOUT_SECONDS": str(STATEMENT_TIMEOUT_S),
            }
            with served(env, log, "--no-migrate") as serve:
                yield Service(
                    serve.process,
                    postgres,
                    database_url,
                    serve.port,
                    log,
                    _token(serve.base_url),
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _token(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return register_and_log_in(client, unique_name())


def _space(service: Service) -> str:
    with httpx.Client(base_url=service.base_url, headers=service.headers, timeout=30) as client:
        organization = client.post("/organizations", json={"name": unique_name("org")})
        assert organization.status_code == 201, organization.text
        space = client.post(
            "/spaces", json={"name": "drill", "organization_id": organization.json()["id"]}
        )
        assert space.status_code == 201, space.text
        return str(space.json()["id"])


@dataclass(frozen=True)
class Answer:
    """One request as the client saw it; `status` is a string for a transport error."""

    op: str
    started: float
    finished: float
    status: int | str
    retry_after: str | None

    @property
    def ok(self) -> bool:
        return self.status in (200, 201)


@dataclass
class Ledger:
    """Everything the clients sent and saw, for the checks at the end."""

    answers: list[Answer] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    """title -> id, for every create answered 201."""
    patches: dict[str, list[tuple[str, int | str, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """todo id -> (content sent, status, version answered), in the order sent."""


class Traffic:
    """CLIENTS clients, each on a keep-alive connection of its own, looping create, patch and
    get of its own todos, and a list page. The connections are bench's lean HTTP/1.1 ones:
    the request rate, not the client's CPU, decides how many requests meet the outage's
    first instants, when races between a dying session and its next use show."""

    def __init__(self, service: Service, space_id: str, marker: str) -> None:
        self.service = service
        self.space_id = space_id
        self.marker = marker
        self.ledger = Ledger()
        self.running = True
        self.tasks = [asyncio.create_task(self._client(number)) for number in range(CLIENTS)]

    async def stop(self) -> Ledger:
        self.running = False
        await asyncio.gather(*self.tasks)
        return self.ledger

    async def _client(self, number: int) -> None:
        connection = Connection("127.0.0.1", self.service.port, self.service.headers)
        mine: list[str] = []
        rng = random.Random(number)
        sequence = 0
        try:
            while self.running:
                sequence += 1
                title = f"{self.marker}-c{number}-{sequence}"
                body = {"title": title, "space_id": self.space_id}
                reply = await self._send(connection, "create", "POST", "/todos", body)
                if reply is not None and reply.status == 201:
                    self.ledger.created[title] = reply.json()["id"]
                    mine.append(reply.json()["id"])
                if mine:
                    todo_id = rng.choice(mine)
                    content = f"{title}-patch"
                    reply = await self._send(
                        connection, "patch", "PATCH", f"/todos/{todo_id}", {"content": content}
                    )
                    status = reply.status if reply is not None else "dropped"
                    version = reply.json()["version"] if status == 200 and reply else None
                    self.ledger.patches[todo_id].append((content, status, version))
                    await self._send(connection, "get", "GET", f"/todos/{rng.choice(mine)}")
                target = f"/todos?space_id={self.space_id}"
                await self._send(connection, "list", "GET", target)
        finally:
            connection.close()

    async def _send(
        self, connection: Connection, op: str, method: str, target: str, body: object = None
    ) -> Reply | None:
        started = time.monotonic()
        try:
            # Longer than any answer may take, so that a slow one is seen as slow.
            reply = await asyncio.wait_for(
                connection.request(method, target, body), ANSWER_WITHIN_S + 20
            )
        except (ConnectionDropped, OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            self.ledger.answers.append(Answer(op, started, time.monotonic(), repr(error), None))
            return None
        answer = Answer(
            op, started, time.monotonic(), reply.status, reply.headers.get("retry-after")
        )
        self.ledger.answers.append(answer)
        return reply


def _take_away(postgres: RestartablePostgres, kind: str) -> None:
    if kind == "frozen":
        postgres.freeze()
    else:
        postgres.stop("fast" if kind == "stopped" else "immediate")


def _bring_back(postgres: RestartablePostgres, kind: str) -> None:
    if kind == "frozen":
        postgres.thaw()
    else:
        postgres.start()


async def _probe(service: Service, path: str) -> tuple[int, str | None, float]:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=ANSWER_WITHIN_S + 20) as c:
        started = time.monotonic()
        response = await c.get(path)
        return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started


def _stored(database_url: str, marker: str) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
    """Straight from the database: how often each title of this run is there, and each
    todo's content and version."""
    url = normalise(database_url, "psycopg2")
    connection = psycopg2.connect(
        **url.translate_connect_args(username="user", database="dbname"), **url.query
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT title, count(*) FROM todos WHERE title LIKE %s GROUP BY title",
                (f"{marker}-%",),
            )
            counts = dict(cursor.fetchall())
            cursor.execute(
                "SELECT id::text, content, version FROM todos WHERE title LIKE %s",
                (f"{marker}-%",),
            )
            rows = {todo_id: (content, version) for todo_id, content, version in cursor.fetchall()}
    finally:
        connection.close()
    return counts, rows


@pytest.mark.parametrize("kind", list(OUTAGES))
async def test_outage_answers_503_then_recovers_without_losing_acknowledged_writes(
    service: Service, kind: str
) -> None:
    marker = f"{kind}-{uuid.uuid4().hex[:8]}"
    traffic = Traffic(service, _space(service), marker)
    try:
        await asyncio.sleep(BEFORE_S)
        assert traffic.ledger.answers, "no request completed before the outage"

        await asyncio.to_thread(_take_away, service.postgres, kind)
        down = time.monotonic()
        await asyncio.sleep(min(1.0, OUTAGES[kind] / 2))
        readyz, healthz = await asyncio.gather(
            _probe(service, "/readyz"), _probe(service, "/healthz")
        )
        await asyncio.sleep(max(0.0, down + OUTAGES[kind] - time.monotonic()))

        up = time.monotonic()
        await asyncio.to_thread(_bring_back, service.postgres, kind)
        recovered = await _first_success_after(traffic.ledger, up, RECOVER_WITHIN_S)
        await asyncio.sleep(AFTER_S)
        final_window = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(_bring_back, service.postgres, kind)
        ledger = await traffic.stop()

    log = service.log.read_text()
    answers = ledger.answers
    unexpected = [a for a in answers if a.status not in (200, 201, 503)]
    assert not unexpected, f"{unexpected[:10]}\n{log[-5000:]}"
    assert all(a.retry_after and a.retry_after.isdigit() for a in answers if a.status == 503)
    slowest = max(answers, key=lambda a: a.finished - a.started)
    assert slowest.finished - slowest.started < ANSWER_WITHIN_S, slowest

    assert readyz[0] == 503, readyz
    assert readyz[1] is not None, readyz
    assert healthz[0] == 200, healthz
    assert healthz[2] < 1.0, "/healthz waited for the database"
    # Requests made while the database was away were all refused.
    during = [a for a in answers if down < a.started and a.finished < up]
    assert during, "no request was made during the outage"
    assert not [a for a in during if a.ok], "a request succeeded without a database"

    # The same process serves again, and keeps serving.
    assert service.process.poll() is None, log[-5000:]
    assert recovered is not None, f"no success {RECOVER_WITHIN_S} s after the outage"
    last = [a for a in answers if a.started >= final_window]
    assert last, "no traffic after the recovery"
    assert all(a.ok for a in last), [a for a in last if not a.ok][:10]
    assert (await _probe(service, "/readyz"))[0] == 200

    # Every acknowledged write is there, exactly once.
    counts, rows = await asyncio.to_thread(_stored, service.database_url, marker)
    missing = [t for t in ledger.created if counts.get(t, 0) != 1]
    assert not missing, f"acknowledged creates missing or duplicated: {missing[:10]}"
    for todo_id, attempts in ledger.patches.items():
        acknowledged = [i for i, (_, status, _) in enumerate(attempts) if status == 200]
        if not acknowledged:
            continue
        last_ack = acknowledged[-1]
        content, version = rows[todo_id]
        # The last acknowledged patch, or one sent after it whose answer was lost.
        assert content in {sent for sent, _, _ in attempts[last_ack:]}, (todo_id, attempts)
        acked_version = attempts[last_ack][2]
        assert acked_version is not None
        assert version >= acked_version
    assert "unhandled error" not in log, log[-5000:]
    assert "Traceback" not in log, log[-5000:]


async def _first_success_after(ledger: Ledger, since: float, within_s: float) -> float | None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for answer in reversed(ledger.answers):
            if answer.started >= since and answer.ok:
                return answer.finished
        await asyncio.sleep(0.1)
    return None
