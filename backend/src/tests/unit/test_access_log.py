"""The access line: one per request, with the status the client got, 499 when it hung up
before any answer, 500 when an exception escaped the app (and the exception still does)."""

from __future__ import annotations

import pytest
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

from app.http import access_log
from app.http.access_log import AccessLog
from tests.recorded_log import RecordedLog

SCOPE: Scope = {  # type: ignore[typeddict-item]
    "type": "http",
    "method": "GET",
    "path": "/todos",
    "headers": [(b"x-request-id", b"trace-1")],
}


async def _receive() -> dict[str, object]:
    return {"type": "http.disconnect"}


async def _run(
    app: object, monkeypatch: pytest.MonkeyPatch
) -> tuple[RecordedLog, list[ASGISendEvent]]:
    recorded = RecordedLog()
    monkeypatch.setattr(access_log, "log", recorded)
    sent: list[ASGISendEvent] = []

    async def send(message: ASGISendEvent) -> None:
        sent.append(message)

    await AccessLog(app)(SCOPE, _receive, send)  # type: ignore[arg-type]
    return recorded, sent


def _statuses(recorded: RecordedLog) -> list[object]:
    return [fields["status"] for _, event, fields in recorded.lines if event == "request"]


async def test_an_answer_is_logged_with_its_status_and_carries_the_request_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    recorded, sent = await _run(app, monkeypatch)

    assert _statuses(recorded) == [204]
    assert sent[0]["headers"] == [(b"x-request-id", b"trace-1")]  # type: ignore[typeddict-item]


async def test_a_client_that_hung_up_before_any_answer_is_499(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await receive()  # the disconnect: Quart cancels the handler and returns

    recorded, sent = await _run(app, monkeypatch)

    assert _statuses(recorded) == [499]
    assert sent == []


async def test_an_exception_that_escaped_the_app_is_500_and_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        raise RuntimeError("escaped")

    with pytest.raises(RuntimeError):
        await _run(app, monkeypatch)

    assert _statuses(access_log.log) == [500]  # type: ignore[arg-type]
