"""Browser-facing hardening headers on every response, errors and documentation included.

The API only ever answers JSON, so its Content-Security-Policy allows nothing at all: a
response that a browser is somehow tricked into rendering can run no script, load nothing and
cannot be framed. The one HTML page, the Swagger UI at `/docs`, gets a policy that allows
exactly its assets: the two CDN files quart-schema links, its inline start-up script by hash
(computed from the page itself, so it follows whatever the template renders), and requests to
this origin for "Try it out".

`Cache-Control: no-store` is the default because almost every response is one caller's data
and a shared cache must never keep it; a handler that sets its own Cache-Control keeps it.
Strict-Transport-Security is sent only when HSTS_MAX_AGE_SECONDS is set, since it is only
right when every client reaches the service over TLS.

The headers are built once, as the bytes ASGI sends; this is ASGI middleware (see
app.http.access_log for why), so per response it scans a few header names and appends a list.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import cast
from urllib.parse import urlsplit

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, HTTPScope
from quart import Quart, Response

from app.http.middleware import ASGIApp, HTTPMiddleware, wrap

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NO_STORE = "no-store"
DOCS_ENDPOINT = "swagger_ui"
"""quart-schema's endpoint for the Swagger UI page."""

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
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
    """Add the headers to every response of `app`; call after QuartSchema (the docs page's
    policy names its asset URLs)."""
    _give_the_docs_page_its_policy(app)
    wrap(app, lambda inner: SecurityHeaders(inner, hsts_max_age_seconds))


def _give_the_docs_page_its_policy(app: Quart) -> None:
    view = app.view_functions.get(DOCS_ENDPOINT)
    if view is None:
        return
    template = _docs_policy_template(app)

    @functools.wraps(view)  # keeps quart-schema's marks: the page stays out of the OpenAPI
    async def docs_page() -> Response:
        page = await cast(Callable[[], Awaitable[str]], view)()  # quart-schema renders it
        policy = template.format(script_hashes=" ".join(_script_hashes(page.encode())))
        return Response(
            page,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": policy},
        )

    app.view_functions[DOCS_ENDPOINT] = docs_page


def _docs_policy_template(app: Quart) -> str:
    """The Swagger UI page's policy, with `{script_hashes}` left for its inline script."""
    script = _source(app.config.get("QUART_SCHEMA_SWAGGER_JS_URL"))
    style = _source(app.config.get("QUART_SCHEMA_SWAGGER_CSS_URL"))
    return (
        "default-src 'none'; "
        f"script-src {script} {{script_hashes}}; "
        # Swagger UI styles some elements inline; styles cannot run code.
        f"style-src {style} 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _source(url: object) -> str:
    """A CSP source for one asset URL: the URL itself (a path-exact source), or `'self'` for a
    relative one."""
    if not isinstance(url, str) or not url:
        return "'self'"
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "'self'"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _script_hashes(html: bytes) -> list[str]:
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode("ascii") + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
