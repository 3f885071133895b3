"""How `serve` reads its workers' exit codes when it stops."""

from __future__ import annotations

import signal

import pytest

from app.cli import _stopped_cleanly


@pytest.mark.parametrize(
    ("exit_code", "clean"),
    [
        pytest.param(0, True, id="exited"),
        # Ignoring SIGTERM starts when the worker's app loads, so SIGTERM can only end a
        # worker that was still starting (a shutdown arrived first): nothing was lost.
        pytest.param(-signal.SIGTERM, True, id="stopped-while-starting"),
        pytest.param(1, False, id="failed"),
        pytest.param(-signal.SIGKILL, False, id="killed"),
        pytest.param(-signal.SIGSEGV, False, id="crashed"),
        pytest.param(None, False, id="still-running"),
    ],
)
def test_a_worker_stopped_while_starting_is_a_clean_stop(
    exit_code: int | None, clean: bool
) -> None:
    assert _stopped_cleanly(exit_code) is clean
