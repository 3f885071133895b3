"""The app factory: the one place that assembles the service."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import cast

from quart import Quart
from quart_schema import QuartSchema
from quart_schema.typing import PydanticDumpOptions

from app.api import (
    accounts,
    auth,
    changes,
    events,
    health,
    members,
    organizations,
    spaces,
    todos,
)
from app.api.context import BEARER_SCHEME
from app.db.database import Database
from app.deletions import Deletions
from app.errors import register_error_handlers
from app.gc_tuning import tune_for_serving
from app.housekeeping import purge_expired_rows, take_change_horizons
from app.http.access_log import register_access_log
from app.http.body_limits import register_body_limits
from app.http.cors import register_cors
from app.http.docs_page import register_docs_page
from app.http.json_limits import register_json_limits
from app.http.metrics import register_metrics
from app.http.openapi import Provider
from app.http.security_headers import register_security_headers
from app.http.traffic import register_traffic_count
from app.live import LiveChanges, end_streams_on_shutdown_signal
from app.logs import configure_logging
from app.models import Daos
from app.settings import Settings

API_TITLE = "minor-illusion"


def create_app(
    settings: Settings | None = None,
    daos: Daos | None = None,
    database: Database | None = None,
) -> Quart:
    """Build the app. Tests pass fake DAOs and an in-memory database; production passes nothing."""
    settings = settings or Settings()
    configure_logging(settings)
    # No static folder: the only static files are the docs page's (app.http.docs_page).
    app = Quart(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["settings"] = settings
    app.extensions["daos"] = daos or Daos.real()
    app.extensions["database"] = database or Database.from_settings(settings)
    app.extensions["deletions"] = Deletions(app.extensions["database"], app.extensions["daos"])
    app.extensions["live"] = LiveChanges(
        app.extensions["database"],
        app.extensions["daos"],
        max_streams_per_user=settings.events_max_streams_per_user,
        retention=timedelta(seconds=settings.changes_retention_seconds),
        signing_key=settings.signing_key,
    )
    QuartSchema(
        app,
        info={"title": API_TITLE, "version": "1"},
        security_schemes={
            BEARER_SCHEME: {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}
        },
        openapi_provider_class=Provider,
        # Models become JSON-ready values in pydantic's Rust serializer, so the JSON encoder
        # never calls back into Python for a UUID or a datetime.
        pydantic_dump_options=cast(PydanticDumpOptions, {"mode": "json"}),
        # Its pages load their scripts from CDNs and start them inline: /docs is ours.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    register_docs_page(app, title=API_TITLE)
    register_error_handlers(app)
    register_json_limits(app, settings.max_json_depth)
    register_metrics(app, settings)
    register_cors(app, settings.cors_origin_set)
    # ASGI middleware, innermost first: the access line covers whatever the others answer.
    register_body_limits(app)
    register_security_headers(app, settings.hsts_max_age_seconds)
    register_traffic_count(app)
    register_access_log(app)
    blueprints = (
        health.bp,
        auth.bp,
        accounts.bp,
        organizations.bp,
        members.bp,
        spaces.bp,
        todos.bp,
        changes.bp,
        events.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    @app.before_serving
    async def _start() -> None:
        settings.signing_key()  # refuse to serve without a key rather than fail at first login
        database = app.extensions["database"]
        await database.start()
        tune_for_serving()  # last: what start-up created lives as long as the process
        app.extensions["housekeeping"] = [
            asyncio.create_task(purge_expired_rows(database, app.extensions["daos"])),
            asyncio.create_task(take_change_horizons(database, app.extensions["daos"])),
        ]
        app.extensions["deletions"].start()
        app.extensions["live"].start()
        app.extensions["undo_signal"] = end_streams_on_shutdown_signal(app.extensions["live"])

    @app.after_serving
    async def _stop() -> None:
        for task in app.extensions.pop("housekeeping", []):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app.extensions.pop("undo_signal", lambda: None)()
        await app.extensions["live"].stop()
        await app.extensions["deletions"].stop()
        await app.extensions["database"].stop()

    return app
