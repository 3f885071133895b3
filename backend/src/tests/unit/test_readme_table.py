"""The README's benchmark table is written from bench.load's JSON, not by hand."""

from __future__ import annotations

from typing import Any

import pytest

from bench.readme_table import BEGIN, END, TIMES, render, replace_between_markers

NAMES = ("GET /todos/{id}", "GET /todos (50)", "POST /todos", "PATCH /todos/{id}")


def run(ceiling: float, fraction: float, p99: float, rss: float) -> dict[str, Any]:
    endpoints: list[dict[str, Any]] = [
        {
            "name": name,
            "requests_per_s": ceiling * fraction,
            "fraction_of_ceiling": fraction,
            "p99_ms": p99,
            "errors": 0,
            "target": {"min_fraction_of_ceiling": 0.3, "max_p99_ms": 40.0},
        }
        for name in NAMES
    ]
    endpoints.append(
        {"name": "POST /auth/login", "requests_per_s": 80.0, "p99_ms": 600.0, "errors": 0}
    )
    return {
        "date": "2026-12-07T02:00:00+00:00",
        "commit": "0123456789abcdef",
        "ceiling": {"requests_per_s": ceiling},
        "endpoints": endpoints,
        "login_starvation": {"ratio": 0.9, "target_min_ratio": 0.7},
        "memory": {"total_rss_mb": rss, "target_max_total_rss_mb": 150.0},
    }


def test_each_cell_spans_the_runs() -> None:
    table = render([run(1000, 0.5, 20, 130), run(1200, 0.55, 25, 130.2)])

    assert "| ceiling (bare Quart route) | 1,000 to 1,200 req/s |  |" in table
    fractions = f"0.50{TIMES} to 0.55{TIMES} of the ceiling"
    assert f"| `GET /todos/{{id}}` | {fractions}, p99 20 to 25 ms |" in table
    assert "| service RSS after the run (all its processes) | 130 MB | < 150 MB |" in table
    assert "2 runs on 2026-12-07, commit 0123456789ab." in table


def test_the_table_replaces_only_what_stands_between_the_markers() -> None:
    document = f"before\n{BEGIN}\nold table\n{END}\nafter\n"

    updated = replace_between_markers(document, "new table\n")

    assert updated == f"before\n{BEGIN}\nnew table\n{END}\nafter\n"


def test_a_document_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers here", "table\n")
