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

The headers are built once; per response the hook adds a prepared tuple and checks one name.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from quart import Quart, Response, request
from werkzeug.datastructures import Headers

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NO_STORE = "no-store"
DOCS_ENDPOINT = "swagger_ui"
"""quart-schema's endpoint for the Swagger UI page."""

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def register_security_headers(app: Quart, hsts_max_age_seconds: int = 0) -> None:
    """Add the headers to every response of `app`; call after QuartSchema (for the docs'
    asset URLs)."""
    always = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]
    if hsts_max_age_seconds > 0:
        always.append(("Strict-Transport-Security", f"max-age={hsts_max_age_seconds}"))
    api_headers = (*always, ("Content-Security-Policy", API_CONTENT_SECURITY_POLICY))
    api_headers_no_store = (*api_headers, ("Cache-Control", NO_STORE))
    docs_headers = tuple(always)
    docs_policy = _docs_policy_template(app)

    @app.after_request
    async def _add_security_headers(response: Response) -> Response:
        headers = response.headers
        if request.endpoint != DOCS_ENDPOINT:
            has_own = header_value(headers, "cache-control") is not None
            headers.extend(api_headers if has_own else api_headers_no_store)
            return response
        headers.extend(docs_headers)
        headers["Content-Security-Policy"] = docs_policy.format(
            script_hashes=" ".join(_script_hashes(await response.get_data(as_text=False)))
        )
        if header_value(headers, "cache-control") is None:
            headers["Cache-Control"] = NO_STORE
        return response


def header_value(headers: Headers, lower_name: str) -> str | None:
    """The first value of a header, or None: `headers.get` would raise and catch an exception
    for a missing name, which costs four times this scan of a few headers."""
    for name, value in headers:
        if name.lower() == lower_name:
            return value
    return None


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
