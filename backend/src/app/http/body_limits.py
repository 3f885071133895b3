"""Making sure a client still uploading hears the answer, typically 413, to its request.

The size limit itself is Quart's MAX_CONTENT_LENGTH (MAX_BODY_BYTES): a declared
Content-Length over it is refused before any byte is read, and a chunked body as soon as it
passes it. Either way the app answers while the client may still be sending. Hypercorn then
closes the connection with unread data in it, the kernel answers the client's next segment
with a reset, and most clients report a connection error instead of the 413 they were sent.
The same happens to any early answer to a large upload, such as a 401 before the body is
read.

So, as web servers do with a "lingering close", once the app has answered, the rest of an
unfinished body is read and dropped for up to LINGER_SECONDS before the answer is completed
and the server may close the connection. Only requests whose method carries a body go
through this; the hot GETs do not.
"""

from __future__ import annotations

import asyncio
import contextlib

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
)
from quart import Quart

from app.http.middleware import ASGIApp, HTTPMiddleware, wrap

LINGER_SECONDS = 2.0
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class DrainUnreadBody(HTTPMiddleware):
    """ASGI middleware: before an answer is completed, let the rest of the request body in.

    Hypercorn closes the connection as soon as the last response message arrives if the
    request is not finished, so the wait sits in front of that message. The response's
    headers and content have gone out by then; the app's own body reader, still running,
    drops what arrives (Quart stops keeping a body once it is over the limit).
    """

    def __init__(self, app: ASGIApp, linger_seconds: float = LINGER_SECONDS) -> None:
        super().__init__(app)
        self.linger_seconds = linger_seconds

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body_done = asyncio.Event()

        async def tracking_receive() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done.set()  # the last body message, or the client went away
            return message

        async def lingering_send(message: ASGISendEvent) -> None:
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and not body_done.is_set()
            ):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(body_done.wait(), self.linger_seconds)
            await send(message)

        await self.app(scope, tracking_receive, lingering_send)


def register_body_limits(app: Quart) -> None:
    """Wrap the app's ASGI entry point (what Hypercorn and the test client call)."""
    wrap(app, DrainUnreadBody)
