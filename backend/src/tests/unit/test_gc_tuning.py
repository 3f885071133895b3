"""A serving app hides its start-up objects from the collector and collects young ones less."""

from __future__ import annotations

import gc

from quart import Quart

from app.gc_tuning import FIRST_GENERATION_THRESHOLD


async def test_starting_the_app_freezes_start_up_objects(app: Quart) -> None:
    # The `app` fixture has started the app (before_serving ran).
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == FIRST_GENERATION_THRESHOLD
