"""Browser-facing hardening headers on every response, errors and documentation included.

The API only ever answers JSON, so its Content-Security-Policy allows nothing at all: a
response that a browser is somehow tricked into rendering can run no script, load nothing and
cannot be framed. The one HTML page, the Swagger UI at `/docs` (app.http.docs_page), sets its
own policy: scripts, styles and images from this origin only (no inline script or style: the
UI sets its inline styles through the DOM, which a policy does not restrict; images also from
`data:` URLs, which its stylesheet uses for its icons), and requests to this origin for
"Try it out".

`Cache-Control: no-store` is the default because almost every response is one caller's data
and a shared cache must never keep it; a handler that sets its own Cache-Control keeps it.
Strict-Transport-Security is sent only when HSTS_MAX_AGE_SECONDS is set, since it is only
right when every client reaches the service over TLS.

The headers are built once, as the bytes ASGI sends; this is ASGI middleware (see
app.http.access_log for why), so per response it scans a few header names and appends a list.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, HTTPScope
from quart import Quart

from app.http.middleware import ASGIApp, HTTPMiddleware, wrap

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NO_STORE = "no-store"
_CSP = b"content-security-policy"
_CACHE_CONTROL = b"cache-control"


class SecurityHeaders(HTTPMiddleware):
    """ASGI middleware: the hardening headers on every answer. A response that carries its
    own Content-Security-Policy (the docs page) or Cache-Control keeps it."""

    def __init__(self, app: ASGIApp, hsts_max_age_seconds: int = 0) -> None:
        super().__init__(app)
        always = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if hsts_max_age_seconds > 0:
            always.append((b"strict-transport-security", b"max-age=%d" % hsts_max_age_seconds))
        self.always = tuple(always)
        self.api_policy = (_CSP, API_CONTENT_SECURITY_POLICY.encode("ascii"))
        self.no_store = (_CACHE_CONTROL, NO_STORE.encode("ascii"))

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        async def send_hardened(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._hardened(message["headers"])
            await send(message)

        await self.app(scope, receive, send_hardened)

    def _hardened(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        hardened = [*headers, *self.always]
        names = {name.lower() for name, _ in hardened}
        if _CSP not in names:
            hardened.append(self.api_policy)
        if _CACHE_CONTROL not in names:
            hardened.append(self.no_store)
        return hardened


def register_security_headers(app: Quart, hsts_max_age_seconds: int = 0) -> None:
    """Add the headers to every response of `app`."""
    wrap(app, lambda inner: SecurityHeaders(inner, hsts_max_age_seconds))
