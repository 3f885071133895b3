"""The base of the app's ASGI middleware: what wraps every HTTP exchange, as Hypercorn (and
Quart's test client) hand it to the app, before Quart builds a request object.

Middleware costs less than a Quart request hook (no dispatch, no context lookups) and sees
every answer, including those it or other middleware give without reaching a view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from quart import Quart

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class HTTPMiddleware:
    """Passes other scopes (lifespan) straight through and HTTP ones to `handle`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        raise NotImplementedError


def wrap(app: Quart, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
    """Put `middleware` around the app's ASGI entry point, outside what is already there."""
    app.asgi_app = middleware(app.asgi_app)  # type: ignore[method-assign,assignment]
