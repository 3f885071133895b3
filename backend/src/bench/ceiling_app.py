"""The ceiling: a bare Quart app with one constant JSON route, served like the real service.

What Quart on Hypercorn can do on this machine with no database, no validation and no auth,
so the service's figures can be read as a fraction of it rather than as absolute numbers
that mean little from one machine to the next.
"""

from __future__ import annotations

from quart import Quart

app = Quart(__name__)

_ANSWER = {"status": "ok", "service": "ceiling"}


@app.get("/")
async def index() -> dict[str, str]:
    """A small constant JSON body, about the size of a health check's."""
    return _ANSWER
