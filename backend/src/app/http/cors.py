"""Cross-origin access for browser front ends on other origins, off unless CORS_ORIGINS is set.

Off, nothing is registered: no hook runs and no response carries an Access-Control header,
so browsers keep the same-origin policy. On, an allowed origin gets:

- preflights (`OPTIONS` with `Access-Control-Request-Method`) answered 204 here, before
  routing, with the methods and request headers the API uses;
- on every response, `Access-Control-Allow-Origin` naming it and the response headers a
  client needs to read (ETag for If-Match and If-None-Match, Location, Retry-After, X-Request-ID).

Any other origin gets no CORS header at all, so the browser refuses to hand it the response.
Credentials mode stays off: tokens travel in `Authorization`, never in cookies. Responses
carry `Vary: Origin` while CORS is on, since they then differ by origin.
"""

from __future__ import annotations

from quart import Quart, Response, request
from werkzeug.datastructures import Headers

ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE"
ALLOWED_HEADERS = (
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID"
)
EXPOSED_HEADERS = "ETag, Location, Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE_SECONDS = 600
ANY_ORIGIN = "*"


def register_cors(app: Quart, origins: frozenset[str]) -> None:
    """Answer CORS for `origins` (`*` for any); an empty set registers nothing."""
    if not origins:
        return
    any_origin = ANY_ORIGIN in origins
    preflight_headers = {
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
    }

    def allowed(origin: str | None) -> bool:
        return origin is not None and (any_origin or origin in origins)

    @app.before_request
    async def _answer_preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        headers = request.headers
        if _header_value(headers, "access-control-request-method") is None or not allowed(
            _header_value(headers, "origin")
        ):
            return None  # a plain OPTIONS, or a refused origin: routing answers as usual
        return Response(b"", status=204, headers=preflight_headers)

    @app.after_request
    async def _allow_origin(response: Response) -> Response:
        headers = response.headers
        vary = _header_value(headers, "vary")
        if vary is None:
            headers.add("Vary", "Origin")
        elif "origin" not in vary.lower():
            headers["Vary"] = f"{vary}, Origin"
        origin = _header_value(request.headers, "origin")
        if allowed(origin):
            headers.add("Access-Control-Allow-Origin", ANY_ORIGIN if any_origin else str(origin))
            headers.add("Access-Control-Expose-Headers", EXPOSED_HEADERS)
        return response


def _header_value(headers: Headers, lower_name: str) -> str | None:
    """The first value of a header, or None: `headers.get` would raise and catch an exception
    for a missing name, which costs four times this scan of a few headers."""
    for name, value in headers:
        if name.lower() == lower_name:
            return value
    return None
