"""`python -m bench.events`: live event streams under load, self-contained.

From backend/src (`backend/dev python -m bench.events`):

1. starts an embedded PostgreSQL, migrates it and seeds a user, an organization and a space;
   starts `minor-illusion serve` (one worker) on it;
2. measures the p99 of GET /todos/{id}, the write throughput (POST /todos from `--writers`
   keep-alive connections) and the memory with no stream open;
3. for each stream count of `--streams` (100 and 1,000 by default): opens that many streams
   on the organization (`--tokens` access tokens of the user, so as many channels), then
   - writes one todo every 1/`--rate` s for `--duration` s and measures, for every event on
     every stream, the time from the writer's acknowledged commit to its delivery (p50, p99);
   - with the streams open and idle, reads the service's resident memory and measures the
     p99 of GET /todos/{id}, against the same before any stream;
   - measures the write throughput with the streams open (each write goes to every one);
4. prints a table; `--json PATH` writes the figures.

Delivery is timed from the moment the writer has the 201 (the commit happened before it), so
it does not count the write's own round trip. Every stream must see every todo; a missing
event is reported, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.db import embedded
from app.settings import SOURCE_DIR
from bench.arguments import positive_int
from bench.connection import Connection
from bench.processes import LOOPBACK, free_port, memory_of, running, wait_until_answering
from bench.script import keep_logs, run_script
from bench.seed import Seeded, bench_settings, prepare
from bench.servers import log_in, serve_command, serve_env, write_hypercorn_config


@dataclass
class Latencies:
    streams: int
    seconds: list[float] = field(default_factory=list)
    missing: int = 0

    def percentile(self, share: float) -> float:
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Phase:
    streams: int
    writes_per_s: float
    get_p99_ms: float
    rss_mb: float
    latency: Latencies | None = None

    def as_json(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "streams": self.streams,
            "writes_per_s": round(self.writes_per_s, 1),
            "get_todo_p99_ms": round(self.get_p99_ms, 2),
            "rss_mb": round(self.rss_mb, 1),
        }
        if self.latency is not None:
            figures.update(
                delivery_p50_ms=round(self.latency.percentile(0.5) * 1000, 1),
                delivery_p99_ms=round(self.latency.percentile(0.99) * 1000, 1),
                deliveries=len(self.latency.seconds),
                missing=self.latency.missing,
            )
        return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--streams", type=positive_int, nargs="+", default=[100, 1000])
    parser.add_argument("--tokens", type=positive_int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="todos written per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--writers", type=positive_int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path)
    args = parser.parse_args(argv)
    return run_script(lambda: _run(args), args.logs)


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="minor-illusion-events-") as scratch:
        workdir = Path(scratch)
        try:
            phases = _run_in(args, workdir)
        finally:
            keep_logs(args.logs, {"serve.log": workdir / "serve.log"})
    _print(phases)
    if args.json is not None:
        args.json.write_text(json.dumps([phase.as_json() for phase in phases], indent=2) + "\n")
    return 0


def _run_in(args: argparse.Namespace, workdir: Path) -> list[Phase]:
    _progress("starting the embedded PostgreSQL")
    with embedded.running(workdir / "data") as database_url:
        seeded = prepare(bench_settings(database_url, workdir / "data"), 1)
        port = free_port()
        env = serve_env(database_url, workdir / "serve-data")
        env["EVENTS_MAX_STREAMS_PER_USER"] = str(2 * sum(args.streams))
        env.setdefault("LOG_LEVEL", "WARNING")
        config = write_hypercorn_config(workdir / "hypercorn.toml", "uvloop")
        command = serve_command(config, port, 1)
        with running(
            "minor-illusion serve", command, env=env, cwd=SOURCE_DIR, log=workdir / "serve.log"
        ) as service:
            base = f"http://{LOOPBACK}:{port}"
            wait_until_answering(service, f"{base}/readyz", timeout_s=120)
            tokens = [log_in(base, seeded.user_name, seeded.password) for _ in range(args.tokens)]
            return asyncio.run(_phases(args, port, service.pid, seeded, tokens))


async def _phases(
    args: argparse.Namespace, port: int, pid: int, seeded: Seeded, tokens: list[str]
) -> list[Phase]:
    phases = [await _measure(args, port, pid, seeded, tokens, None)]
    for count in args.streams:
        # From where the feed stands now: what the streams measure is delivery, not each
        # one catching up on the throughput runs' thousands of todos.
        since = await _caught_up_token(port, seeded, tokens[0])
        _progress(f"opening {count} streams")
        streams = [
            Stream(port, seeded, tokens[index % len(tokens)], since) for index in range(count)
        ]
        await asyncio.gather(*(stream.open() for stream in streams))
        try:
            phases.append(await _measure(args, port, pid, seeded, tokens, streams))
        finally:
            for stream in streams:
                stream.close()
        await asyncio.sleep(1)
    return phases


async def _measure(
    args: argparse.Namespace,
    port: int,
    pid: int,
    seeded: Seeded,
    tokens: list[str],
    streams: list[Stream] | None,
) -> Phase:
    count = len(streams or [])
    latency = None
    await asyncio.sleep(6)  # idle: the streams open, nothing written
    idle = memory_of(pid)
    _progress(f"{count} idle streams: GET p99")
    get_p99 = await _get_p99(port, seeded, tokens[0])
    if streams:
        _progress(f"{count} streams: delivery of {args.rate:g} todos/s for {args.duration:g} s")
        latency = await _delivery(args, port, seeded, tokens[0], streams)
    _progress(f"{count} streams: write throughput")
    writes = await _write_throughput(args, port, seeded, tokens[0])
    return Phase(count, writes, get_p99 * 1000, idle.rss_mb if idle else float("nan"), latency)


async def _caught_up_token(port: int, seeded: Seeded, token: str) -> str:
    """The feed's token after its snapshot: streams opened from it skip the snapshot."""
    connection = Connection(LOOPBACK, port, {"Authorization": f"Bearer {token}"})
    path = f"/organizations/{seeded.organization_id}/changes?limit=1000"
    while True:
        page = (await connection.request("GET", path)).json()
        if not page["more"]:
            connection.close()
            return str(page["next"])
        path = f"/organizations/{seeded.organization_id}/changes?limit=1000&since={page['next']}"


async def _delivery(
    args: argparse.Namespace, port: int, seeded: Seeded, token: str, streams: list[Stream]
) -> Latencies:
    connection = Connection(LOOPBACK, port, {"Authorization": f"Bearer {token}"})
    committed: dict[str, float] = {}
    interval = 1 / args.rate
    deadline = time.monotonic() + args.duration
    index = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        body = {"title": f"event {index}", "space_id": str(seeded.space_id)}
        reply = await connection.request("POST", "/todos", body)
        committed[reply.json()["id"]] = time.monotonic()
        index += 1
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    await asyncio.sleep(2)  # the last events' way to every stream
    connection.close()
    latencies = Latencies(len(streams))
    for stream in streams:
        for todo_id, at in committed.items():
            seen = stream.arrivals.get(todo_id)
            if seen is None:
                latencies.missing += 1
            else:
                latencies.seconds.append(max(0.0, seen - at))
    return latencies


async def _write_throughput(
    args: argparse.Namespace, port: int, seeded: Seeded, token: str, seconds: float = 5.0
) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal done
        connection = Connection(LOOPBACK, port, {"Authorization": f"Bearer {token}"})
        body = {"title": "throughput", "space_id": str(seeded.space_id)}
        while time.monotonic() < deadline:
            reply = await connection.request("POST", "/todos", body)
            if reply.status == 201:
                done += 1
        connection.close()

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(args.writers)))
    return done / (time.monotonic() - started)


async def _get_p99(port: int, seeded: Seeded, token: str, seconds: float = 5.0) -> float:
    """GET /todos/{id} from 8 connections: the p99 of other requests beside the streams."""
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    path = f"/todos/{seeded.todo_ids[0]}"

    async def reader() -> None:
        connection = Connection(LOOPBACK, port, {"Authorization": f"Bearer {token}"})
        while time.monotonic() < deadline:
            started = time.monotonic()
            await connection.request("GET", path)
            timings.append(time.monotonic() - started)
        connection.close()

    await asyncio.gather(*(reader() for _ in range(8)))
    return statistics.quantiles(timings, n=100)[98]


class Stream:
    """One event stream, read as a browser's EventSource would: when each todo arrived."""

    def __init__(self, port: int, seeded: Seeded, token: str, since: str) -> None:
        self.port = port
        self.path = f"/organizations/{seeded.organization_id}/events"
        self.headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": since}
        self.arrivals: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
        self._writer = writer
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n{head}\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the stream was refused: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Chunked transfer encoding, then server-sent events inside it."""
        buffer = b""
        while size_line := await reader.readline():
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            *events, buffer = buffer.split(b"\n\n")
            now = time.monotonic()
            for event in events:
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        change = json.loads(line[6:])
                        if change.get("kind") == "todo":
                            self.arrivals.setdefault(change["id"], now)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()


def _print(phases: list[Phase]) -> None:
    base = phases[0]
    print(
        "streams  delivery p50  delivery p99  missing  writes/s (ratio)  GET p99   idle RSS (added)"
    )
    for phase in phases:
        latency = phase.latency
        p50 = f"{latency.percentile(0.5) * 1000:8.1f} ms" if latency else "         -"
        p99 = f"{latency.percentile(0.99) * 1000:8.1f} ms" if latency else "         -"
        missing = f"{latency.missing:7d}" if latency else "      -"
        ratio = phase.writes_per_s / base.writes_per_s if base.writes_per_s else float("nan")
        writes = f"{phase.writes_per_s:7.1f} ({ratio:4.2f})"
        added = phase.rss_mb - base.rss_mb
        memory = f"{phase.rss_mb:6.1f} MB (+{added:.1f})"
        print(
            f"{phase.streams:7d}  {p50}   {p99}   {missing}  {writes}"
            f"   {phase.get_p99_ms:6.1f} ms  {memory}"
        )


if __name__ == "__main__":
    sys.exit(main())
