"""Child processes of the benchmark: start, wait until they answer, stop, and look inside.

Everything listens on 127.0.0.1 only. Whatever is started is stopped again by the context
manager that started it, also on Ctrl-C or an exception; a process that ignores SIGTERM is
killed, together with any children it left behind (Hypercorn workers). Memory is read from
`/proc/<pid>/status`, so no extra dependency is needed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """Something the benchmark needs broke; the message says what, and the run stops."""


def free_port() -> int:
    """A port nobody listens on right now (the usual small race is acceptable here)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A started process, the name it is reported under, and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    stop_timeout_s: float = 30.0,
) -> Iterator[Child]:
    """Start `argv` with its output in `log`; stop it (and its children) when the block ends."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - argv built by the caller, no shell
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    child = Child(name, process, log)
    try:
        yield child
    finally:
        stop(child, stop_timeout_s)


def stop(child: Child, timeout_s: float) -> None:
    """SIGTERM (Hypercorn then shuts its workers down gracefully); SIGKILL what is left.

    Descendants are noted before the signal, with their start times, so a worker orphaned by
    a dying master is still found, and a pid the kernel has reused meanwhile is left alone.
    """
    descendants = [(pid, _start_time(pid)) for pid in descendants_of(child.pid)]
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
    for pid, started in descendants:
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def wait_until_answering(child: Child, url: str, timeout_s: float = 90.0) -> None:
    """Poll `url` until it answers 200; BenchError with the log if the process dies or stalls."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise BenchError(
                f"{child.name} exited with {child.process.returncode} before answering "
                f"{url}:\n{child.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as error:
            last = f"status {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.2)
    raise BenchError(
        f"{child.name} did not answer {url} in {timeout_s:.0f} s ({last}):\n{child.log_tail()}"
    )


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses).

    Index 0 is the state, 1 the parent pid, 19 the start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else None


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else None


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_of(int(entry.name)) == pid:
            children.append(int(entry.name))
    return sorted(children)


def descendants_of(pid: int) -> list[int]:
    """Children, grandchildren, ...: what must not outlive the process we started."""
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children_of(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def serving_processes(pid: int) -> list[int]:
    """The processes that answer requests: Hypercorn's workers, or the service itself when it
    serves in its own process (one worker)."""
    return hypercorn_workers(pid) or [pid]


def hypercorn_workers(pid: int) -> list[int]:
    """The worker processes of a Hypercorn master: its multiprocessing-spawned children.

    Hypercorn starts workers with the `spawn` context, so each is `python -c "from
    multiprocessing.spawn import spawn_main; ..."`; multiprocessing's resource tracker is a
    child too, and is not a worker.
    """
    return [
        child
        for child in children_of(pid)
        if "spawn_main" in command_line(child) and "resource_tracker" not in command_line(child)
    ]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (0 when it is gone)."""
    fields = _stat_fields(pid)
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(
    pids: Sequence[int], *, busy_share: float = 0.05, window_s: float = 0.5, timeout_s: float = 30
) -> bool:
    """Wait until `pids` together use less than `busy_share` of a core; False on timeout.

    A load run that ends leaves work behind in the server (queued password hashes keep a
    worker busy for seconds after wrk hung up), which would otherwise be charged to the next
    measurement.
    """
    deadline = time.monotonic() + timeout_s
    before = sum(cpu_seconds(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        after = sum(cpu_seconds(pid) for pid in pids)
        if after - before < busy_share * window_s:
            return True
        before = after
    return False


@dataclass(frozen=True)
class Memory:
    """Resident memory of one process: now (VmRSS) and its peak so far (VmHWM), in MiB."""

    pid: int
    rss_mb: float
    peak_rss_mb: float

    def as_json(self) -> dict[str, object]:
        return {"pid": self.pid, "rss_mb": self.rss_mb, "peak_rss_mb": self.peak_rss_mb}


def memory_of(pid: int) -> Memory | None:
    """None when the process is gone or /proc does not say."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, float] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024.0  # the kernel reports kB
    if "VmRSS" not in values:
        return None
    return Memory(pid, round(values["VmRSS"], 1), round(values.get("VmHWM", values["VmRSS"]), 1))


def event_loop_of(pid: int) -> str:
    """`uvloop` if the process has uvloop's extension mapped, else `asyncio`.

    Read from /proc/<pid>/maps, so the report states which loop really ran in each server
    instead of trusting that both got the same configuration.
    """
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "uvloop" if "/uvloop/" in maps else "asyncio"
