"""How many requests other than password work the service is answering right now: lets
deliberately slow hashing use the CPU that no other request needs (app.security).

Counted per worker process, on the event loop's thread; the hashing threads only read it.
The routes whose cost is a password hash (login, register) are marked with `password_work`
and not counted, for their whole life: a login still being parsed or answered must not make
the other logins' hashes wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope
from quart import Quart

from app.http.middleware import ASGIApp, HTTPMiddleware, wrap

F = TypeVar("F", bound=Callable[..., object])

PASSWORD_WORK = "password_work"  # noqa: S105 - an attribute name
"""The attribute that marks a view function; decorators above it copy it with `wraps`."""


class Traffic:
    def __init__(self) -> None:
        self.in_flight = 0
        """Requests in flight, password work aside."""

    def others_waiting(self) -> bool:
        return self.in_flight > 0


traffic = Traffic()


def password_work(handler: F) -> F:
    """Marks a route whose cost is a password hash: its requests are not counted as traffic
    that hashing would take CPU from."""
    setattr(handler, PASSWORD_WORK, True)
    return handler


class CountRequests(HTTPMiddleware):
    """ASGI middleware: keeps `traffic.in_flight`."""

    def __init__(self, app: ASGIApp, quart_app: Quart) -> None:
        super().__init__(app)
        self.quart_app = quart_app
        self._password_paths: frozenset[str] | None = None

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["path"] in self._uncounted():
            await self.app(scope, receive, send)
            return
        traffic.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            traffic.in_flight -= 1

    def _uncounted(self) -> frozenset[str]:
        """The paths of the marked routes, found at the first request (every route exists
        by then)."""
        if self._password_paths is None:
            views = self.quart_app.view_functions
            self._password_paths = frozenset(
                rule.rule
                for rule in self.quart_app.url_map.iter_rules()
                if getattr(views.get(rule.endpoint), PASSWORD_WORK, False)
            )
        return self._password_paths


def register_traffic_count(app: Quart) -> None:
    wrap(app, lambda inner: CountRequests(inner, app))
