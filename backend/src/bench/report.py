"""Targets, verdicts, the printed table and the JSON record of one benchmark run.

The benchmark reports and does not judge: a missed target is a FAIL in the table and
`"passed": false` in the JSON, never a non-zero exit. The targets are the issue's:
throughput as a fraction of the bare-Quart ceiling, p99 latency, no failed requests, login
not starving reads, and worker memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.processes import Memory
from bench.wrk import WrkResult, finite

STARVATION_TARGET = 0.70
"""GET /todos/{id} with 4 clients logging in keeps at least this share of its throughput."""

RSS_TARGET_MB = 150.0
"""Each Hypercorn worker of the service stays below this resident size after the runs."""


@dataclass(frozen=True)
class Target:
    """What one endpoint must reach; None means no target on that figure."""

    min_fraction: float | None = None
    max_p99_ms: float | None = None
    max_errors: int | None = 0

    def describe(self) -> str:
        parts = []
        if self.min_fraction is not None:
            parts.append(f">={self.min_fraction:.2f}x")
        if self.max_p99_ms is not None:
            parts.append(f"p99<{self.max_p99_ms:.0f}ms")
        if self.max_errors is not None:
            parts.append("0 err" if self.max_errors == 0 else f"<={self.max_errors} err")
        return ", ".join(parts) or "-"

    def as_json(self) -> dict[str, object]:
        return {
            "min_fraction_of_ceiling": self.min_fraction,
            "max_p99_ms": self.max_p99_ms,
            "max_non_2xx": self.max_errors,
        }


@dataclass(frozen=True)
class Endpoint:
    """One measured endpoint: its wrk result and its target, relative to the ceiling."""

    name: str
    result: WrkResult
    target: Target | None
    ceiling_rps: float

    @property
    def fraction(self) -> float:
        if self.ceiling_rps <= 0:
            return math.nan
        return self.result.requests_per_s / self.ceiling_rps

    @property
    def failures(self) -> list[str]:
        """Which targets were missed, in words; empty when all were met."""
        if self.target is None:
            return []
        if self.result.requests == 0:
            return ["no request completed"]
        missed = []
        if self.target.min_fraction is not None and not self.fraction >= self.target.min_fraction:
            missed.append(f"throughput {self.fraction:.2f}x < {self.target.min_fraction:.2f}x")
        if self.target.max_p99_ms is not None and not self.result.p99_ms < self.target.max_p99_ms:
            missed.append(f"p99 {self.result.p99_ms:.1f} ms >= {self.target.max_p99_ms:.0f} ms")
        if self.target.max_errors is not None and self.result.errors > self.target.max_errors:
            missed.append(f"{self.result.errors} failed requests")
        return missed

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else not self.failures

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            **self.result.as_json(),
            "errors": self.result.errors,
            "fraction_of_ceiling": finite(self.fraction),
            "target": self.target.as_json() if self.target else None,
            "passed": self.passed,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class Starvation:
    """GET /todos/{id} alone, then with 4 clients logging in continuously alongside."""

    alone: WrkResult
    with_logins: WrkResult
    logins: WrkResult

    @property
    def ratio(self) -> float:
        if self.alone.requests_per_s <= 0:
            return math.nan
        return self.with_logins.requests_per_s / self.alone.requests_per_s

    @property
    def passed(self) -> bool:
        return self.ratio >= STARVATION_TARGET

    def as_json(self) -> dict[str, object]:
        return {
            "ratio": finite(self.ratio),
            "target_min_ratio": STARVATION_TARGET,
            "passed": self.passed,
            "get_todo_alone": self.alone.as_json(),
            "get_todo_with_logins": self.with_logins.as_json(),
            "logins_alongside": self.logins.as_json(),
        }


@dataclass(frozen=True)
class MemoryCheck:
    """Every process of the service after the runs: with one worker that is one process; with
    more, the supervising process, its workers and multiprocessing's helper. The target is
    on their sum, what the machine gives the service."""

    processes: list[Memory]

    @property
    def total_mb(self) -> float:
        return sum(process.rss_mb for process in self.processes) if self.processes else math.nan

    @property
    def passed(self) -> bool:
        return bool(self.processes) and self.total_mb < RSS_TARGET_MB

    def as_json(self) -> dict[str, object]:
        return {
            "processes": [process.as_json() for process in self.processes],
            "total_rss_mb": finite(self.total_mb),
            "target_max_total_rss_mb": RSS_TARGET_MB,
            "passed": self.passed,
        }


@dataclass
class Report:
    """Everything one run measured, plus where and how it ran."""

    context: dict[str, object]
    ceiling: WrkResult
    endpoints: list[Endpoint] = field(default_factory=list)
    starvation: Starvation | None = None
    memory: MemoryCheck | None = None

    @property
    def all_passed(self) -> bool:
        verdicts = [endpoint.passed for endpoint in self.endpoints]
        verdicts += [check.passed for check in (self.starvation, self.memory) if check]
        return all(verdict is not False for verdict in verdicts)

    def as_json(self) -> dict[str, object]:
        return {
            **self.context,
            "ceiling": self.ceiling.as_json(),
            "endpoints": [endpoint.as_json() for endpoint in self.endpoints],
            "login_starvation": self.starvation.as_json() if self.starvation else None,
            "memory": self.memory.as_json() if self.memory else None,
            "all_targets_met": self.all_passed,
        }


def _verdict(passed: bool | None) -> str:
    return "-" if passed is None else "PASS" if passed else "FAIL"


def render_table(report: Report) -> str:
    """The human-readable summary: one row per endpoint, then the two whole-service checks."""
    header = ("endpoint", "req/s", "x ceiling", "p50 ms", "p99 ms", "non-2xx", "target", "result")
    rows: list[tuple[str, ...]] = [
        (
            "ceiling (bare Quart)",
            f"{report.ceiling.requests_per_s:.0f}",
            "1.00",
            _ms(report.ceiling.p50_ms),
            _ms(report.ceiling.p99_ms),
            _errors_cell(report.ceiling),
            "-",
            "-",
        )
    ]
    for endpoint in report.endpoints:
        rows.append(
            (
                endpoint.name,
                f"{endpoint.result.requests_per_s:.0f}",
                f"{endpoint.fraction:.2f}",
                _ms(endpoint.result.p50_ms),
                _ms(endpoint.result.p99_ms),
                _errors_cell(endpoint.result),
                endpoint.target.describe() if endpoint.target else "-",
                _verdict(endpoint.passed),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {1, 2, 3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(header), line(tuple("-" * width for width in widths))]
    lines += [line(row) for row in rows]
    lines.append("")
    if report.starvation is not None:
        starvation = report.starvation
        lines.append(
            f"login starvation: GET /todos/{{id}} {starvation.alone.requests_per_s:.0f} req/s "
            f"alone, {starvation.with_logins.requests_per_s:.0f} req/s with 4 clients logging "
            f"in ({starvation.logins.requests_per_s:.1f} logins/s, "
            f"{starvation.logins.errors} failed) -> ratio {starvation.ratio:.2f}  "
            f"target >={STARVATION_TARGET:.2f}  {_verdict(starvation.passed)}"
        )
    if report.memory is not None:
        memory = report.memory
        processes = ", ".join(
            f"pid {p.pid}: {p.rss_mb:.1f} MB (peak {p.peak_rss_mb:.1f} MB)"
            for p in memory.processes
        )
        lines.append(
            f"memory: service RSS {memory.total_mb:.1f} MB in all ({processes or 'no process'})  "
            f"target <{RSS_TARGET_MB:.0f} MB  {_verdict(memory.passed)}"
        )
    failures = [f"{e.name}: {'; '.join(e.failures)}" for e in report.endpoints if e.failures]
    if failures:
        lines += ["", "missed:", *(f"  {failure}" for failure in failures)]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _errors_cell(result: WrkResult) -> str:
    """Failed responses, with socket errors (timeouts, resets) added when there were any."""
    sockets = sum(result.socket_errors.values())
    if not sockets:
        return str(result.failed_responses)
    return f"{result.failed_responses}+{sockets} sock"
