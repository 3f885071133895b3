"""Garbage collector settings for a serving worker.

A full collection walks every tracked object, and after start-up that is some 115,000 of them
(the modules of Quart, SQLAlchemy, pydantic and the app), which takes tens of milliseconds on
a small machine: every such pause stalls all requests in flight, and under load it came every few
seconds and set the p99 latency. Almost all of those objects live as long as the process, so
they are moved out of the collector's sight once the app has started (`gc.freeze`). The
first generation's threshold is raised as well: requests create many short-lived containers,
nearly all freed by reference counting, and collecting every 700 allocations cost more than
it found.
"""

from __future__ import annotations

import gc

FIRST_GENERATION_THRESHOLD = 10_000

_tuned = False


def tune_for_serving() -> None:
    """Freeze what start-up created and collect young objects less often; once per process."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
