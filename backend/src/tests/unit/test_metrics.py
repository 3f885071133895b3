"""GET /metrics: Prometheus text with requests by route template, database retries and pool
usage read at scrape time, and login failures; one registry per app, optional bearer token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.http.metrics import (
    MAX_LOGIN_FAILURE_REASONS,
    OTHER_METHOD,
    OTHER_REASON,
    UNMATCHED_ROUTE,
    record_login_failure,
)
from app.main import create_app
from app.settings import Settings
from tests import fakes
from tests.conftest import PASSWORD, make_settings, register, unique_name
from tests.unit.assertions import assert_error, assert_unauthorized, new_caller

TODO_ROUTE = "/todos/<uuid:todo_id>"
METRICS_TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: QuartClient, **headers: str) -> Samples:
    """Every sample of GET /metrics, keyed by name and labels."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    assert "version=0.0.4" in response.headers["Content-Type"]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.get_data(as_text=True))
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample_name, labels) in samples if sample_name == name]


def _build_app(
    data_dir: Path, database: fakes.FakeDatabase | None = None, **overrides: Any
) -> Quart:
    settings = make_settings(data_dir, **overrides)
    return create_app(
        settings, daos=fakes.fake_daos(), database=database or fakes.FakeDatabase(settings)
    )


@pytest.fixture
async def token_client(data_dir: Path) -> AsyncIterator[QuartClient]:
    """A client of an app whose /metrics needs METRICS_TOKEN."""
    app = _build_app(data_dir, metrics_token=METRICS_TOKEN)
    async with app.test_app():
        yield app.test_client()


# Requests -------------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_status(client: QuartClient) -> None:
    caller = await new_caller(client)
    for _ in range(3):
        await client.get(f"/todos/{uuid.uuid4()}", headers=caller.headers)  # 404 each
    await client.get(f"/todos/{uuid.uuid4()}")  # 401

    samples = await scrape(client)

    requests = "minor_illusion_http_requests_total"
    assert sample(samples, requests, method="GET", route=TODO_ROUTE, status="404") == 3
    assert sample(samples, requests, method="GET", route=TODO_ROUTE, status="401") == 1
    durations = "minor_illusion_http_request_duration_seconds_count"
    assert sample(samples, durations, method="GET", route=TODO_ROUTE) == 4
    buckets = "minor_illusion_http_request_duration_seconds_bucket"
    assert sample(samples, buckets, method="GET", route=TODO_ROUTE, le="+Inf") == 4


async def test_unmatched_paths_share_one_label_and_never_appear(client: QuartClient) -> None:
    paths = [f"/no/such/{uuid.uuid4().hex}" for _ in range(20)]
    for path in paths:
        await client.get(path)
    await client.delete("/healthz")  # 405: no rule for this method either

    samples = await scrape(client)

    requests = "minor_illusion_http_requests_total"
    assert sample(samples, requests, method="GET", route=UNMATCHED_ROUTE, status="404") == 20
    assert sample(samples, requests, method="DELETE", route=UNMATCHED_ROUTE, status="405") == 1
    routes = {labels["route"] for labels in series(samples, requests)}
    assert not any(path in route for path in paths for route in routes)


async def test_unusual_methods_share_one_label(client: QuartClient) -> None:
    for method in ("FOO", "BAR", "PROPFIND"):
        await client.open("/healthz", method=method)

    samples = await scrape(client)

    methods = {labels["method"] for labels in series(samples, "minor_illusion_http_requests_total")}
    assert OTHER_METHOD in methods
    assert not {"FOO", "BAR", "PROPFIND"} & methods


async def test_each_app_counts_only_its_own_requests(data_dir: Path, client: QuartClient) -> None:
    other = _build_app(data_dir)
    async with other.test_app():
        other_client = other.test_client()
        await other_client.get("/healthz")
        await other_client.get("/healthz")
        await client.get("/healthz")

        mine, theirs = await scrape(client), await scrape(other_client)

    requests = "minor_illusion_http_requests_total"
    assert sample(mine, requests, method="GET", route="/healthz", status="200") == 1
    assert sample(theirs, requests, method="GET", route="/healthz", status="200") == 2


# Database --------------------------------------------------------------------------------------


async def test_retry_counters_are_read_at_scrape_time(
    client: QuartClient, fake_database: fakes.FakeDatabase
) -> None:
    before = await scrape(client)
    fake_database.stats.retries += 7
    fake_database.stats.exhausted += 2

    after = await scrape(client)

    assert sample(before, "minor_illusion_db_transaction_retries_total") == 0
    assert sample(after, "minor_illusion_db_transaction_retries_total") == 7
    assert sample(after, "minor_illusion_db_transaction_retries_exhausted_total") == 2


async def test_no_pool_figures_before_the_engine_starts(client: QuartClient) -> None:
    samples = await scrape(client)

    assert series(samples, "minor_illusion_db_pool_size") == []
    assert series(samples, "minor_illusion_db_pool_checked_out") == []


class UnreadablePool:
    """A pool whose figures cannot be read (say, torn down while a scrape reads it)."""

    def size(self) -> int:
        raise RuntimeError("pool is gone")

    def checkedout(self) -> int:
        raise RuntimeError("pool is gone")


class FailingReportDatabase(fakes.FakeDatabase):
    @property
    def engine(self) -> Any:
        return SimpleNamespace(pool=UnreadablePool())


async def test_pool_figures_that_cannot_be_read_do_not_fail_the_scrape(data_dir: Path) -> None:
    database = FailingReportDatabase(make_settings(data_dir))
    app = _build_app(data_dir, database=database)
    async with app.test_app():
        samples = await scrape(app.test_client())

    assert series(samples, "minor_illusion_db_pool_size") == []
    assert sample(samples, "minor_illusion_db_transaction_retries_total") == 0


# Login failures --------------------------------------------------------------------------------


async def test_a_wrong_password_counts_one_invalid_credentials_failure(
    client: QuartClient,
) -> None:
    name = unique_name()
    await register(client, name)

    wrong_password = await client.post(
        "/auth/login", json={"username": name, "password": PASSWORD + "!"}
    )
    unknown_user = await client.post(
        "/auth/login", json={"username": unique_name(), "password": PASSWORD}
    )

    await assert_unauthorized(wrong_password)
    await assert_unauthorized(unknown_user)
    samples = await scrape(client)
    failures = series(samples, "minor_illusion_login_failures_total")
    assert failures == [{"reason": "invalid_credentials"}]  # the two cases look the same
    assert sample(samples, "minor_illusion_login_failures_total", reason="invalid_credentials") == 2


async def test_login_failure_reasons_are_bounded(app: Quart, client: QuartClient) -> None:
    async with app.app_context():
        for number in range(MAX_LOGIN_FAILURE_REASONS + 5):
            record_login_failure(f"reason-{number}")
        record_login_failure("reason-0")

    samples = await scrape(client)

    reasons = {
        labels["reason"] for labels in series(samples, "minor_illusion_login_failures_total")
    }
    assert len(reasons) == MAX_LOGIN_FAILURE_REASONS + 1
    assert OTHER_REASON in reasons
    assert sample(samples, "minor_illusion_login_failures_total", reason="reason-0") == 2
    assert sample(samples, "minor_illusion_login_failures_total", reason=OTHER_REASON) == 5


def test_recording_outside_an_app_is_a_no_op() -> None:
    record_login_failure("invalid_credentials")  # must not raise


# Exposure --------------------------------------------------------------------------------------


async def test_metrics_are_not_in_the_openapi_document(client: QuartClient) -> None:
    response = await client.get("/openapi.json")

    assert "/metrics" not in (await response.get_json())["paths"]


async def test_metrics_can_be_turned_off(data_dir: Path) -> None:
    app = _build_app(data_dir, metrics_enabled=False)
    async with app.test_app():
        client = app.test_client()
        response = await client.get("/metrics")
        async with app.app_context():
            record_login_failure("invalid_credentials")  # a no-op, not an error

    await assert_error(response, 404)
    assert "metrics" not in app.extensions


async def test_with_a_token_metrics_refuse_anyone_without_it(token_client: QuartClient) -> None:
    missing = await token_client.get("/metrics")
    wrong = await token_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    basic = await token_client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"})

    for response in (missing, wrong, basic):
        await assert_unauthorized(response)


async def test_with_a_token_metrics_answer_the_scraper(token_client: QuartClient) -> None:
    samples = await scrape(token_client, Authorization=f"Bearer {METRICS_TOKEN}")

    assert sample(samples, "minor_illusion_db_transaction_retries_total") == 0


def test_metrics_are_on_without_a_token_by_default() -> None:
    assert Settings.model_fields["metrics_enabled"].default is True
    assert Settings.model_fields["metrics_token"].default is None
