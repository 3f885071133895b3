"""A stand-in for a module's structlog logger that keeps what it is told: structlog's own
capture cannot see loggers already cached on first use by earlier tests."""

from __future__ import annotations

from typing import Any


class RecordedLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))
