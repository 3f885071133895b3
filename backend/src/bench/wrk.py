"""Driving wrk and reading its report.

wrk (Debian package `wrk`) is the load generator because it is a small C program: on a
two-core machine the client shares the CPU with the server, and a Python client would
measure itself. Every run uses one thread (`-t1`) and `--latency`; requests that need a body
or a changing path come from the Lua scripts in `bench/lua/`.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import BenchError

LUA_DIR = Path(__file__).resolve().parent / "lua"
POST_JSON_SCRIPT = LUA_DIR / "post_json.lua"
PATCH_TODO_SCRIPT = LUA_DIR / "patch_todo.lua"
STATUS_COUNTS_SCRIPT = LUA_DIR / "statuses.lua"

INSTALL_HINT = "install wrk: apt-get install wrk"

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"(\d+(?:\.\d+)?)(us|ms|s|m|h)"
_PERCENTILE_LINE = re.compile(rf"^\s+(\d+(?:\.\d+)?)%\s+{_TIME}\s*$", re.MULTILINE)
_TOTALS_LINE = re.compile(rf"^\s*(\d+) requests in {_TIME}", re.MULTILINE)
_RATE_LINE = re.compile(r"^Requests/sec:\s+(\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_NON_2XX_LINE = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_SOCKET_ERRORS_LINE = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)
_STATUS_LINE = re.compile(r"^bench-status (\d+) (\d+)\s*$", re.MULTILINE)


class WrkMissing(RuntimeError):
    """No `wrk` on PATH; the message says how to install it."""


class WrkFailed(BenchError):
    """wrk exited with an error, ran too long, or printed a report that could not be read."""


def find_wrk() -> str:
    """The wrk executable, or WrkMissing with the install command."""
    executable = shutil.which("wrk")
    if executable is None:
        raise WrkMissing(f"wrk is not on PATH: {INSTALL_HINT}")
    return executable


def wrk_version(executable: str) -> str:
    """wrk's first output line (`wrk debian/4.1.0-3 [epoll] ...`), for the JSON record."""
    completed = subprocess.run(  # noqa: S603 - a fixed argv, no shell
        [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


def time_to_ms(value: str, unit: str) -> float:
    """wrk prints times as `512.00us`, `3.12ms`, `1.20s` (also `m` and `h`): milliseconds."""
    return float(value) * _TIME_UNITS_MS[unit]


@dataclass(frozen=True)
class WrkResult:
    """What one measured wrk run reported."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    """Latency percentiles from `--latency`, keyed "50", "75", "90", "99"."""
    non_2xx: int
    """wrk's "Non-2xx or 3xx responses" (it counts statuses of 400 and above)."""
    socket_errors: dict[str, int] = field(default_factory=dict)
    """connect/read/write/timeout; timeouts are requests that got no answer in time."""
    statuses: dict[int, int] = field(default_factory=dict)
    """Responses per status, only with the `--status-counts` Lua hook."""

    @property
    def p50_ms(self) -> float:
        return self.latency_ms.get("50", float("nan"))

    @property
    def p99_ms(self) -> float:
        return self.latency_ms.get("99", float("nan"))

    @property
    def failed_responses(self) -> int:
        """Non-2xx answers: exact when statuses were counted, else wrk's own (>= 400) count."""
        if self.statuses:
            return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)
        return self.non_2xx

    @property
    def errors(self) -> int:
        """Everything that was not a 2xx answer: failed responses plus socket errors."""
        return self.failed_responses + sum(self.socket_errors.values())

    def as_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "requests_per_s": self.requests_per_s,
            "latency_ms": self.latency_ms,
            "p50_ms": finite(self.p50_ms),
            "p99_ms": finite(self.p99_ms),
            "non_2xx": self.failed_responses,
            "socket_errors": self.socket_errors,
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
        }


def finite(value: float, digits: int = 4) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if math.isnan(value) else round(value, digits)


def parse_report(output: str) -> WrkResult:
    """Read wrk's text report; WrkFailed when the essential lines are missing."""
    rate = _RATE_LINE.search(output)
    totals = _TOTALS_LINE.search(output)
    if rate is None or totals is None:
        raise WrkFailed(f"could not read wrk's report:\n{output.strip()}")
    latency = {
        _percentile_key(match.group(1)): time_to_ms(match.group(2), match.group(3))
        for match in _PERCENTILE_LINE.finditer(output)
    }
    requests = int(totals.group(1))
    if requests == 0:
        latency = {}  # wrk prints 0.00us percentiles when nothing completed: not a latency
    elif "50" not in latency or "99" not in latency:
        raise WrkFailed(f"wrk's report has no latency distribution (--latency):\n{output}")
    non_2xx = _NON_2XX_LINE.search(output)
    socket = _SOCKET_ERRORS_LINE.search(output)
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if socket is not None:
        socket_errors = dict(zip(socket_errors, map(int, socket.groups()), strict=True))
    statuses: dict[int, int] = {}
    for match in _STATUS_LINE.finditer(output):
        status, count = int(match.group(1)), int(match.group(2))
        statuses[status] = statuses.get(status, 0) + count
    return WrkResult(
        requests=requests,
        duration_s=time_to_ms(totals.group(2), totals.group(3)) / 1000.0,
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx is not None else 0,
        socket_errors=socket_errors,
        statuses=statuses,
    )


def _percentile_key(text: str) -> str:
    """`50` and `50.000` both name the median."""
    number = float(text)
    return str(int(number)) if number.is_integer() else str(number)


@dataclass(frozen=True)
class Load:
    """What to send: the URL, and either plain headers or a Lua script with its arguments."""

    url: str
    headers: tuple[str, ...] = ()
    script: Path | None = None
    script_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wrk:
    """Runs wrk with the settings every measurement shares."""

    executable: str
    workdir: Path
    """Where composed Lua scripts go (a temporary folder of the run)."""
    request_timeout_s: float = 10.0
    status_counts: bool = False

    def command(self, load: Load, *, connections: int, seconds: float) -> list[str]:
        argv = [
            self.executable,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(self.request_timeout_s))}s",
            "--latency",
        ]
        for header in load.headers:
            argv += ["-H", header]
        script = self._script(load.script)
        if script is not None:
            argv += ["-s", str(script)]
        argv.append(load.url)
        if load.script_args:
            argv += ["--", *load.script_args]
        return argv

    def run(self, load: Load, *, connections: int, seconds: float) -> WrkResult:
        """One bounded run; WrkFailed if wrk fails or overruns its duration by far."""
        argv = self.command(load, connections=connections, seconds=seconds)
        try:
            completed = subprocess.run(  # noqa: S603 - argv built above, no shell
                argv,
                capture_output=True,
                text=True,
                timeout=seconds + self.request_timeout_s + 30,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise WrkFailed(f"wrk did not finish in time: {' '.join(argv[:6])} ...") from error
        return self._result(completed.returncode, completed.stdout, completed.stderr)

    def start(self, load: Load, *, connections: int, seconds: float) -> subprocess.Popen[str]:
        """A run in the background, for load that must overlap another measurement."""
        argv = self.command(load, connections=connections, seconds=seconds)
        return subprocess.Popen(  # noqa: S603 - argv built above, no shell
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, process: subprocess.Popen[str], *, seconds: float) -> WrkResult:
        """Wait for a background run (killing it if it overruns) and read its report."""
        try:
            stdout, stderr = process.communicate(timeout=seconds + self.request_timeout_s + 30)
        except subprocess.TimeoutExpired as error:
            process.kill()
            process.communicate()
            raise WrkFailed("the background wrk run did not finish in time") from error
        return self._result(process.returncode, stdout, stderr)

    def _result(self, returncode: int, stdout: str, stderr: str) -> WrkResult:
        if returncode != 0:
            raise WrkFailed(f"wrk exited with {returncode}: {(stderr or stdout).strip()}")
        return parse_report(stdout)

    def _script(self, script: Path | None) -> Path | None:
        """The endpoint's script, with the status-counting hook appended when asked for."""
        if not self.status_counts:
            return script
        if script is None:
            return STATUS_COUNTS_SCRIPT
        composed = self.workdir / f"{script.stem}+statuses.lua"
        composed.write_text(f"{script.read_text()}\n{STATUS_COUNTS_SCRIPT.read_text()}")
        return composed
