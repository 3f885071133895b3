"""`python -m bench.load`: the load benchmark of minor-illusion, self-contained.

One run, from backend/src (`backend/dev python -m bench.load`):

1. starts an embedded PostgreSQL in a temporary folder, migrates it and seeds, through the
   DAOs, a user (real argon2 hash), an organization, a space and `--todos` todos;
2. serves `bench/ceiling_app.py` (a bare Quart app) under Hypercorn and measures it: the
   ceiling every endpoint is compared with, since absolute req/s mean little across machines;
3. starts `minor-illusion serve` with the same Hypercorn settings, worker count and worker
   class, waits for /readyz, logs in over HTTP and drives GET /todos/{id}, GET /todos,
   POST /todos, PATCH /todos/{id} and POST /auth/login with wrk (a warm-up, then a measured
   run each);
4. checks that logins do not starve reads (GET /todos/{id} alone, then with a second wrk of 4
   connections logging in alongside) and reads the RSS of all the service's processes;
5. prints a table against the targets and, with `--json PATH`, writes every figure with the
   commit, date, machine and settings (`--json -`: the JSON alone on stdout, the table on
   stderr, so it pipes into jq).

It reports and does not judge: missed targets still exit 0. It exits 2 when wrk is missing
and 1 when something it needs broke, with the reason. Everything listens on 127.0.0.1, every
run is bounded in time, and every process it starts is stopped at the end, also on Ctrl-C,
SIGTERM or an exception.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.db import embedded
from app.settings import Settings
from bench.arguments import non_negative_int, positive_int
from bench.processes import (
    LOOPBACK,
    BenchError,
    Child,
    descendants_of,
    event_loop_of,
    free_port,
    memory_of,
    running,
    serving_processes,
    wait_until_answering,
    wait_until_idle,
)
from bench.report import Endpoint, MemoryCheck, Report, Starvation, Target, render_table
from bench.script import keep_logs, run_script
from bench.seed import Seeded, bench_settings, prepare
from bench.servers import (
    SOURCE_DIR,
    WORKER_CLASSES,
    ceiling_command,
    ceiling_env,
    log_in,
    project_worker_class,
    request_json,
    serve_command,
    serve_env,
    write_hypercorn_config,
)
from bench.wrk import (
    PATCH_TODO_SCRIPT,
    POST_JSON_SCRIPT,
    Load,
    Wrk,
    WrkMissing,
    WrkResult,
    find_wrk,
    wrk_version,
)

TARGETS = {
    "GET /todos/{id}": Target(min_fraction=0.45, max_p99_ms=40.0),
    "GET /todos (50)": Target(min_fraction=0.30, max_p99_ms=40.0),
    "POST /todos": Target(min_fraction=0.30, max_p99_ms=40.0),
    "PATCH /todos/{id}": Target(min_fraction=0.30, max_p99_ms=40.0),
    "POST /auth/login": Target(),  # hashing is meant to be slow: only "no failures"
}

LOGIN_CLIENTS = 4
"""Connections of the wrk that logs in alongside reads in the starvation check."""

LOGIN_LEAD_S = 1
"""The login load starts this long before the measured reads, and ends as long after."""

MAX_PATCH_IDS = 1000
"""Todos PATCH rotates over; passed to wrk's Lua on its command line, so kept bounded."""


@dataclass(frozen=True)
class Plan:
    """How every endpoint is driven."""

    connections: int
    warmup_s: int
    duration_s: int


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        wrk_executable = find_wrk()
    except WrkMissing as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    uvloop_installed = importlib.util.find_spec("uvloop") is not None
    if args.worker_class is None:
        # As `minor-illusion serve` does: hypercorn.toml's class, asyncio where uvloop is absent.
        args.worker_class = project_worker_class()
        if args.worker_class == "uvloop" and not uvloop_installed:
            _progress("uvloop is not installed: both servers run the asyncio worker class")
            args.worker_class = "asyncio"
    elif args.worker_class == "uvloop" and not uvloop_installed:
        print("bench: --worker-class uvloop needs uvloop in the virtualenv", file=sys.stderr)
        return 2
    if args.json not in (None, "-") and not Path(args.json).resolve().parent.is_dir():
        print(f"bench: the folder of --json {args.json} does not exist", file=sys.stderr)
        return 2

    def work() -> int:
        _print(_run(args, wrk_executable), args.json)
        return 0

    return run_script(work, args.logs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load benchmark of minor-illusion against a bare-Quart ceiling (wrk).",
    )
    parser.add_argument(
        "--todos", type=positive_int, default=1000, help="todos seeded (%(default)s)"
    )
    parser.add_argument(
        "--duration", type=positive_int, default=10, help="seconds measured per run (%(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=3,
        help="seconds of warm-up per run (%(default)s)",
    )
    parser.add_argument(
        "--connections", type=positive_int, default=32, help="wrk connections (%(default)s)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="Hypercorn workers, both servers (1)"
    )
    parser.add_argument(
        "--worker-class",
        choices=WORKER_CLASSES,
        help="Hypercorn worker class of both servers (default: hypercorn.toml's, as serve)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_int,
        default=10,
        help="wrk's per-request timeout, s (%(default)s)",
    )
    parser.add_argument(
        "--status-counts",
        action="store_true",
        help="count responses per status in Lua (exact, but costs wrk CPU on every response)",
    )
    parser.add_argument(
        "--logs",
        metavar="DIR",
        type=Path,
        help="copy the servers' logs (serve.log, ceiling.log) into DIR at the end",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write all figures as JSON to PATH ('-' for stdout)"
    )
    return parser


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, wrk_executable: str) -> Report:
    """Everything in a scratch folder (database, logs, Hypercorn config), removed at the end."""
    with tempfile.TemporaryDirectory(prefix="minor-illusion-bench-") as scratch:
        workdir = Path(scratch)
        try:
            return _run_in(args, wrk_executable, workdir)
        finally:
            keep_logs(args.logs, {log: workdir / log for log in ("serve.log", "ceiling.log")})


def _run_in(args: argparse.Namespace, wrk_executable: str, workdir: Path) -> Report:
    plan = Plan(args.connections, args.warmup, args.duration)
    wrk = Wrk(wrk_executable, workdir, args.timeout, args.status_counts)
    config = write_hypercorn_config(workdir / "hypercorn.toml", args.worker_class)
    _progress("starting the embedded PostgreSQL")
    with embedded.running(workdir / "data") as database_url:
        _progress(f"migrating and seeding {args.todos} todos")
        seeded = prepare(bench_settings(database_url, workdir / "data"), args.todos)
        ceiling, ceiling_loop = _measure_ceiling(wrk, plan, config, args.workers, workdir)
        report = Report(_context(args, wrk_executable), ceiling)
        service_loop = _measure_service(
            report, wrk, plan, config, args.workers, workdir, database_url, seeded
        )
        report.context["event_loops_seen"] = {"ceiling": ceiling_loop, "service": service_loop}
        return report


def _measure(wrk: Wrk, name: str, load: Load, plan: Plan) -> WrkResult:
    """A warm-up (discarded), then the measured run."""
    if plan.warmup_s:
        _progress(f"{name}: {plan.warmup_s} s warm-up")
        wrk.run(load, connections=plan.connections, seconds=plan.warmup_s)
    _progress(f"{name}: {plan.duration_s} s measured, {plan.connections} connections")
    return wrk.run(load, connections=plan.connections, seconds=plan.duration_s)


def _measure_ceiling(
    wrk: Wrk, plan: Plan, config: Path, workers: int, workdir: Path
) -> tuple[WrkResult, str]:
    port = free_port()
    with running(
        "the ceiling app",
        ceiling_command(config, port, workers),
        env=ceiling_env(),
        cwd=SOURCE_DIR,
        log=workdir / "ceiling.log",
    ) as ceiling:
        url = f"http://{LOOPBACK}:{port}/"
        wait_until_answering(ceiling, url)
        result = _measure(wrk, "ceiling (bare Quart)", Load(url), plan)
        if result.requests == 0:
            raise BenchError(f"the ceiling app completed no request:\n{ceiling.log_tail()}")
        return result, _event_loops(ceiling)


def _measure_service(
    report: Report,
    wrk: Wrk,
    plan: Plan,
    config: Path,
    workers: int,
    workdir: Path,
    database_url: str,
    seeded: Seeded,
) -> str:
    """Fill `report` with the endpoints, the starvation check and the memory check."""
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    with running(
        "minor-illusion serve",
        serve_command(config, port, workers),
        env=serve_env(database_url, workdir / "serve-data"),
        cwd=SOURCE_DIR,
        log=workdir / "serve.log",
    ) as service:
        _progress("starting minor-illusion serve")
        wait_until_answering(service, f"{base}/readyz", timeout_s=120)
        token = log_in(base, seeded.user_name, seeded.password)
        loads = _service_loads(base, token, seeded)
        _preflight(base, token, seeded)
        for name, load in loads.items():
            _settle(service)
            result = _measure(wrk, name, load, plan)
            report.endpoints.append(
                Endpoint(name, result, TARGETS[name], report.ceiling.requests_per_s)
            )
        _settle(service)
        report.starvation = _starvation(
            wrk, plan, loads["GET /todos/{id}"], loads["POST /auth/login"]
        )
        # Memory at rest after the runs: logins still queued when the last wrk stopped would
        # otherwise be counted at their peak (each hash holds ARGON2_MEMORY_KIB while it runs).
        _settle(service)
        everything = [service.pid, *descendants_of(service.pid)]
        report.memory = MemoryCheck([m for pid in everything if (m := memory_of(pid))])
        return _event_loops(service)


def _settle(service: Child) -> None:
    """Let the service finish what the previous run left queued before the next one starts."""
    if not wait_until_idle(serving_processes(service.pid)):
        _progress("the service is still busy after 30 s; measuring anyway")


def _service_loads(base: str, token: str, seeded: Seeded) -> dict[str, Load]:
    """Each endpoint's request; the insertion order is the order they are measured in."""
    auth = f"Authorization: Bearer {token}"
    new_todo = {
        "title": "bench todo",
        "content": "created by the load benchmark",
        "space_id": str(seeded.space_id),
        "done": False,
    }
    credentials = {"username": seeded.user_name, "password": seeded.password}
    patched = tuple(str(todo_id) for todo_id in seeded.todo_ids[:MAX_PATCH_IDS])
    return {
        "GET /todos/{id}": Load(f"{base}/todos/{seeded.todo_ids[0]}", headers=(auth,)),
        "GET /todos (50)": Load(
            f"{base}/todos?space_id={seeded.space_id}&limit=50", headers=(auth,)
        ),
        "POST /todos": Load(
            f"{base}/todos", script=POST_JSON_SCRIPT, script_args=(json.dumps(new_todo), token)
        ),
        "PATCH /todos/{id}": Load(
            f"{base}/", script=PATCH_TODO_SCRIPT, script_args=(token, *patched)
        ),
        "POST /auth/login": Load(
            f"{base}/auth/login", script=POST_JSON_SCRIPT, script_args=(json.dumps(credentials),)
        ),
    }


def _preflight(base: str, token: str, seeded: Seeded) -> None:
    """The reads must work once before they are measured; otherwise the setup is broken."""
    for path in (
        f"/todos/{seeded.todo_ids[0]}",
        f"/todos?space_id={seeded.space_id}&limit=50",
    ):
        status, body = request_json("GET", f"{base}{path}", token=token)
        if status != 200:
            raise BenchError(f"GET {path} answered {status} before any load: {body!r}")


def _starvation(wrk: Wrk, plan: Plan, reads: Load, logins: Load) -> Starvation:
    """GET /todos/{id} alone, then while LOGIN_CLIENTS connections log in continuously."""
    name = "GET /todos/{id} alone"
    alone = _measure(wrk, name, reads, plan)
    login_seconds = plan.duration_s + 2 * LOGIN_LEAD_S
    _progress(f"GET /todos/{{id}} with {LOGIN_CLIENTS} clients logging in: {plan.duration_s} s")
    background = wrk.start(logins, connections=LOGIN_CLIENTS, seconds=login_seconds)
    try:
        time.sleep(LOGIN_LEAD_S)
        with_logins = wrk.run(reads, connections=plan.connections, seconds=plan.duration_s)
        login_result = wrk.finish(background, seconds=login_seconds)
    finally:
        if background.poll() is None:
            background.kill()
            background.communicate()
    return Starvation(alone, with_logins, login_result)


def _event_loops(server: Child) -> str:
    loops = sorted({event_loop_of(pid) for pid in serving_processes(server.pid)})
    return "+".join(loops) or "unknown"


def _context(args: argparse.Namespace, wrk_executable: str) -> dict[str, object]:
    """Where and how the run happened, so figures can be compared over time."""
    commit, dirty = _git_state()
    return {
        "benchmark": "minor-illusion load",
        "commit": commit,
        "dirty": dirty,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version(wrk_executable),
        },
        "settings": {
            "todos": args.todos,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": 1,
            "request_timeout_s": args.timeout,
            "workers": args.workers,
            "worker_class": args.worker_class,
            "login_clients_in_starvation_check": LOGIN_CLIENTS,
            "status_counts": args.status_counts,
            "environment": _relevant_environment(),
        },
    }


def _git_state() -> tuple[str | None, bool | None]:
    """HEAD and whether the work tree differs from it, read without taking git's locks."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, read-only
            cwd=SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607 - read-only
            cwd=SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head, bool(status.strip())


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return None


def _relevant_environment() -> dict[str, str]:
    """Settings passed through to the service from the environment (never the secrets)."""
    names = {name.upper() for name in Settings.model_fields} - {"DATABASE_URL", "SECRET_KEY"}
    return {
        key: value
        for key, value in sorted(os.environ.items())
        if key in names or any(word in key for word in ("WORKER", "UVLOOP", "HYPERCORN"))
    }


def _print(report: Report, json_target: str | None) -> None:
    """The table for people; the JSON for tracking (alone on stdout with `--json -`)."""
    settings = report.context["settings"]
    assert isinstance(settings, dict)
    machine = report.context["machine"]
    assert isinstance(machine, dict)
    title = (
        f"minor-illusion load benchmark: commit {str(report.context['commit'])[:12]}"
        f"{' (dirty)' if report.context['dirty'] else ''}, {machine['cores']} cores, "
        f"{settings['workers']} worker(s) ({settings['worker_class']}), "
        f"{settings['connections']} connections, {settings['duration_s']} s per run after "
        f"{settings['warmup_s']} s warm-up, {settings['todos']} todos"
    )
    table_stream = sys.stderr if json_target == "-" else sys.stdout
    print(f"\n{title}\n\n{render_table(report)}", file=table_stream)
    document = json.dumps(report.as_json(), indent=2) + "\n"
    if json_target == "-":
        sys.stdout.write(document)
    elif json_target is not None:
        Path(json_target).write_text(document)
        print(f"\nJSON written to {json_target}", file=table_stream)


if __name__ == "__main__":
    sys.exit(main())
