"""One access line per request, and the request id that ties its log lines together.

The id comes from `X-Request-ID` when a proxy set a sane one, otherwise it is generated; it is
echoed back so a client can quote it when reporting a problem.

This is ASGI middleware around the whole app rather than a pair of Quart request hooks: it
reads the raw header list once, and a hook costs a dispatch and a few context lookups each,
on every request. It also sees what the hooks could not: the 413s of the body limits and the
answer's real end.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar

import structlog
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, HTTPScope
from quart import Quart

from app.http.middleware import HTTPMiddleware, wrap

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode("ascii")
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

CLIENT_CLOSED_REQUEST = 499
"""The access line's status when no answer was sent because the client hung up (as nginx
logs it); never sent to anyone."""

request_started: ContextVar[float] = ContextVar("request_started")
"""When the current request reached the app (`time.perf_counter`): /metrics times requests
with the same clock as the access line."""

log = structlog.get_logger("access")


class AccessLog(HTTPMiddleware):
    """ASGI middleware: a request id in and out, bound to every log line of the request, and
    one access line when the answer is done."""

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        started = time.perf_counter()
        request_started.set(started)
        request_id = _request_id(scope["headers"])
        echoed = (_REQUEST_ID_NAME, request_id)
        status = CLIENT_CLOSED_REQUEST  # the client went away before any answer

        async def send_with_id(message: ASGISendEvent) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], echoed]
            await send(message)

        # Bound in this task's context, which the app's tasks copy when they start.
        structlog.contextvars.bind_contextvars(request_id=request_id.decode("ascii"))
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if status == CLIENT_CLOSED_REQUEST:
                status = 500  # what the server answers for an exception that escaped the app
            raise
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == _REQUEST_ID_NAME:  # ASGI header names are lower-case
            if _SANE_REQUEST_ID.fullmatch(value):
                return value
            break
    return os.urandom(16).hex().encode("ascii")


def register_access_log(app: Quart) -> None:
    """Wrap the app's ASGI entry point; call last, so that the line covers every answer."""
    wrap(app, AccessLog)
