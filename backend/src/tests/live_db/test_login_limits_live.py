"""Login limits on a real database: the state lives in `login_attempts`, so every worker and
replica sees the same counts; a burst of concurrent guesses gets no more password checks than
the limit; the window passes; and unknown users cost what wrong passwords cost.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy import func, update

from app.api import auth
from app.db.database import Database
from app.db.executor import Row, sent_statements
from app.main import create_app
from app.models import LoginAttemptDAO
from app.models.login_attempts import LoginAttempt, LoginLimits
from app.security import PasswordCheck, hashing_stats, issue_token
from app.settings import Settings
from tests.conftest import PASSWORD, make_settings, register, unique_name
from tests.sql import fetch
from tests.unit.assertions import assert_retry_after_counts_from

pytestmark = pytest.mark.live_db

MAX_PER_USER = 3
MAX_PER_ADDRESS = 5
CONCURRENT = 2
WINDOW_SECONDS = 600
ADDRESS = "198.51.100.7"
OTHER_ADDRESS = "203.0.113.9"
NEW_SECRET = "the-new-signing-key-after-the-rotation-0123456789"
UNRELATED_SECRET = "an-unrelated-signing-key-of-someone-else-000000"


def _settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "login_max_failures_per_user": MAX_PER_USER,
        "login_max_failures_per_address": MAX_PER_ADDRESS,
        "login_failure_window_seconds": WINDOW_SECONDS,
        "login_max_concurrent_checks": CONCURRENT,
    }
    values.update(overrides)
    return make_settings(data_dir, database_url=database_url, **values)


@pytest.fixture
async def worker(
    database_url: str, data_dir: Path, live_database: Database
) -> AsyncIterator[Quart]:
    """The app with small limits on the live database (emptied after the test)."""
    app = create_app(_settings(database_url, data_dir), database=live_database)
    async with app.test_app():
        yield app


@pytest.fixture
async def other_worker(database_url: str, data_dir: Path, worker: Quart) -> AsyncIterator[Quart]:
    """A second app with its own engine and pool on the same database: another worker
    process or replica, which shares nothing with the first but the database."""
    settings = _settings(database_url, data_dir)
    app = create_app(settings, database=Database.from_settings(settings))
    async with app.test_app():
        yield app


async def _login(
    app: Quart, name: str, password: str = PASSWORD, address: str = ADDRESS
) -> Response:
    return await app.test_client().post(
        "/auth/login",
        json={"username": name, "password": password},
        scope_base={"client": (address, 40000)},
    )


async def _fail(app: Quart, name: str, times: int, address: str = ADDRESS) -> None:
    for _ in range(times):
        response = await _login(app, name, "not the password", address)
        assert response.status_code == 401, await response.get_data(as_text=True)


async def _assert_limited(response: Response) -> int:
    """Assert a 429 in the one error shape; return its Retry-After in seconds."""
    assert response.status_code == 429, await response.get_data(as_text=True)
    assert set(await response.get_json()) == {"detail"}
    return int(response.headers["Retry-After"])


async def _attempts(database: Database, name: str) -> list[Row]:
    attempts = LoginAttemptDAO.__table__
    return await fetch(database, attempts.select().where(attempts.c.user_name == name))


async def _register(app: Quart) -> str:
    name = unique_name()
    await register(app.test_client(), name)
    return name


# Limits -------------------------------------------------------------------------------------


async def test_a_user_name_is_limited_after_n_failures(
    worker: Quart, live_database: Database
) -> None:
    name = await _register(worker)
    first_failure = time.monotonic()
    await _fail(worker, name, MAX_PER_USER)
    before = replace(hashing_stats)

    wrong = await _login(worker, name, "not the password")
    right = await _login(worker, name, PASSWORD)

    retry_after = await _assert_limited(wrong)
    assert_retry_after_counts_from(retry_after, first_failure, WINDOW_SECONDS)
    await _assert_limited(right)
    assert (hashing_stats.current_verifications, hashing_stats.legacy_verifications) == (
        before.current_verifications,
        before.legacy_verifications,
    )
    assert hashing_stats.hashes == before.hashes
    stored = await _attempts(live_database, name)
    assert len(stored) == MAX_PER_USER
    assert not any(attempt.in_progress for attempt in stored)


async def test_an_address_is_limited_and_other_users_elsewhere_are_not(worker: Quart) -> None:
    name = await _register(worker)
    first_failure = time.monotonic()
    for _ in range(MAX_PER_ADDRESS):
        await _fail(worker, unique_name(), 1)

    from_there = await _login(worker, name)
    from_elsewhere = await _login(worker, name, address=OTHER_ADDRESS)

    retry_after = await _assert_limited(from_there)
    assert_retry_after_counts_from(retry_after, first_failure, WINDOW_SECONDS)
    assert from_elsewhere.status_code == 200


async def test_other_users_are_unaffected(worker: Quart) -> None:
    victim, other = await _register(worker), await _register(worker)
    await _fail(worker, victim, MAX_PER_USER)
    await _assert_limited(await _login(worker, victim))

    assert (await _login(worker, other)).status_code == 200
    assert (await _login(worker, other, address=OTHER_ADDRESS)).status_code == 200


async def test_a_success_clears_the_names_failures(worker: Quart, live_database: Database) -> None:
    name = await _register(worker)
    await _fail(worker, name, MAX_PER_USER - 1)

    assert (await _login(worker, name)).status_code == 200

    assert await _attempts(live_database, name) == []
    await _fail(worker, name, MAX_PER_USER)
    await _assert_limited(await _login(worker, name))


async def test_the_limit_lifts_when_the_window_passes(
    database_url: str, data_dir: Path, live_database: Database
) -> None:
    settings = _settings(database_url, data_dir, login_failure_window_seconds=2)
    app = create_app(settings, database=live_database)
    async with app.test_app():
        name = await _register(app)
        await _fail(app, name, MAX_PER_USER)
        retry_after = await _assert_limited(await _login(app, name))
        assert 1 <= retry_after <= 2

        await asyncio.sleep(retry_after + 0.1)

        await _fail(app, name, 1)  # 401 again: the password is checked
        assert (await _login(app, name)).status_code == 200


# Shared by workers, safe under concurrency ----------------------------------------------------


async def test_two_workers_share_the_counts(worker: Quart, other_worker: Quart) -> None:
    name = await _register(worker)
    await _fail(worker, name, MAX_PER_USER - 1)
    await _fail(other_worker, name, 1)

    await _assert_limited(await _login(worker, name))
    await _assert_limited(await _login(other_worker, name))


async def test_a_success_on_one_worker_clears_for_the_other(
    worker: Quart, other_worker: Quart
) -> None:
    name = await _register(worker)
    await _fail(worker, name, MAX_PER_USER - 1)

    assert (await _login(other_worker, name)).status_code == 200

    await _fail(worker, name, MAX_PER_USER)


async def test_concurrent_guesses_on_two_workers_check_at_most_n_plus_c_passwords(
    worker: Quart, other_worker: Quart, live_database: Database
) -> None:
    """Each attempt is recorded by the statement that checks the limit, at SERIALIZABLE: a
    burst cannot slip past the check before the first failure is counted."""
    name = await _register(worker)
    before = replace(hashing_stats)

    responses = await asyncio.gather(
        *(
            _login(worker if index % 2 else other_worker, name, f"guess {index}")
            for index in range(4 * MAX_PER_USER)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    checked = MAX_PER_USER + CONCURRENT
    assert statuses == [401] * checked + [429] * (4 * MAX_PER_USER - checked)
    assert hashing_stats.current_verifications - before.current_verifications == checked
    assert len(await _attempts(live_database, name)) == checked


async def test_a_client_may_log_in_over_several_connections_at_once(
    worker: Quart, other_worker: Quart
) -> None:
    """Checks in progress count, but with room for C beyond the failure limit: N + C right
    passwords at once all get their token."""
    name = await _register(worker)

    responses = await asyncio.gather(
        *(
            _login(worker if index % 2 else other_worker, name)
            for index in range(MAX_PER_USER + CONCURRENT)
        )
    )

    assert [response.status_code for response in responses] == [200] * len(responses)


async def test_concurrent_logins_in_one_worker_do_not_conflict(
    worker: Quart, live_database: Database
) -> None:
    """They read and write the same rows; within a worker they are queued, so none is re-run
    after a serialization failure."""
    name = await _register(worker)
    retries = live_database.stats.retries

    responses = await asyncio.gather(
        *(_login(worker, name) for _ in range(MAX_PER_USER + CONCURRENT))
    )

    assert [response.status_code for response in responses] == [200] * len(responses)
    assert live_database.stats.retries == retries


# Equal work for unknown users and wrong passwords ---------------------------------------------


@pytest.fixture
def statements(live_database: Database) -> Iterator[list[tuple[str, Sequence[object]]]]:
    """The SQL the app sends, in order: through SQLAlchemy, and straight to the driver."""
    with sent_statements() as sent:
        yield sent


async def test_unknown_user_and_wrong_password_do_the_same_work(
    worker: Quart, statements: list[tuple[str, Sequence[object]]]
) -> None:
    """The same statements and the same argon2 verifications, so the same time: checked by
    counting the work rather than by a timing assertion that could flake."""
    name = await _register(worker)

    statements.clear()
    before = hashing_stats.current_verifications
    wrong = await _login(worker, name, "not the password")
    wrong_work = ([sql for sql, _ in statements], hashing_stats.current_verifications - before)

    statements.clear()
    before = hashing_stats.current_verifications
    unknown = await _login(worker, unique_name(), "not the password")
    unknown_work = ([sql for sql, _ in statements], hashing_stats.current_verifications - before)

    assert wrong.status_code == unknown.status_code == 401
    assert await wrong.get_json() == await unknown.get_json()
    assert wrong_work == unknown_work
    assert wrong_work[1] == 1
    assert len(wrong_work[0]) == 2  # check-and-record, then mark as failed


# The DAO ------------------------------------------------------------------------------------


async def test_purge_deletes_only_attempts_older_than_the_window(
    live_database: Database,
) -> None:
    limits = LoginLimits(
        MAX_PER_USER, MAX_PER_ADDRESS, timedelta(seconds=WINDOW_SECONDS), CONCURRENT
    )
    old_name, recent_name = unique_name(), unique_name()

    async def begin(name: str) -> None:
        await live_database.run(lambda s: LoginAttemptDAO.begin(s, name, ADDRESS, limits))

    for name in (old_name, old_name, recent_name):
        await begin(name)
    backdate = (
        update(LoginAttemptDAO)
        .where(LoginAttemptDAO.user_name == old_name)
        .values(created_at=func.now() - timedelta(seconds=WINDOW_SECONDS + 1))
    )
    await fetch(live_database, backdate)

    window = limits.window
    purged = await live_database.run(lambda s: LoginAttemptDAO.purge_expired(s, window))
    again = await live_database.run(lambda s: LoginAttemptDAO.purge_expired(s, window))

    assert (purged, again) == (2, 0)
    assert await _attempts(live_database, old_name) == []
    assert len(await _attempts(live_database, recent_name)) == 1


async def test_a_success_keeps_the_names_other_attempts_in_progress(
    live_database: Database,
) -> None:
    """They may yet fail: deleting them would let concurrent guesses go uncounted."""
    limits = LoginLimits(
        MAX_PER_USER, MAX_PER_ADDRESS, timedelta(seconds=WINDOW_SECONDS), CONCURRENT
    )
    name = unique_name()

    async def begin() -> LoginAttempt:
        attempt = await live_database.run(
            lambda x: LoginAttemptDAO.begin(x, name, ADDRESS, limits), single_statement=True
        )
        assert isinstance(attempt, LoginAttempt)
        return attempt

    failed, in_progress, succeeded = await begin(), await begin(), await begin()
    await live_database.run(lambda s: LoginAttemptDAO.fail(s, failed.id))
    await live_database.run(lambda s: LoginAttemptDAO.succeed(s, succeeded.id, name))

    assert [attempt.id for attempt in await _attempts(live_database, name)] == [in_progress.id]


@pytest.mark.parametrize(
    ("password", "failures_left"),
    [pytest.param("not the password", 1, id="wrong"), pytest.param(PASSWORD, 0, id="right")],
)
async def test_a_client_that_hangs_up_during_the_check_leaves_no_attempt_in_progress(
    worker: Quart,
    live_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    failures_left: int,
) -> None:
    """Otherwise every abandoned check would count as a failure a minute later: a client
    retrying after time-outs would lock its own name out; hanging up must not dodge a
    failure either."""
    name = await _register(worker)
    checking, release = asyncio.Event(), asyncio.Event()
    real_check = auth.check_password

    async def held_check(password: str, stored_hash: str | None) -> PasswordCheck:
        checking.set()
        await release.wait()
        return await real_check(password, stored_hash)

    monkeypatch.setattr(auth, "check_password", held_check)
    headers = {"Content-Type": "application/json"}
    body = json.dumps({"username": name, "password": password}).encode()
    async with worker.test_client().request(
        "/auth/login", method="POST", headers=headers, scope_base={"client": (ADDRESS, 1)}
    ) as connection:
        await connection.send(body)
        await connection.send_complete()
        await asyncio.wait_for(checking.wait(), 10)
        await connection.disconnect()
    release.set()  # the handler is gone by now; the check goes on

    for _ in range(100):
        attempts = await _attempts(live_database, name)
        if not any(attempt.in_progress for attempt in attempts):
            break
        await asyncio.sleep(0.05)
    assert [attempt.in_progress for attempt in attempts] == [False] * failures_left


# Key rotation -------------------------------------------------------------------------------


async def test_rotation_accepts_the_previous_keys_tokens(
    database_url: str, data_dir: Path, live_database: Database
) -> None:
    previous = live_database.settings.signing_key()
    settings = _settings(
        database_url, data_dir, secret_key=NEW_SECRET, secret_key_previous=previous
    )
    app = create_app(settings, database=live_database)
    async with app.test_app():
        client: Client = app.test_client()
        name = await _register(app)
        token = (await (await _login(app, name)).get_json())["access_token"]
        me = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        user_id = uuid.UUID((await me.get_json())["id"])

        for key, status in ((NEW_SECRET, 200), (previous, 200), (UNRELATED_SECRET, 401)):
            headers = {"Authorization": f"Bearer {issue_token(user_id, key, 60)}"}
            assert (await client.get("/me", headers=headers)).status_code == status, key
