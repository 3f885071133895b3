"""`python -m bench.compare OTHER`: this checkout's service against another's, side by side.

`bench.load` measures one tree against a bare-Quart ceiling. Comparing two trees with it
means two runs minutes apart, and this machine's speed drifts by tens of percent within
minutes (by up to 3x between sessions): more than most changes are worth. Here both services
run at once, each from its own checkout and virtualenv (`OTHER` is the other `backend/src`,
with `.venv` installed, e.g. a `git worktree` of the commit before), on one embedded
PostgreSQL with a database each that each service migrates itself at start. For each
endpoint wrk drives them in turns, ROUNDS pairs of short runs in ABBA order, so that drift
and warm caches fall on both alike; the figure is the median of the per-pair ratios
this/other, with their range. The data is made through the API (a user, an organization, a
space, todos), so the two trees need not share a seeding helper or a schema.

From backend/src: `backend/dev python -m bench.compare /tmp/before/backend/src`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from app.db import embedded
from app.db.urls import normalise
from bench.processes import (
    LOOPBACK,
    BenchError,
    Child,
    free_port,
    running,
    wait_until_answering,
)
from bench.servers import (
    project_worker_class,
    request_json,
    serve_command,
    serve_env,
    write_hypercorn_config,
)
from bench.wrk import PATCH_TODO_SCRIPT, POST_JSON_SCRIPT, Load, Wrk, find_wrk

ROUNDS = 6
"""Pairs of runs per endpoint; every other pair starts with the other service."""
RUN_SECONDS = 5
WARMUP_SECONDS = 3
CONNECTIONS = 32
TODOS = 200
PASSWORD = "bench-compare-password"  # noqa: S105 - a throwaway user of a throwaway database


@dataclass(frozen=True)
class Service:
    label: str
    base_url: str
    loads: dict[str, Load]


@dataclass(frozen=True)
class Comparison:
    endpoint: str
    this_rps: list[float]
    other_rps: list[float]

    @property
    def ratios(self) -> list[float]:
        return [this / other for this, other in zip(self.this_rps, self.other_rps, strict=True)]

    def as_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "this_rps": self.this_rps,
            "other_rps": self.other_rps,
            "median_ratio": round(statistics.median(self.ratios), 4),
            "min_ratio": round(min(self.ratios), 4),
            "max_ratio": round(max(self.ratios), 4),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("other", type=Path, help="the other checkout's backend/src")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--endpoint", action="append", help="only this one (repeatable), e.g. 'POST /todos'"
    )
    args = parser.parse_args(argv)
    this = Path(__file__).resolve().parent.parent
    other = args.other.resolve()
    for source in (this, other):
        if not (source / ".venv" / "bin" / "minor-illusion").exists():
            print(f"no {source}/.venv with minor-illusion installed", file=sys.stderr)
            return 2
    wrk_executable = find_wrk()
    with tempfile.TemporaryDirectory(prefix="minor-illusion-compare-") as scratch:
        workdir = Path(scratch)
        try:
            comparisons = _compare(this, other, workdir, wrk_executable, args.rounds, args.endpoint)
        except BenchError as error:
            print(f"bench.compare: {error}", file=sys.stderr)
            return 1
    _print(comparisons, this, other, args.rounds)
    if args.json is not None:
        args.json.write_text(json.dumps([c.as_json() for c in comparisons], indent=2) + "\n")
    return 0


def _compare(
    this: Path,
    other: Path,
    workdir: Path,
    wrk_executable: str,
    rounds: int,
    only: list[str] | None,
) -> list[Comparison]:
    config = write_hypercorn_config(workdir / "hypercorn.toml", project_worker_class())
    wrk = Wrk(wrk_executable, workdir)
    with embedded.running(workdir / "postgres") as server_url, contextlib.ExitStack() as stack:
        services = []
        for label, source in (("this", this), ("other", other)):
            url = _new_database(server_url, f"compare_{label}")
            child = stack.enter_context(_serving(label, source, url, config, workdir))
            services.append(_prepared(label, child))
        this_service, other_service = services
        comparisons = []
        for endpoint in this_service.loads:
            if only and endpoint not in only:
                continue
            _progress(f"{endpoint}: warming up both")
            for service in services:
                wrk.run(service.loads[endpoint], connections=CONNECTIONS, seconds=WARMUP_SECONDS)
            rps: dict[str, list[float]] = {"this": [], "other": []}
            for number in range(rounds):
                order = services if number % 2 == 0 else services[::-1]
                for service in order:
                    result = wrk.run(
                        service.loads[endpoint], connections=CONNECTIONS, seconds=RUN_SECONDS
                    )
                    if result.errors:
                        raise BenchError(f"{service.label} {endpoint}: {result.errors} errors")
                    rps[service.label].append(round(result.requests_per_s, 1))
            comparisons.append(Comparison(endpoint, rps["this"], rps["other"]))
            _progress(f"{endpoint}: this/other {statistics.median(comparisons[-1].ratios):.3f}")
        assert other_service.loads.keys() == this_service.loads.keys()
        return comparisons


def _new_database(server_url: str, name: str) -> str:
    engine = create_engine(
        normalise(server_url, "psycopg2"), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def _serving(
    label: str, source: Path, database_url: str, config: Path, workdir: Path
) -> Iterator[tuple[Child, str]]:
    """`minor-illusion serve` from `source`'s own virtualenv (1 worker): it migrates first."""
    port = free_port()
    argv = serve_command(config, port, 1, source / ".venv" / "bin" / "minor-illusion")
    _progress(f"starting {label}: {source}")
    env = serve_env(database_url, workdir / f"data-{label}")
    with running(label, argv, env=env, cwd=source, log=workdir / f"{label}.log") as child:
        base_url = f"http://{LOOPBACK}:{port}"
        wait_until_answering(child, f"{base_url}/readyz", timeout_s=120)
        yield child, base_url


def _prepared(label: str, serving: tuple[Child, str]) -> Service:
    """Make a user, an organization, a space and TODOS todos through the API."""
    _, base = serving
    name = f"compare-{uuid.uuid4().hex[:12]}"
    _expect(request_json("POST", f"{base}/auth/register", {"name": name, "password": PASSWORD}))
    token = str(
        _expect(
            request_json("POST", f"{base}/auth/login", {"username": name, "password": PASSWORD})
        )["access_token"]
    )
    organization = _expect(request_json("POST", f"{base}/organizations", {"name": name}, token))
    space = _expect(
        request_json(
            "POST",
            f"{base}/spaces",
            {"name": "bench", "organization_id": organization["id"]},
            token,
        )
    )
    todo_ids = [
        str(
            _expect(
                request_json(
                    "POST", f"{base}/todos", {"title": f"todo {n}", "space_id": space["id"]}, token
                )
            )["id"]
        )
        for n in range(TODOS)
    ]
    auth = f"Authorization: Bearer {token}"
    new_todo = json.dumps({"title": "bench todo", "content": "compare", "space_id": space["id"]})
    loads = {
        "GET /todos/{id}": Load(f"{base}/todos/{todo_ids[0]}", headers=(auth,)),
        "GET /todos (50)": Load(f"{base}/todos?space_id={space['id']}&limit=50", headers=(auth,)),
        "POST /todos": Load(
            f"{base}/todos", script=POST_JSON_SCRIPT, script_args=(new_todo, token)
        ),
        "PATCH /todos/{id}": Load(
            f"{base}/", script=PATCH_TODO_SCRIPT, script_args=(token, *todo_ids)
        ),
    }
    return Service(label, base, loads)


def _expect(answer: tuple[int, object]) -> dict[str, object]:
    status, body = answer
    if status not in (200, 201) or not isinstance(body, dict):
        raise BenchError(f"setting up answered {status}: {body!r}")
    return body


def _print(comparisons: list[Comparison], this: Path, other: Path, rounds: int) -> None:
    print(f"\nthis: {this}\nother: {other}\n{rounds} pairs of {RUN_SECONDS} s runs, ABBA order\n")
    print(f"{'endpoint':18}  {'this req/s':>10}  {'other req/s':>11}  {'this/other':>10}  range")
    for comparison in comparisons:
        ratios = comparison.ratios
        print(
            f"{comparison.endpoint:18}  {statistics.median(comparison.this_rps):>10.0f}  "
            f"{statistics.median(comparison.other_rps):>11.0f}  "
            f"{statistics.median(ratios):>10.3f}  {min(ratios):.3f}-{max(ratios):.3f}"
        )


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
