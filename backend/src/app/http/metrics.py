"""Prometheus metrics at GET /metrics: requests, database retries and pool, login failures.

Each app has its own CollectorRegistry, so tests that build many apps never share a series.
Per request the cost is one counter increment and one histogram observation on label
children cached by (method, route template, status); the route label is the URL rule
(`/todos/<uuid:todo_id>`), never the path, and every request that matched no rule (404, 405)
shares one label, so the number of series stays bounded whatever clients send.

Database figures are read when Prometheus scrapes, not kept up to date per request: the
transaction retry counters from `Database.stats`, and pool usage from the engine's pool.

Series are per worker process (each Hypercorn worker has its own registry and pool), so
with several workers a scrape sees whichever worker answered it.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from quart import Quart, Response, current_app, has_app_context, request
from quart_schema import hide

from app.db.database import Database
from app.errors import Unauthorized
from app.http.access_log import request_started
from app.settings import Settings

METRICS_PATH = "/metrics"
EXTENSION = "metrics"
UNMATCHED_ROUTE = "unmatched"
"""The route label of requests no URL rule matched (404, 405)."""
OTHER_METHOD = "OTHER"
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_LOGIN_FAILURE_REASONS = 16
OTHER_REASON = "other"
REQUEST_DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
POOL_GAUGES = {
    "size": "Connections the pool keeps open at most without overflow.",
    "checked_out": "Connections in use by requests now.",
    "overflow": "Connections open beyond the pool size now.",
    "max_overflow": "Connections the pool may open beyond its size.",
}
"""The figures a pool reports, each a `minor_illusion_db_pool_<name>` gauge by `pool`."""
ENGINE_POOL = "engine"

PoolUsage = Mapping[str, Mapping[str, int]]
"""Pool name -> figures (keys of POOL_GAUGES)."""

log = structlog.get_logger(__name__)


@dataclass
class _RouteSeries:
    """The label children of one (method, route): its duration, and a counter per status."""

    duration: Histogram
    requests_by_status: dict[int, Counter] = field(default_factory=dict)


class Metrics:
    """The app's registry, its series, and label children cached for the request hook."""

    def __init__(self, database: Callable[[], Database]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "minor_illusion_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "minor_illusion_http_request_duration_seconds",
            "Time from the start of request handling to the response, by method and route.",
            ("method", "route"),
            buckets=REQUEST_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.login_failures = Counter(
            "minor_illusion_login_failures",
            "Refused logins, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self.registry.register(DatabaseCollector(database))
        ProcessCollector(registry=self.registry)
        self._routes: dict[tuple[str, str], _RouteSeries] = {}
        self._login_failures: dict[str, Counter] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        if method not in STANDARD_METHODS:
            method = OTHER_METHOD
        key = (method, route)
        series = self._routes.get(key)
        if series is None:
            series = self._routes[key] = _RouteSeries(self.request_duration.labels(method, route))
        counter = series.requests_by_status.get(status)
        if counter is None:
            counter = series.requests_by_status[status] = self.requests.labels(
                method, route, str(status)
            )
        counter.inc()
        if seconds is not None:
            series.duration.observe(seconds)

    def record_login_failure(self, reason: str) -> None:
        counter = self._login_failures.get(reason)
        if counter is None:
            if len(self._login_failures) >= MAX_LOGIN_FAILURE_REASONS:
                reason = OTHER_REASON
            counter = self._login_failures.setdefault(reason, self.login_failures.labels(reason))
        counter.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector:
    """Reads the database's retry counters and pool usage when Prometheus scrapes."""

    def __init__(self, database: Callable[[], Database]) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        database = self._database()
        yield CounterMetricFamily(
            "minor_illusion_db_transaction_retries",
            "Transactions re-run after a serialization failure (SQLSTATE 40001).",
            value=database.stats.retries,
        )
        yield CounterMetricFamily(
            "minor_illusion_db_transaction_retries_exhausted",
            "Transactions given up (503) after DB_MAX_RETRIES re-runs.",
            value=database.stats.exhausted,
        )
        usage = pool_usage(database)
        for figure, documentation in POOL_GAUGES.items():
            gauge = GaugeMetricFamily(
                f"minor_illusion_db_pool_{figure}", documentation, labels=["pool"]
            )
            for pool, figures in usage.items():
                if figure in figures:
                    gauge.add_metric([pool], figures[figure])
            yield gauge


def pool_usage(database: Database) -> PoolUsage:
    """The engine pool's figures; nothing before the engine starts, for a pool without a
    size (NullPool, StaticPool), or when the figures cannot be read."""
    try:
        pool: Any = database.engine.pool
    except RuntimeError:  # not started
        return {}
    if not callable(getattr(pool, "checkedout", None)):
        return {}
    try:
        return {
            ENGINE_POOL: {
                "size": pool.size(),
                "checked_out": pool.checkedout(),
                # QueuePool counts unopened connections as negative overflow.
                "overflow": max(pool.overflow(), 0),
                "max_overflow": database.settings.db_max_overflow,
            }
        }
    except Exception as error:  # a scrape must not fail because one figure could not be read
        log.warning("pool usage unavailable", error_type=type(error).__name__)
        return {}


def register_metrics(app: Quart, settings: Settings) -> None:
    """Count every request and serve GET /metrics, unless METRICS_ENABLED is false.

    /metrics is left out of the OpenAPI document: it is for the scraper, not API clients.
    It shows no secret or user data, only traffic by route, pool figures and failure counts;
    with METRICS_TOKEN set it requires that bearer token.
    """
    if not settings.metrics_enabled:
        return
    # `_created` series would double the output, and no dashboard reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics(lambda: app.extensions["database"])
    app.extensions[EXTENSION] = metrics
    observe = metrics.observe_request
    perf_counter = time.perf_counter

    @app.after_request
    async def _observe(response: Response) -> Response:
        started = request_started.get(None)
        rule = request.url_rule
        observe(
            request.method,
            UNMATCHED_ROUTE if rule is None else rule.rule,
            response.status_code,
            None if started is None else perf_counter() - started,
        )
        return response

    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else b""

    @hide
    async def metrics_endpoint() -> Response:
        if token and not _bearer_matches(request.headers.get("Authorization"), token):
            raise Unauthorized("GET /metrics needs the metrics bearer token")
        return Response(metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.add_url_rule(METRICS_PATH, "metrics", metrics_endpoint, methods=["GET"])


def _bearer_matches(header: str | None, token: bytes) -> bool:
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


def record_login_failure(reason: str) -> None:
    """Count one refused login, labelled by `reason` (a fixed word such as
    "invalid_credentials" or "rate_limited", never user input).

    A no-op outside an app, or when metrics are off. Unknown user and wrong password must
    share one reason: /metrics would otherwise tell which user names exist.
    """
    if not has_app_context():
        return
    metrics: Metrics | None = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.record_login_failure(reason)
