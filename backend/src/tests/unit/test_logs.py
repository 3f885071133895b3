"""The text log format: one line per event, values readable, tracebacks after the line."""

from __future__ import annotations

from app.logs import render_line


def test_a_line_has_time_level_event_and_fields_in_order() -> None:
    line = render_line(
        None,
        "info",
        {
            "timestamp": "2026-01-02T03:04:05Z",
            "level": "info",
            "event": "request",
            "method": "GET",
            "status": 200,
            "duration_ms": 1.5,
            "note": None,
        },
    )

    assert line == (
        "2026-01-02T03:04:05Z [info] request method=GET status=200 duration_ms=1.5 note=None"
    )


def test_an_exception_follows_its_line() -> None:
    line = render_line(
        None,
        "error",
        {"timestamp": "t", "level": "error", "event": "boom", "exception": "Traceback ..."},
    )

    assert line == "t [error] boom\nTraceback ..."
