"""`python -m bench.soak`: mixed traffic, a database restart in the middle, then a reckoning.

One run, from backend/src (`backend/dev python -m bench.soak`):

1. starts an embedded PostgreSQL in a temporary folder (one that can be stopped and started
   again on the same socket, `bench.postgres`), migrates it and seeds a user, an
   organization, a space and `--todos` todos (`bench.seed`);
2. starts `minor-illusion serve` on it, with the project's Hypercorn settings and `--workers`
   workers, and logs in over HTTP;
3. runs `--concurrency` clients (asyncio, one keep-alive connection each) for `--duration`
   seconds or until `--max-requests` requests were sent, whichever comes first. Each client
   loops over creates (POST /todos, the title naming the run, the client and a sequence
   number), gets and patches of its own todos, and list pages, by fixed weights;
4. at `--restart-at` of the duration, stops PostgreSQL (pg_ctl, fast shutdown unless
   `--stop-mode immediate`), leaves it down for `--outage` seconds and starts it again,
   under the same service process, which is never restarted;
5. reconciles with the database itself: every create answered 201 is there exactly once,
   and for every todo with a PATCH answered 200, the stored content is that of the last
   acknowledged patch (or of a later one whose answer was lost in the outage) and the
   version is at least the acknowledged one;
6. prints the requests, the answers by status, p50 and p99 latency per operation, the
   outage and the recovery, and the reconciliation.

Exit status: 0 when the reconciliation holds, every answer was 200, 201 or 503 (a 503 being
what the outage is expected to cost), no connection was dropped and the service process
survived; 1 otherwise, or when something the run needs broke; 2 on bad arguments; 130 on
Ctrl-C. Everything listens on 127.0.0.1, and every process it starts is stopped at the end,
also on Ctrl-C, SIGTERM or an exception.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app.db.urls import normalise
from bench.arguments import positive_float, positive_int
from bench.connection import Connection, ConnectionDropped
from bench.postgres import RestartablePostgres, StopMode, restartable_postgres
from bench.processes import LOOPBACK, BenchError, Child, free_port, running, wait_until_answering
from bench.script import keep_logs, run_script
from bench.seed import Seeded, bench_settings, prepare
from bench.servers import (
    SOURCE_DIR,
    log_in,
    project_worker_class,
    request_json,
    serve_command,
    serve_env,
    write_hypercorn_config,
)

OPERATIONS = ("create", "get", "list", "patch")
WEIGHTS = (3, 3, 2, 2)
"""How often each client picks each operation: as many writes as reads."""
EXPECTED = frozenset({200, 201, 503})
"""Answers that are not failures: success, and 503 while the database is away."""
LIST_LIMIT = 20


@dataclass(frozen=True)
class Answer:
    """One request: its operation, when it started (seconds into the run), how long it took,
    and the status, or the transport error's name when no answer came."""

    op: str
    started_s: float
    seconds: float
    status: int | str


@dataclass
class Ledger:
    """What the clients sent and what they were told, for the figures and the reckoning."""

    answers: list[Answer] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    """Title -> id of every create answered 201."""
    attempted_titles: set[str] = field(default_factory=set)
    patches: defaultdict[str, list[tuple[str, int | str, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """Todo id -> (content sent, status, version answered) of each PATCH, in order sent."""
    sent: int = 0


@dataclass
class Outage:
    """When the database went away and came back, in seconds into the run."""

    mode: StopMode
    down_at_s: float | None = None
    """When the stop had completed."""
    starting_at_s: float | None = None
    """When the start began: in between, no server ran at all."""
    up_at_s: float | None = None
    stop_took_s: float = 0.0
    start_took_s: float = 0.0


@dataclass(frozen=True)
class Reckoning:
    """The reconciliation's findings; `failures` is empty when every promise held."""

    acknowledged_creates: int
    committed_unacknowledged: int
    patched_todos: int
    failures: list[str]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.restart_at < 1:
        print("bench: --restart-at must be between 0 and 1", file=sys.stderr)
        return 2
    return run_script(lambda: _in_scratch(args), args.logs)


def _in_scratch(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="minor-illusion-soak-") as scratch:
        workdir = Path(scratch)
        try:
            return _run(args, workdir)
        finally:
            keep_logs(
                args.logs,
                {
                    "serve.log": workdir / "serve.log",
                    "postgres.log": workdir / "data" / "postgres" / "log",
                },
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak test of minor-illusion: mixed load, a database restart, a reckoning.",
    )
    parser.add_argument(
        "--duration", type=positive_float, default=30.0, help="seconds of load (%(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=64, help="concurrent clients (%(default)s)"
    )
    parser.add_argument(
        "--max-requests",
        type=positive_int,
        default=500_000,
        help="stop sending after this many requests, even before --duration (%(default)s)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="Hypercorn workers (%(default)s)"
    )
    parser.add_argument(
        "--todos", type=positive_int, default=100, help="todos seeded (%(default)s)"
    )
    parser.add_argument(
        "--restart-at",
        type=float,
        default=0.5,
        help="when to stop PostgreSQL, as a fraction of --duration (%(default)s)",
    )
    parser.add_argument(
        "--outage",
        type=positive_float,
        default=2.0,
        help="seconds PostgreSQL stays down before it is started again (%(default)s)",
    )
    parser.add_argument(
        "--stop-mode",
        choices=("fast", "immediate"),
        default="fast",
        help="pg_ctl's shutdown mode: fast ends sessions with an error, immediate as a crash",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=30.0, help="per request, s (%(default)s)"
    )
    parser.add_argument(
        "--logs",
        metavar="DIR",
        type=Path,
        help="copy the service's log (serve.log) and PostgreSQL's (postgres.log) into DIR",
    )
    return parser


def _progress(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    worker_class = project_worker_class()
    config = write_hypercorn_config(workdir / "hypercorn.toml", worker_class)
    _progress("starting the embedded PostgreSQL")
    with restartable_postgres(workdir / "data") as postgres:
        _progress(f"migrating and seeding {args.todos} todos")
        seeded = prepare(bench_settings(postgres.url, workdir / "data"), args.todos)
        port = free_port()
        base = f"http://{LOOPBACK}:{port}"
        with running(
            "minor-illusion serve",
            serve_command(config, port, args.workers),
            env=serve_env(postgres.url, workdir / "serve-data"),
            cwd=SOURCE_DIR,
            log=workdir / "serve.log",
        ) as service:
            _progress(f"starting minor-illusion serve ({args.workers} worker(s), {worker_class})")
            wait_until_answering(service, f"{base}/readyz", timeout_s=120)
            token = log_in(base, seeded.user_name, seeded.password)
            marker = f"soak-{uuid.uuid4().hex[:8]}"
            _progress(
                f"{args.concurrency} clients for {args.duration:g} s; PostgreSQL stops at "
                f"{args.duration * args.restart_at:g} s for {args.outage:g} s"
            )
            ledger, outage = asyncio.run(_soak(args, port, token, seeded, marker, postgres))
            survived = _survived(service, base)
            log_tail = service.log_tail(20)
        reckoning = _reconcile(postgres.url, marker, ledger)
    return _report(args, worker_class, ledger, outage, reckoning, survived, log_tail)


async def _soak(
    args: argparse.Namespace,
    port: int,
    token: str,
    seeded: Seeded,
    marker: str,
    postgres: RestartablePostgres,
) -> tuple[Ledger, Outage]:
    ledger = Ledger()
    outage = Outage(args.stop_mode)
    started = time.monotonic()
    deadline = started + args.duration
    load = Load(
        port, token, args.timeout, ledger, seeded, marker, (started, deadline), args.max_requests
    )
    restart = asyncio.create_task(
        _restart(postgres, outage, started, args.duration * args.restart_at, args.outage)
    )
    try:
        await asyncio.gather(*(load.client(number) for number in range(args.concurrency)))
    finally:
        if not restart.done():
            _progress("the load ended before the restart was over; waiting for it")
        await restart
    return ledger, outage


async def _restart(
    postgres: RestartablePostgres, outage: Outage, started: float, at_s: float, down_s: float
) -> None:
    """Stop PostgreSQL at `at_s` into the run, start it again `down_s` later."""
    await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
    began = time.monotonic()
    await asyncio.to_thread(postgres.stop, outage.mode)
    outage.down_at_s = time.monotonic() - started
    outage.stop_took_s = time.monotonic() - began
    await asyncio.sleep(down_s)
    began = time.monotonic()
    outage.starting_at_s = began - started
    await asyncio.to_thread(postgres.start)
    outage.up_at_s = time.monotonic() - started
    outage.start_took_s = time.monotonic() - began


class Load:
    """The clients' shared state: where to send, the ledger, and the time and request budgets."""

    def __init__(
        self,
        port: int,
        token: str,
        timeout_s: float,
        ledger: Ledger,
        seeded: Seeded,
        marker: str,
        span: tuple[float, float],
        max_requests: int,
    ) -> None:
        self.port = port
        self.token = token
        self.timeout_s = timeout_s
        self.ledger = ledger
        self.seeded = [str(todo_id) for todo_id in seeded.todo_ids]
        self.space_id = str(seeded.space_id)
        self.marker = marker
        self.started, self.deadline = span
        self.max_requests = max_requests

    def _more(self) -> bool:
        return time.monotonic() < self.deadline and self.ledger.sent < self.max_requests

    async def client(self, number: int) -> None:
        """One client: its own connection, its own todos (created here), its own choices."""
        connection = Connection(LOOPBACK, self.port, {"Authorization": f"Bearer {self.token}"})
        rng = random.Random(number)  # noqa: S311 - load shaping, not cryptography
        mine: list[str] = []
        sequence = 0
        try:
            while self._more():
                sequence += 1
                await self._step(connection, rng, number, sequence, mine)
        finally:
            connection.close()

    async def _step(
        self,
        connection: Connection,
        rng: random.Random,
        number: int,
        sequence: int,
        mine: list[str],
    ) -> None:
        op = rng.choices(OPERATIONS, WEIGHTS)[0]
        if op == "patch" and not mine:
            op = "create"
        if op == "create":
            title = f"{self.marker}-c{number}-{sequence}"
            self.ledger.attempted_titles.add(title)
            body = {"title": title, "content": "soak", "space_id": self.space_id}
            status, reply = await self._send(connection, "create", "POST", "/todos", body)
            if status == 201 and reply is not None:
                self.ledger.created[title] = str(reply["id"])
                mine.append(str(reply["id"]))
        elif op == "get":
            todo_id = rng.choice(mine or self.seeded)
            await self._send(connection, "get", "GET", f"/todos/{todo_id}")
        elif op == "list":
            target = f"/todos?space_id={self.space_id}&limit={LIST_LIMIT}"
            await self._send(connection, "list", "GET", target)
        else:
            todo_id = rng.choice(mine)
            content = f"{self.marker}-c{number}-{sequence}-patch"
            status, reply = await self._send(
                connection, "patch", "PATCH", f"/todos/{todo_id}", {"content": content}
            )
            version = int(reply["version"]) if status == 200 and reply is not None else None
            self.ledger.patches[todo_id].append((content, status, version))

    async def _send(
        self,
        connection: Connection,
        op: str,
        method: str,
        target: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[int | str, dict[str, Any] | None]:
        """One request; a transport failure or timeout is recorded by name (the connection
        is opened afresh for the next one), and so is a 503 without Retry-After."""
        self.ledger.sent += 1
        began = time.monotonic()
        status: int | str
        reply: dict[str, Any] | None = None
        try:
            answer = await asyncio.wait_for(
                connection.request(method, target, body), self.timeout_s
            )
        except (ConnectionDropped, OSError, asyncio.IncompleteReadError, TimeoutError) as error:
            status = type(error).__name__
        else:
            status = answer.status
            if status in (200, 201):
                reply = answer.json()
            elif status == 503 and not answer.headers.get("retry-after", "").isdigit():
                status = "503 without Retry-After"
        self.ledger.answers.append(
            Answer(op, began - self.started, time.monotonic() - began, status)
        )
        return status, reply


def _survived(service: Child, base: str) -> bool:
    """The service process that was started is the one still serving, and it is ready."""
    if service.process.poll() is not None:
        return False
    try:
        status, _ = request_json("GET", f"{base}/readyz")
    except BenchError:
        return False
    return status == 200


def _reconcile(database_url: str, marker: str, ledger: Ledger) -> Reckoning:
    """Compare what clients were told with what the database holds."""
    engine = create_engine(normalise(database_url, "psycopg2"))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id::text, title, content, version FROM todos WHERE title LIKE :m"),
                {"m": f"{marker}-%"},
            ).all()
    finally:
        engine.dispose()
    copies: Counter[str] = Counter(row.title for row in rows)
    stored = {row.id: (str(row.content), int(row.version)) for row in rows}
    failures: list[str] = []

    missing = [title for title in ledger.created if copies[title] == 0]
    doubled = [title for title, count in copies.items() if count > 1]
    foreign = [title for title in copies if title not in ledger.attempted_titles]
    if missing:
        failures.append(f"{len(missing)} acknowledged creates are missing, e.g. {missing[:3]}")
    if doubled:
        failures.append(f"{len(doubled)} titles are stored more than once, e.g. {doubled[:3]}")
    if foreign:
        failures.append(f"{len(foreign)} rows nobody created, e.g. {foreign[:3]}")

    patched = 0
    for todo_id, attempts in ledger.patches.items():
        acknowledged = [i for i, (_, status, _) in enumerate(attempts) if status == 200]
        if not acknowledged:
            continue
        patched += 1
        last = acknowledged[-1]
        acked_version = attempts[last][2]
        content, version = stored.get(todo_id, ("(missing)", -1))
        # The last acknowledged patch, or one sent after it whose answer was lost.
        allowed = {sent for sent, _, _ in attempts[last:]}
        if content not in allowed or acked_version is None or version < acked_version:
            failures.append(
                f"todo {todo_id}: stored {content!r} v{version}, but patch "
                f"{attempts[last][0]!r} was acknowledged at v{acked_version}"
            )
    unacknowledged = sum(1 for title in copies if title not in ledger.created)
    return Reckoning(len(ledger.created), unacknowledged, patched, failures[:20])


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (not empty), in the same unit."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _report(
    args: argparse.Namespace,
    worker_class: str,
    ledger: Ledger,
    outage: Outage,
    reckoning: Reckoning,
    survived: bool,
    log_tail: str,
) -> int:
    answers = ledger.answers
    if not answers:
        raise BenchError("no request was answered")
    span = max(a.started_s + a.seconds for a in answers)
    print(
        f"\nminor-illusion soak: {span:.1f} s, {args.concurrency} clients, "
        f"{args.workers} worker(s) ({worker_class}), {os.cpu_count()} cores; PostgreSQL "
        f"{outage.mode} shutdown at {args.duration * args.restart_at:g} s for {args.outage:g} s\n"
    )
    header = f"{'operation':<10}{'requests':>10}{'2xx':>9}{'503':>8}{'other':>7}"
    print(f"{header}{'p50 ms':>9}{'p99 ms':>9}")
    for op in (*OPERATIONS, "total"):
        mine = [a for a in answers if op in (a.op, "total")]
        if not mine:
            continue
        ok = sum(1 for a in mine if a.status in (200, 201))
        unavailable = sum(1 for a in mine if a.status == 503)
        seconds = [a.seconds * 1000 for a in mine]
        print(
            f"{op:<10}{len(mine):>10,}{ok:>9,}{unavailable:>8,}{len(mine) - ok - unavailable:>7,}"
            f"{_percentile(seconds, 0.50):>9.1f}{_percentile(seconds, 0.99):>9.1f}"
        )
    statuses = Counter(a.status for a in answers)
    print(
        f"\n{len(answers):,} requests in {span:.1f} s ({len(answers) / span:,.0f}/s); by status: "
        + ", ".join(f"{status}: {count:,}" for status, count in sorted(statuses.items(), key=str))
    )
    print(_describe_outage(outage, answers))
    print(
        f"reconciliation: {reckoning.acknowledged_creates:,} acknowledged creates, "
        f"{reckoning.committed_unacknowledged} more committed without an answer; "
        f"{reckoning.patched_todos:,} todos with acknowledged patches"
    )
    unexpected = {status: count for status, count in statuses.items() if status not in EXPECTED}
    problems = list(reckoning.failures)
    if unexpected:
        examples = "; ".join(
            f"{a.op} at {a.started_s:.2f} s: {a.status} after {a.seconds:.2f} s"
            for a in [a for a in answers if a.status not in EXPECTED][:5]
        )
        problems.append(
            f"unexpected answers (5xx other than 503, 4xx, dropped): {unexpected}; {examples}"
        )
    if not survived:
        problems.append(f"the service process did not survive the outage:\n{log_tail}")
    if outage.up_at_s is None:
        problems.append("PostgreSQL was not restarted (the run ended first?)")
    served = [a for a in _while_down(outage, answers) if a.status in (200, 201)]
    if served:
        problems.append(f"{len(served)} requests succeeded while PostgreSQL was down")
    for problem in problems:
        print(f"  FAIL: {problem}")
    print("result: " + ("FAIL" if problems else "PASS: every acknowledged write is there"))
    return 1 if problems else 0


def _while_down(outage: Outage, answers: list[Answer]) -> list[Answer]:
    """The requests made, start to end, while no PostgreSQL ran."""
    if outage.down_at_s is None or outage.starting_at_s is None:
        return []
    down, starting = outage.down_at_s, outage.starting_at_s
    return [a for a in answers if down <= a.started_s and a.started_s + a.seconds <= starting]


def _describe_outage(outage: Outage, answers: list[Answer]) -> str:
    if outage.down_at_s is None or outage.starting_at_s is None or outage.up_at_s is None:
        return "outage: did not happen"
    recovered = [
        a.started_s + a.seconds
        for a in answers
        if a.started_s >= outage.up_at_s and a.status in (200, 201)
    ]
    first = f"{min(recovered) - outage.up_at_s:.2f} s" if recovered else "never"
    during = _while_down(outage, answers)
    refused = sum(1 for a in during if a.status == 503)
    return (
        f"outage: down at {outage.down_at_s:.1f} s (stop took {outage.stop_took_s:.2f} s), "
        f"up at {outage.up_at_s:.1f} s (start took {outage.start_took_s:.2f} s); "
        f"{refused:,} of {len(during):,} requests made while it was down got 503; "
        f"first success {first} after the restart"
    )


if __name__ == "__main__":
    sys.exit(main())
