"""Login limits on FakeDAOs: 429 with Retry-After after too many failures per user name and
per client address, without any password hashing while limited, and what resets them. The
plain cases (a name or an address reaching its limit, a success clearing it, the window passing)
run on a real database in test_login_limits_live.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.api import auth
from app.api.auth import client_address
from app.housekeeping import purge_expired_rows
from app.main import create_app
from app.models.login_attempts import (
    IN_PROGRESS_RETRY_AFTER_SECONDS,
    LOGIN_CHECK_TIMEOUT,
    LoginAttempt,
    LoginLimits,
)
from app.security import HashingStats, PasswordCheck, hashing_stats
from tests import fakes
from tests.conftest import PASSWORD, make_settings, register, unique_name
from tests.recorded_log import RecordedLog
from tests.unit.assertions import (
    assert_error,
    assert_retry_after_counts_from,
    assert_unauthorized,
)

MAX_PER_USER = 3
MAX_PER_ADDRESS = 5
CONCURRENT = 2
WINDOW_SECONDS = 600
WINDOW = timedelta(seconds=WINDOW_SECONDS)
ADDRESS = "198.51.100.7"
OTHER_ADDRESS = "203.0.113.9"


@pytest.fixture
async def app(data_dir: Path, fake_database: fakes.FakeDatabase) -> AsyncIterator[Quart]:
    """The unit app with small limits, so a test reaches them in a few requests."""
    fakes.reset()
    settings = make_settings(
        data_dir,
        login_max_failures_per_user=MAX_PER_USER,
        login_max_failures_per_address=MAX_PER_ADDRESS,
        login_failure_window_seconds=WINDOW_SECONDS,
        login_max_concurrent_checks=CONCURRENT,
    )
    app = create_app(settings, daos=fakes.fake_daos(), database=fake_database)
    async with app.test_app():
        yield app
    fakes.reset()


async def _login(
    client: QuartClient,
    name: str,
    password: str = PASSWORD,
    address: str = ADDRESS,
    headers: dict[str, str] | None = None,
) -> Any:
    return await client.post(
        "/auth/login",
        json={"username": name, "password": password},
        scope_base={"client": (address, 40000)},
        headers=headers or {},
    )


async def _fail(client: QuartClient, name: str, times: int, address: str = ADDRESS) -> None:
    for _ in range(times):
        await assert_unauthorized(await _login(client, name, "not the password", address))


async def _assert_limited(response: Any) -> int:
    """Assert a 429 in the one error shape; return its Retry-After in seconds."""
    detail = await assert_error(response, 429)
    assert isinstance(detail, str)
    assert "WWW-Authenticate" not in response.headers
    return int(response.headers["Retry-After"])


def _snapshot() -> HashingStats:
    return replace(hashing_stats)


def _hashing_since(before: HashingStats) -> tuple[int, int, int]:
    return (
        hashing_stats.current_verifications - before.current_verifications,
        hashing_stats.legacy_verifications - before.legacy_verifications,
        hashing_stats.hashes - before.hashes,
    )


def _let_time_pass(by: timedelta) -> None:
    for row in fakes.FakeLoginAttemptDAO.rows.values():
        row.created_at -= by


# Per user name ------------------------------------------------------------------------------


async def test_failures_and_refusals_are_counted_apart_in_the_metrics(
    client: QuartClient,
) -> None:
    name = unique_name()
    await _fail(client, name, MAX_PER_USER)
    await _assert_limited(await _login(client, name))
    await _assert_limited(await _login(client, name))

    text = await (await client.get("/metrics")).get_data(as_text=True)

    failures = {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "minor_illusion_login_failures_total"
    }
    assert failures == {"invalid_credentials": MAX_PER_USER, "rate_limited": 2}


async def test_unknown_user_names_are_limited_like_known_ones(client: QuartClient) -> None:
    """Otherwise a 429 for one name and not another would tell which names exist."""
    name = unique_name()
    first_failure = time.monotonic()
    await _fail(client, name, MAX_PER_USER)

    retry_after = await _assert_limited(await _login(client, name))

    assert_retry_after_counts_from(retry_after, first_failure, WINDOW_SECONDS)


async def test_the_user_limit_holds_across_addresses(client: QuartClient) -> None:
    name = unique_name()
    await register(client, name)
    for index in range(MAX_PER_USER):
        await _fail(client, name, 1, address=f"192.0.2.{index + 1}")

    await _assert_limited(await _login(client, name, address="192.0.2.200"))


async def test_a_success_does_not_clear_another_names_failures(client: QuartClient) -> None:
    attacker, victim = unique_name(), unique_name()
    await register(client, attacker)
    await register(client, victim)
    await _fail(client, victim, MAX_PER_USER)

    assert (await _login(client, attacker)).status_code == 200

    await _assert_limited(await _login(client, victim))


# Per address --------------------------------------------------------------------------------


async def test_forwarded_headers_do_not_change_the_address(client: QuartClient) -> None:
    """Only the peer address counts: a client cannot rotate a header to escape its limit."""
    for index in range(MAX_PER_ADDRESS):
        spoofed = {"X-Forwarded-For": f"10.0.0.{index}", "Remote-Addr": f"10.0.1.{index}"}
        response = await _login(client, unique_name(), "wrong", headers=spoofed)
        await assert_unauthorized(response)

    response = await _login(client, unique_name(), headers={"X-Forwarded-For": "10.9.9.9"})

    await _assert_limited(response)


async def test_ipv6_clients_count_per_64(client: QuartClient) -> None:
    for index in range(MAX_PER_ADDRESS):
        await _fail(client, unique_name(), 1, address=f"2001:db8:1:2::{index + 1:x}")

    same_64 = await _login(client, unique_name(), address="2001:db8:1:2:ffff::1")
    other_64 = await _login(client, unique_name(), address="2001:db8:1:3::1")

    await _assert_limited(same_64)
    await assert_unauthorized(other_64)


@pytest.mark.parametrize(
    ("remote_addr", "bucket"),
    [
        pytest.param("198.51.100.7", "198.51.100.7", id="ipv4"),
        pytest.param(" 198.51.100.7 ", "198.51.100.7", id="ipv4-padded"),
        pytest.param("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", id="ipv6-by-64"),
        pytest.param("2001:DB8:1:2::1", "2001:db8:1:2::/64", id="ipv6-upper-case"),
        pytest.param("fe80::1%eth0", "fe80::/64", id="ipv6-with-zone"),
        pytest.param("::ffff:198.51.100.7", "198.51.100.7", id="ipv4-mapped"),
        pytest.param("<local>", "<local>", id="not-an-ip"),
        pytest.param("", "unknown", id="empty"),
        pytest.param(None, "unknown", id="none"),
        pytest.param("x" * 300, "x" * 64, id="overlong"),
    ],
)
def test_client_address_buckets(remote_addr: str | None, bucket: str) -> None:
    assert client_address(remote_addr) == bucket


# The window and Retry-After -----------------------------------------------------------------


async def test_retry_after_counts_down_to_the_oldest_needed_failure(
    client: QuartClient,
) -> None:
    name = unique_name()
    await _fail(client, name, MAX_PER_USER)

    _let_time_pass(timedelta(seconds=100))

    retry_after = await _assert_limited(await _login(client, name))
    assert WINDOW_SECONDS - 105 <= retry_after <= WINDOW_SECONDS - 100


async def test_retry_after_is_the_later_of_two_reached_limits(client: QuartClient) -> None:
    name = unique_name()
    for _ in range(MAX_PER_ADDRESS - MAX_PER_USER):
        await _fail(client, unique_name(), 1)
    _let_time_pass(timedelta(seconds=300))
    first_failure = time.monotonic()
    await _fail(client, name, MAX_PER_USER)  # the address is now full too, but sooner free

    retry_after = await _assert_limited(await _login(client, name))

    assert_retry_after_counts_from(retry_after, first_failure, WINDOW_SECONDS)


async def test_attempts_in_progress_count_and_ask_for_a_short_wait(
    client: QuartClient,
) -> None:
    """Passwords being checked count against the limit (with room for C more), so a burst of
    concurrent requests cannot all pass before the first failure is recorded; they settle
    quickly, hence 1 s."""
    name = unique_name()
    limits = LoginLimits(MAX_PER_USER, MAX_PER_ADDRESS, WINDOW, CONCURRENT)
    for _ in range(MAX_PER_USER + CONCURRENT):
        await fakes.FakeLoginAttemptDAO.begin(None, name, OTHER_ADDRESS, limits)

    retry_after = await _assert_limited(await _login(client, name))

    assert retry_after == IN_PROGRESS_RETRY_AFTER_SECONDS


async def test_an_attempt_left_in_progress_too_long_counts_as_failed(
    client: QuartClient,
) -> None:
    name = unique_name()
    limits = LoginLimits(MAX_PER_USER, MAX_PER_ADDRESS, WINDOW, CONCURRENT)
    for _ in range(MAX_PER_USER):
        await fakes.FakeLoginAttemptDAO.begin(None, name, OTHER_ADDRESS, limits)
    _let_time_pass(LOGIN_CHECK_TIMEOUT)

    retry_after = await _assert_limited(await _login(client, name))

    expected = (WINDOW - LOGIN_CHECK_TIMEOUT).total_seconds()
    assert expected - 5 <= retry_after <= expected


async def test_a_burst_of_concurrent_guesses_checks_at_most_n_plus_c_passwords(
    client: QuartClient,
) -> None:
    name = unique_name()
    await register(client, name)
    before = _snapshot()

    responses = await asyncio.gather(
        *(_login(client, name, f"guess {index}") for index in range(4 * MAX_PER_USER))
    )

    statuses = sorted(response.status_code for response in responses)
    checked = MAX_PER_USER + CONCURRENT
    assert statuses == [401] * checked + [429] * (4 * MAX_PER_USER - checked)
    assert _hashing_since(before) == (checked, 0, 0)


# Upkeep and documentation -------------------------------------------------------------------


async def test_housekeeping_purges_attempts_older_than_the_window(
    app: Quart, fake_database: fakes.FakeDatabase
) -> None:
    limits = LoginLimits(MAX_PER_USER, MAX_PER_ADDRESS, WINDOW, CONCURRENT)
    await fakes.FakeLoginAttemptDAO.begin(None, unique_name(), ADDRESS, limits)
    _let_time_pass(timedelta(seconds=fake_database.settings.login_failure_window_seconds))
    recent = await fakes.FakeLoginAttemptDAO.begin(None, unique_name(), ADDRESS, limits)
    assert isinstance(recent, LoginAttempt)

    task = asyncio.create_task(purge_expired_rows(fake_database, fakes.fake_daos()))
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert set(fakes.FakeLoginAttemptDAO.rows) == {recent.id}


async def test_openapi_documents_429_on_login(client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()

    responses = spec["paths"]["/auth/login"]["post"]["responses"]
    assert "429" in responses
    assert "Retry-After" in spec["paths"]["/auth/login"]["post"]["description"]


async def test_a_login_left_unsettled_after_a_hang_up_is_reported(
    client: QuartClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody awaits the login once its client is gone: a failure to settle it must still be
    said, since the attempt then counts as failed later."""
    name = unique_name()
    await register(client, name)
    checking, release = asyncio.Event(), asyncio.Event()
    warnings = RecordedLog()

    async def failing_check(password: str, stored_hash: str | None) -> PasswordCheck:
        checking.set()
        await release.wait()
        raise RuntimeError("the database went away")

    monkeypatch.setattr(auth, "check_password", failing_check)
    monkeypatch.setattr(auth, "log", warnings)
    body = json.dumps({"username": name, "password": PASSWORD}).encode()
    async with client.request(
        "/auth/login", method="POST", headers={"Content-Type": "application/json"}
    ) as connection:
        await connection.send(body)
        await connection.send_complete()
        await asyncio.wait_for(checking.wait(), 10)
        await connection.disconnect()
    release.set()
    for _ in range(100):
        if warnings.lines:
            break
        await asyncio.sleep(0.01)

    assert warnings.lines == [
        ("warning", "login left unsettled after a hang-up", {"error_type": "RuntimeError"})
    ]
