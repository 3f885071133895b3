"""One access line per request, and the request id that ties its log lines together.

The id comes from `X-Request-ID` when a proxy set a sane one, otherwise it is generated; it is
echoed back so a client can quote it when reporting a problem.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from quart import Quart, Response, g, request

from app.security_headers import header_value

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_HEADER_LOWER = REQUEST_ID_HEADER.lower()
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = structlog.get_logger("access")


def register_access_log(app: Quart) -> None:
    @app.before_request
    async def _start() -> None:
        # A scan, not `headers.get`, which raises and catches an exception when it is absent.
        incoming = header_value(request.headers, REQUEST_ID_HEADER_LOWER) or ""
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.access = (request_id, time.perf_counter())
        structlog.contextvars.bind_contextvars(request_id=request_id)

    @app.after_request
    async def _finish(response: Response) -> Response:
        request_id, started = g.get("access") or (uuid.uuid4().hex, None)
        response.headers[REQUEST_ID_HEADER] = request_id
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=round(duration_ms, 2),
        )
        structlog.contextvars.clear_contextvars()
        return response
